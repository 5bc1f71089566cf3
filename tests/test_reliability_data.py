"""Corrupt inputs are rejected with an error naming the file/item and the problem, or skipped and counted
(SafeDataset); written synthetic files and loaded models are never silently NaN."""

from __future__ import annotations

import logging
import os
import zipfile

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import DataLoader, Dataset
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from monai_gvae.data import (
    DEFAULT_BRAIN_SLICES_FILE,
    BadItemError,
    SafeDataset,
    describe_item,
    load_brain_slices,
    load_brain_volume,
    write_synthetic_nifti,
)
from monai_gvae.networks import GVAE, load_gvae
from monai_gvae.transforms import PackImageLabeld


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _slices(n=3, size=8, **override):
    arrays = {"image": np.full((n, size, size), 100, np.uint8), "label": np.zeros((n, size, size), np.uint8)}
    arrays.update(override)
    return arrays


BRAIN_FILES = {
    "truncated archive": (lambda p: p.write_bytes(DEFAULT_BRAIN_SLICES_FILE.read_bytes()[:5000]), "not a readable .npz"),
    "not an archive": (lambda p: p.write_bytes(b"P5 8 8 255\n" + bytes(64)), "not a readable .npz"),
    "pickled objects": (lambda p: _npz(p, image=np.array([{"a": 1}], dtype=object), label=np.zeros(1)), "not a readable .npz"),
    "no label": (lambda p: _npz(p, image=np.zeros((2, 8, 8), np.uint8)), "no array 'label'"),
    "2D image": (lambda p: _npz(p, **_slices(image=np.zeros((8, 8), np.uint8))), "must have 3 dims"),
    "4D (channels)": (lambda p: _npz(p, **_slices(image=np.zeros((3, 3, 8, 8), np.uint8))), "must have 3 dims"),
    "shape mismatch": (lambda p: _npz(p, **_slices(label=np.zeros((3, 8, 9), np.uint8))), "differ"),
    "empty": (lambda p: _npz(p, **_slices(n=0)), "empty"),
    "NaN image": (lambda p: _npz(p, **_slices(image=np.full((3, 8, 8), np.nan, np.float32))), "NaN"),
    "float image 0..255": (lambda p: _npz(p, **_slices(image=np.full((3, 8, 8), 200.0, np.float32))), r"\[0, 1\]"),
    "int16 image 0..4095": (lambda p: _npz(p, **_slices(image=np.full((3, 8, 8), 4095, np.int16))), "0..255"),
    "complex image": (lambda p: _npz(p, **_slices(image=np.ones((3, 8, 8), np.complex64))), "dtype complex64"),
    "float labels": (lambda p: _npz(p, **_slices(label=np.full((3, 8, 8), 0.5, np.float32))), "integer class indices"),
    "negative labels": (lambda p: _npz(p, **_slices(label=np.full((3, 8, 8), -1, np.int8))), "negative"),
    "bad slice_index": (lambda p: _npz(p, **_slices(slice_index=np.arange(2))), "slice_index"),
}


@pytest.mark.parametrize("kind", list(BRAIN_FILES))
def test_corrupt_brain_file_is_named_with_the_problem(tmp_path, kind):
    write, problem = BRAIN_FILES[kind]
    path = tmp_path / "brain2d_64.npz"
    write(path)
    with pytest.raises(ValueError, match=problem) as err:
        load_brain_slices(data_file=path)
    assert str(path) in str(err.value)


def test_corrupt_brain_volume_affine_and_missing_file(tmp_path):
    path = _npz(tmp_path / "vol.npz", image=np.zeros((4, 4, 4), np.uint8), label=np.zeros((4, 4, 4), np.uint8),
                affine=np.full((4, 4), np.inf))
    with pytest.raises(ValueError, match="affine") as err:
        load_brain_volume(data_file=path)
    assert str(path) in str(err.value)
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        load_brain_volume(data_file=tmp_path / "nowhere.npz")


@pytest.fixture
def nifti_files(tmp_path):
    """Two good 2D NIfTI slices and three bad files: truncated gzip, garbage under .nii, unreadable DICOM."""
    good = []
    for i in range(2):
        path = tmp_path / f"good{i}.nii.gz"
        nib.save(nib.Nifti1Image(np.random.RandomState(i).rand(16, 16).astype(np.float32), np.eye(4)), path)
        good.append(path)
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good[0].read_bytes()[:200])
    garbage = tmp_path / "garbage.nii"
    garbage.write_bytes(b"this is not a NIfTI header" * 20)
    dicom = tmp_path / "slice.dcm"
    dicom.write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage" * 10)
    return good, {"truncated gzip": truncated, "garbage NIfTI": garbage, "unreadable DICOM": dicom}


def _image_dataset(paths):
    return Dataset([{"image": str(p)} for p in paths], transform=Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image")]))


@pytest.mark.parametrize("kind", ["truncated gzip", "garbage NIfTI", "unreadable DICOM"])
def test_unreadable_image_file_is_named(nifti_files, kind):
    good, bad = nifti_files
    ds = SafeDataset(_image_dataset([good[0], bad[kind]]))
    assert ds[0]["image"].shape == (1, 16, 16)
    with pytest.raises(BadItemError) as err:
        ds[1]
    assert str(bad[kind]) in str(err.value) and err.value.index == 1 and err.value.source == f"image={bad[kind]}"
    assert err.value.__cause__ is not None


def test_skip_bad_items_logs_skips_and_counts_with_workers(nifti_files, caplog):
    good, bad = nifti_files
    paths = [good[0], bad["truncated gzip"], good[1], bad["garbage NIfTI"], good[0], bad["unreadable DICOM"]] * 2
    ds = SafeDataset(_image_dataset(paths), skip_bad_items=True, max_bad_fraction=0.6)
    loader = DataLoader(ds, batch_size=3, num_workers=2, shuffle=False)
    batches = [b["image"] for b in loader]
    assert [tuple(b.shape) for b in batches] == [(3, 1, 16, 16)] * 4  # bad items replaced, batch size kept
    assert ds.num_bad == 6 and ds.bad_indices == [1, 3, 5, 7, 9, 11]  # counted across worker processes
    engine = Engine(lambda e, b: None)
    ds.attach(engine)
    with caplog.at_level(logging.WARNING, logger="monai_gvae.data.safe"):
        engine.run([0], max_epochs=1)
    assert engine.state.skipped_items == 6
    assert "skipped 6 of 12 items" in caplog.text and "truncated.nii.gz" in caplog.text


def test_skip_in_process_records_messages_and_does_not_reread(nifti_files):
    good, bad = nifti_files
    calls = []

    class Counting(Dataset):
        def __getitem__(self, i):
            calls.append(i)
            return super().__getitem__(i)

    inner = Counting([{"image": str(p)} for p in [good[0], bad["garbage NIfTI"], good[1]]], transform=LoadImaged("image"))
    ds = SafeDataset(inner, skip_bad_items=True, name="slices")
    assert ds[1]["image"].shape == (16, 16)  # item 2 in place of item 1
    assert ds[1]["image"].shape == (16, 16)
    assert calls.count(1) == 1 and list(ds.messages) == [1] and "garbage.nii" in ds.messages[1]
    assert ds.report() == 1


def test_too_many_bad_items_is_an_error(nifti_files):
    good, bad = nifti_files
    ds = SafeDataset(_image_dataset([bad["garbage NIfTI"], bad["truncated gzip"], good[0]]), skip_bad_items=True,
                     max_bad_fraction=0.5)
    with pytest.raises(BadItemError, match="2 of 3 items .* are bad"):
        ds[0]
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(ValueError, match="max_bad_fraction"):
        SafeDataset(ds, max_bad_fraction=0)


def test_wrong_channels_or_dimensions_name_the_item(tmp_path):
    rgb = tmp_path / "rgb.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 3), np.float32), np.eye(4)), rgb)  # 3 "channels" on the last axis
    vol = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 16), np.float32), np.eye(4)), vol)
    pack = PackImageLabeld(label_key=None, image_channels=1, spatial_dims=2)
    transform = Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image", channel_dim="no_channel"), pack])
    ds = SafeDataset(Dataset([{"image": str(rgb)}, {"image": str(vol)}], transform=transform))
    with pytest.raises(BadItemError, match=r"rgb.nii.gz.*3 spatial dimensions.*expected 2"):
        ds[0]
    transform = Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image", channel_dim=-1), pack])
    ds = SafeDataset(Dataset([{"image": str(rgb)}], transform=transform))
    with pytest.raises(BadItemError, match=r"rgb.nii.gz.*3 channels.*expected 1"):
        ds[0]


def test_describe_item():
    ds = Dataset([{"image": "a.nii.gz", "label": "a_seg.nii.gz", "id": 3}, "b.png", {"x": 1}])
    assert describe_item(ds, 0) == "image=a.nii.gz; label=a_seg.nii.gz"
    assert describe_item(ds, 1) == "b.png" and describe_item(ds, 2) == "item 2"
    assert describe_item(torch.utils.data.Subset(ds, [1, 0]), 1) == "image=a.nii.gz; label=a_seg.nii.gz"


def test_synthetic_writer_refuses_nan_and_bad_labels(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        write_synthetic_nifti(torch.full((1, 8, 8), float("nan")), str(tmp_path / "a.nii.gz"))
    with pytest.raises(ValueError, match="0..255"):
        write_synthetic_nifti(np.full((1, 8, 8), 300), str(tmp_path / "b.nii.gz"), kind="label")
    with pytest.raises(ValueError, match="channel-first"):
        write_synthetic_nifti(np.zeros((8, 8)), str(tmp_path / "c.nii.gz"))
    with pytest.raises(ValueError, match="kind"):
        write_synthetic_nifti(np.zeros((1, 8, 8)), str(tmp_path / "d.nii.gz"), kind="mask")
    assert os.listdir(tmp_path) == []  # nothing half-written either


def test_load_gvae_refuses_diverged_or_corrupt_weights(tmp_path):
    model = GVAE(2, 1, 16, 4, architecture="conv", base_channels=4, max_channels=8)
    state = model.state_dict()
    next(v for v in state.values() if isinstance(v, torch.Tensor) and v.is_floating_point()).fill_(float("inf"))
    torch.save({"gvae": state}, tmp_path / "nan.pt")
    with pytest.raises(ValueError, match=r"nan.pt holds NaN/Inf weights"):
        load_gvae(tmp_path / "nan.pt")
    torch.save({"gvae": model.state_dict()}, tmp_path / "ok.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "ok.pt").read_bytes()[:300])
    with pytest.raises(ValueError, match="cut.pt"):
        load_gvae(tmp_path / "cut.pt")
    with zipfile.ZipFile(tmp_path / "ok.pt") as z:
        assert z.testzip() is None  # the good file is intact (control)
