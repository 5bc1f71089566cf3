"""``load_labelled_slices``: a user's images/ + labels/ NIfTI folders as few-label benchmark slices."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from monai_gvae.data import InputImageError, brain_slab_split, load_labelled_slices


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array), np.eye(4)), str(path))


def _volume(depth=6, values=(0, 10, 20)):
    """A 3D image (40 x 20 x depth) with a label of the given values; slice 0 has no foreground."""
    image = np.zeros((40, 20, depth), np.float32)
    label = np.zeros((40, 20, depth), np.int16)
    for z in range(1, depth):
        label[5:35, 5:15, z] = values[1]
        label[10:20, 8:12, z] = values[2]
        image[..., z] = 100.0 + 50.0 * (label[..., z] == values[1]) + 200.0 * (label[..., z] == values[2])
    return image, label


def test_3d_volumes_sliced_padded_resized_and_remapped(tmp_path):
    image, label = _volume()
    _save(tmp_path / "images" / "a.nii.gz", image)
    _save(tmp_path / "labels" / "a.nii.gz", label)
    items = load_labelled_slices(tmp_path, image_size=16, num_classes=3, axis=2)
    assert len(items) == 5  # slice 0 has no foreground
    assert [i["slice_index"] for i in items] == list(range(5)) and items[0]["source"] == "a:1"
    first = items[0]
    assert first["image"].shape == (1, 16, 16) and first["image"].dtype == np.float32
    assert first["label"].shape == (1, 16, 16) and first["label"].dtype == np.int64
    assert set(np.unique(first["label"]).tolist()) == {0, 1, 2}  # 0, 10, 20 -> 0, 1, 2
    assert first["label_values"] == [0, 10, 20]
    assert 0.0 <= first["image"].min() and first["image"].max() <= 1.0
    # the 40 x 20 slice (20 x 40 in the radiological view) was padded to 40 x 40: the padded rows (a quarter on
    # each side) are empty
    assert first["image"][0, :3].max() == 0 and first["label"][0, :3].max() == 0
    # the brightest class keeps the highest intensity
    assert first["image"][first["label"] == 2].mean() > first["image"][first["label"] == 1].mean()
    # slicing along another axis gives other slices
    along_x = load_labelled_slices(tmp_path, image_size=16, axis=0)
    assert len(along_x) == 30 and along_x[0]["source"] == "a:5"


def test_2d_files_and_slab_split(tmp_path):
    for n in range(12):
        image, label = _volume(depth=2)
        _save(tmp_path / "images" / f"s{n:02d}.nii.gz", image[..., 1])
        _save(tmp_path / "labels" / f"s{n:02d}.nii.gz", label[..., 1])
    items = load_labelled_slices(tmp_path, image_size=8)
    assert [i["source"] for i in items] == [f"s{n:02d}:0" for n in range(12)]
    roles = brain_slab_split(len(items), 0.25, 0.0, gap=1, test_slabs=1)
    assert (roles == "test").sum() == 3 and (roles == "train").sum() == 7


def test_bad_inputs_are_named(tmp_path):
    image, label = _volume()
    with pytest.raises(FileNotFoundError, match="no labels/ folder"):
        _save(tmp_path / "a" / "images" / "x.nii.gz", image)
        load_labelled_slices(tmp_path / "a")
    # an image without a label, and a label without an image
    _save(tmp_path / "b" / "images" / "x.nii.gz", image)
    _save(tmp_path / "b" / "labels" / "y.nii.gz", label)
    with pytest.raises(InputImageError, match=r"x\.nii\.gz has no file of the same name"):
        load_labelled_slices(tmp_path / "b")
    # mismatched shapes
    _save(tmp_path / "c" / "images" / "x.nii.gz", image)
    _save(tmp_path / "c" / "labels" / "x.nii.gz", label[:, :10])
    with pytest.raises(InputImageError, match="label shape .* differs"):
        load_labelled_slices(tmp_path / "c")
    # more classes than declared
    _save(tmp_path / "d" / "images" / "x.nii.gz", image)
    _save(tmp_path / "d" / "labels" / "x.nii.gz", label)
    with pytest.raises(InputImageError, match="3 distinct values .* num_classes=2"):
        load_labelled_slices(tmp_path / "d", num_classes=2)
    # non-integer labels
    _save(tmp_path / "e" / "images" / "x.nii.gz", image)
    _save(tmp_path / "e" / "labels" / "x.nii.gz", label.astype(np.float32) + 0.5)
    with pytest.raises(InputImageError, match="integer class indices"):
        load_labelled_slices(tmp_path / "e")
    with pytest.raises(FileNotFoundError, match="data folder not found"):
        load_labelled_slices(tmp_path / "missing")
    with pytest.raises(ValueError, match="axis"):
        load_labelled_slices(tmp_path / "d", axis=3)


def test_volumes_reoriented_to_ras_and_shown_in_the_radiological_view(tmp_path):
    """``axis`` is anatomical whatever the voxel order, and each slice is in the radiological view: a marker at the
    volume's right-anterior-superior corner shows at the top left of an axial slice (anterior up, right on the
    left), and the same volume stored left-right mirrored (an LAS affine) gives the same slices."""
    image = np.zeros((20, 20, 6), np.float32)
    label = np.zeros((20, 20, 6), np.int16)
    label[2:18, 2:18, 1:] = 1
    label[14:18, 14:18, 1:] = 2  # right (high x), anterior (high y) corner; RAS order, identity affine
    image[:] = 50.0 + 100.0 * label
    _save(tmp_path / "ras" / "images" / "a.nii.gz", image)
    _save(tmp_path / "ras" / "labels" / "a.nii.gz", label)
    flip_x = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip_x[0, 3] = 19.0
    for sub, array in (("images", image[::-1]), ("labels", label[::-1])):  # voxel order L->R reversed: LAS
        (tmp_path / "las" / sub).mkdir(parents=True)
        nib.save(nib.Nifti1Image(np.ascontiguousarray(array), flip_x), str(tmp_path / "las" / sub / "a.nii.gz"))
    ras = load_labelled_slices(tmp_path / "ras", image_size=20, axis=2)
    las = load_labelled_slices(tmp_path / "las", image_size=20, axis=2)
    marker = np.argwhere(ras[0]["label"][0] == 2)
    assert marker[:, 0].max() < 10 and marker[:, 1].max() < 10  # top left: anterior up, patient right on the left
    for a, b in zip(ras, las):
        np.testing.assert_array_equal(a["label"], b["label"])
        np.testing.assert_allclose(a["image"], b["image"])
    # coronal (20 x 6 slices padded to 20 x 20): the right-sided marker on the image's left, the empty inferior
    # plane z = 0 in the bottom row of the brain's band (superior at the top)
    coronal = load_labelled_slices(tmp_path / "ras", image_size=20, axis=1)[-1]["label"][0]
    assert np.argwhere(coronal == 2)[:, 1].max() < 10
    band = np.flatnonzero(coronal.any(1))  # rows 7..12 hold z = 5..0 (padding 7 above and below)
    assert (band.min(), band.max()) == (7, 11)


def test_a_label_in_another_voxel_order_than_its_image_is_refused(tmp_path):
    """Reoriented to RAS apart, an image and a label stored in different voxel orders would no longer overlay: the
    error names the label and both orders."""
    image, label = _volume()
    _save(tmp_path / "images" / "a.nii.gz", image)
    las = np.diag([-1.0, 1.0, 1.0, 1.0])
    (tmp_path / "labels").mkdir()
    nib.save(nib.Nifti1Image(label, las), str(tmp_path / "labels" / "a.nii.gz"))
    with pytest.raises(InputImageError, match=r"labels/a.nii.gz: voxel order LAS .* \(RAS\)"):
        load_labelled_slices(tmp_path)
