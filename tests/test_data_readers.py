"""Readers of the benchmark data sets: fixtures in each format are written here and read back."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from monai_gvae.data import (
    BrainVolumeDataset,
    ImageFolderDataset,
    LSUNDataset,
    MNISTDataset,
    VolumeFolderDataset,
    decode_image,
    list_lmdb_keys,
    natural_sort_key,
    read_idx,
    volume_dataset,
)

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


# --------------------------------------------------------------------------- fixtures writers
def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    return bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_mnist(folder: Path, n: int = 6, prefix: str = "train", gz: bool = False, seed: int = 0):
    rs = np.random.RandomState(seed)
    images = rs.randint(0, 256, size=(n, 28, 28)).astype(np.uint8)
    labels = rs.randint(0, 10, size=n).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    for kind, arr, nd in (("images", images, 3), ("labels", labels, 1)):
        data = idx_bytes(arr)
        name = f"{prefix}-{kind}-idx{nd}-ubyte"
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return images, labels


def encoded(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buf.getvalue()


def rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 256, size=(h, w, 3)).astype(np.uint8)


def write_lmdb(path: Path, values: dict[bytes, bytes]) -> None:
    import lmdb

    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for k, v in values.items():
            txn.put(k, v)
    env.close()


# --------------------------------------------------------------------------- helpers
def test_natural_sort_and_magic_decoding():
    assert sorted(["10.jpg", "2.jpg", "1.jpg", "a/3.png", "a/20.png"], key=natural_sort_key) == [
        "1.jpg", "2.jpg", "10.jpg", "a/3.png", "a/20.png"
    ]
    arr = rgb(5, 7, 0)
    for fmt in ("PNG", "WEBP"):  # lossless: pixels come back exactly
        np.testing.assert_array_equal(np.asarray(decode_image(encoded(arr, fmt), "x")), arr)
    with pytest.raises(ValueError, match="somewhere: not a JPEG, PNG"):
        decode_image(b"GIF89a....", "somewhere")
    with pytest.raises(ValueError, match="somewhere: cannot decode PNG"):
        decode_image(encoded(arr, "PNG")[:40], "somewhere")


# --------------------------------------------------------------------------- MNIST (IDX)
@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_raw_and_gzip(tmp_path, gz):
    images, labels = write_mnist(tmp_path, n=5, gz=gz)
    ds = MNISTDataset(tmp_path, split="train")
    assert len(ds) == 5 and ds.images_file.name.endswith(".gz") == gz
    item = ds[3]
    assert item["image"].shape == (1, 28, 28) and item["image"].dtype == np.float32
    np.testing.assert_allclose(item["image"][0] * 255.0, images[3], atol=1e-3)
    assert item["label"] == labels[3] and item["index"] == 3
    assert len(MNISTDataset(tmp_path, num_samples=2)) == 2


def test_mnist_malformed_and_missing(tmp_path):
    write_mnist(tmp_path, n=4)
    images_file = tmp_path / "train-images-idx3-ubyte"
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        MNISTDataset(tmp_path, split="test")
    with pytest.raises(FileNotFoundError, match="MNIST folder not found"):
        MNISTDataset(tmp_path / "nope")
    good = images_file.read_bytes()
    images_file.write_bytes(b"\x00\x00\x07\x03" + good[4:])  # unknown type code
    with pytest.raises(ValueError, match=f"{images_file} is not an IDX file: magic number 0x00000703"):
        MNISTDataset(tmp_path)
    images_file.write_bytes(good[:-10])  # truncated
    with pytest.raises(ValueError, match=f"IDX file {images_file}: header says shape \\(4, 28, 28\\)"):
        MNISTDataset(tmp_path)
    images_file.write_bytes(good)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(ValueError, match="holds 4 images but .*train-labels-idx1-ubyte 3 labels"):
        MNISTDataset(tmp_path)
    bad_gz = tmp_path / "x.gz"
    bad_gz.write_bytes(gzip.compress(good)[:50])
    with pytest.raises(ValueError, match=f"cannot read IDX file {bad_gz}"):
        read_idx(bad_gz)
    with pytest.raises(ValueError, match="has 3 dimensions, expected 1"):
        read_idx(images_file, ndim=1)


@pytest.mark.skipif(
    not FASHION_MNIST.is_dir(),
    reason=f"no Fashion-MNIST in {FASHION_MNIST}: install the Debian package dataset-fashion-mnist "
    "(apt-get install dataset-fashion-mnist; .ci/run installs it where it can)",
)
def test_real_fashion_mnist():
    ds = MNISTDataset(FASHION_MNIST, split="test")
    assert len(ds) == 10000
    labels = {ds[i]["label"] for i in range(200)}
    assert labels <= set(range(10)) and len(labels) == 10
    image = ds[0]["image"]
    assert image.shape == (1, 28, 28) and 0.0 <= image.min() < image.max() <= 1.0


# --------------------------------------------------------------------------- LSUN (LMDB)
@pytest.fixture
def lsun_root(tmp_path):
    root = tmp_path / "lsun"
    root.mkdir()
    write_lmdb(root / "bedroom_train_lmdb", {
        b"a0": encoded(rgb(20, 30, 1), "JPEG"),
        b"a1": encoded(rgb(24, 24, 2), "PNG"),
        b"a2": encoded(rgb(30, 20, 3), "WEBP"),
    })
    write_lmdb(root / "tower_train_lmdb", {b"b0": encoded(rgb(16, 16, 4), "PNG"), b"b1": encoded(rgb(16, 16, 5), "PNG")})
    return root


def test_lsun_formats_resize_categories_and_workers(lsun_root, tmp_path):
    ds = LSUNDataset(lsun_root, categories=["bedroom", "tower"], image_size=8, cache_dir=tmp_path / "keys")
    assert len(ds) == 5
    assert [ds[i]["key"] for i in range(5)] == ["a0", "a1", "a2", "b0", "b1"]
    assert [ds[i]["label"] for i in range(5)] == [0, 0, 0, 1, 1]
    for i in range(5):
        assert ds[i]["image"].shape == (3, 8, 8) and 0.0 <= ds[i]["image"].min() <= ds[i]["image"].max() <= 1.0
    # PNG is lossless: without resizing the pixels come back exactly
    np.testing.assert_allclose(LSUNDataset(lsun_root, "tower", image_size=None)[0]["image"] * 255.0,
                               rgb(16, 16, 4).transpose(2, 0, 1), atol=1e-3)
    # keys cached on disk, a second dataset over the same databases opens them in the same process
    assert (tmp_path / "keys" / "bedroom_train_lmdb.keys.npy").is_file()
    assert LSUNDataset(lsun_root, "bedroom", image_size=8, num_samples=2)[1]["key"] == "a1"
    # pickles without the environment, and DataLoader workers (forked after the main process opened the
    # databases above) open their own
    assert len(pickle.loads(pickle.dumps(ds))) == 5
    loader = torch.utils.data.DataLoader(ds, batch_size=5, num_workers=2)
    batch = next(iter(loader))
    assert batch["image"].shape == (5, 3, 8, 8)
    np.testing.assert_allclose(batch["image"][4].numpy(), ds[4]["image"])


def test_lsun_errors(lsun_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="church_train_lmdb"):
        LSUNDataset(lsun_root, "church")
    not_db = lsun_root / "kitchen_train_lmdb"
    not_db.mkdir()
    with pytest.raises(ValueError, match=f"{not_db} is not an LMDB database folder"):
        LSUNDataset(lsun_root, "kitchen")
    with pytest.raises(ValueError, match="set the data location"):
        LSUNDataset(None)
    write_lmdb(lsun_root / "bad_train_lmdb", {b"k0": encoded(rgb(8, 8, 0), "PNG"), b"k1": b"not an image at all"})
    ds = LSUNDataset(lsun_root, "bad", image_size=None)
    assert ds[0]["image"].shape == (3, 8, 8)
    with pytest.raises(ValueError, match="bad_train_lmdb key k1: not a JPEG, PNG, WebP or BMP image"):
        ds[1]
    assert list(list_lmdb_keys(lsun_root / "bad_train_lmdb")) == [b"k0", b"k1"]


# --------------------------------------------------------------------------- image folders and zips
def test_image_folder_natural_order_resize_split(tmp_path):
    for i in range(12):  # 0.png ... 11.png: natural order is numeric
        Image.fromarray(np.full((10, 14, 3), i * 20, np.uint8)).save(tmp_path / f"{i}.png")
    ds = ImageFolderDataset(tmp_path, image_size=8)
    assert ds.filenames[:3] == ["0.png", "1.png", "2.png"] and ds.filenames[-1] == "11.png"
    item = ds[11]
    assert item["image"].shape == (3, 8, 8) and "label" not in item
    np.testing.assert_allclose(item["image"], 220 / 255.0, atol=1e-3)
    train = ImageFolderDataset(tmp_path, image_size=8, split="train", holdout_fraction=0.25).filenames
    test = ImageFolderDataset(tmp_path, image_size=8, split="test", holdout_fraction=0.25).filenames
    assert len(test) == 3 and not set(train) & set(test) and len(train) + len(test) == 12


def test_image_zip_and_class_folders(tmp_path):
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in (10, 2, 1):
            zf.writestr(f"data/{i}.png", encoded(rgb(12, 12, i), "PNG"))
        zf.writestr("data/readme.txt", "not an image")
    ds = ImageFolderDataset(archive, image_size=None)
    assert ds.filenames == ["data/1.png", "data/2.png", "data/10.png"] and ds.classes is None
    np.testing.assert_allclose(ds[2]["image"] * 255.0, rgb(12, 12, 10).transpose(2, 0, 1), atol=1e-3)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2)))
    assert batch["image"].shape == (3, 3, 12, 12)
    classes = tmp_path / "classes"
    for c in ("dogs", "cats"):
        (classes / c).mkdir(parents=True)
        Image.fromarray(rgb(9, 9, 0)).save(classes / c / "0.png")
    ds = ImageFolderDataset(classes, image_size=4, mode="L")
    assert ds.classes == ["cats", "dogs"] and [ds[i]["label"] for i in range(2)] == [0, 1]
    assert ds[0]["image"].shape == (1, 4, 4)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder or zip not found"):
        ImageFolderDataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        ImageFolderDataset(tmp_path / "empty")
    bad_zip = tmp_path / "bad.zip"
    bad_zip.write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(ValueError, match=f"{bad_zip} is not a readable zip file"):
        ImageFolderDataset(bad_zip)
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(rgb(8, 8, 0)).save(folder / "0.png")
    (folder / "1.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    ds = ImageFolderDataset(folder, image_size=8)
    assert ds[0]["image"].shape == (3, 8, 8)
    with pytest.raises(ValueError, match=f"{folder / '1.jpg'}: cannot decode JPEG"):
        ds[1]


# --------------------------------------------------------------------------- 3D volumes
def write_dicom_series(folder: Path, volume: np.ndarray, spacing=(1.0, 1.0, 2.0)) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder.mkdir(parents=True)
    series, study = generate_uid(), generate_uid()
    for i, plane in enumerate(volume):
        meta = FileMetaDataset()
        uid = generate_uid()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = MRImageStorage, uid, "MR"
        ds.SeriesInstanceUID, ds.StudyInstanceUID = series, study
        ds.PatientName = ds.PatientID = "PHANTOM"  # a test object, no patient
        ds.Rows, ds.Columns = plane.shape
        ds.PixelSpacing, ds.SliceThickness = [spacing[0], spacing[1]], spacing[2]
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, spacing[2] * i], [1, 0, 0, 0, 1, 0]
        ds.InstanceNumber, ds.SamplesPerPixel, ds.PhotometricInterpretation = i + 1, 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation = 15, 0
        ds.PixelData = plane.astype(np.uint16).tobytes()
        ds.save_as(folder / f"{i:03d}.dcm", enforce_file_format=True)


def test_volume_folder_nifti_and_dicom(tmp_path):
    box = np.zeros((20, 12, 10), np.float32)
    box[2:18, 2:10, 2:8] = 500.0
    nib.save(nib.Nifti1Image(box, np.diag([1.0, 1.0, 2.0, 1.0])), tmp_path / "sub10.nii.gz")
    nib.save(nib.Nifti1Image(box[:10], np.eye(4)), tmp_path / "sub2.nii")
    write_dicom_series(tmp_path / "dicom" / "series1", np.transpose(box, (2, 1, 0)).astype(np.uint16))
    ds = VolumeFolderDataset(tmp_path, image_size=16)
    assert [(v.name, v.kind) for v in ds.volumes] == [("dicom/series1", "dicom"), ("sub2", "nifti"), ("sub10", "nifti")]
    for i in range(3):
        image = ds[i]["image"]
        assert image.shape == (1, 16, 16, 16) and float(image.min()) >= 0.0 and float(image.max()) == pytest.approx(1.0)
    # the longest physical side (16 voxels of 1 mm) spans the cube; the 6 slices of 2 mm become 12 mm
    nifti = ds[2]["image"][0]
    assert float(nifti.pixdim[0]) == pytest.approx(float(nifti.pixdim[2]))
    extent = (nifti > 0.5).nonzero()
    assert int(extent[:, 0].max() - extent[:, 0].min()) + 1 >= 14
    assert len(VolumeFolderDataset(tmp_path, image_size=16, split="test", holdout_fraction=0.34)) == 1


def test_volume_errors_and_embedded(tmp_path):
    with pytest.raises(FileNotFoundError, match="volume folder not found"):
        VolumeFolderDataset(tmp_path / "missing")
    with pytest.raises(ValueError, match="no NIfTI files"):
        VolumeFolderDataset(tmp_path)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(gzip.compress(b"definitely not a nifti header"))
    ds = VolumeFolderDataset(tmp_path, image_size=16)
    with pytest.raises(ValueError, match=f"cannot read {broken}"):
        ds[0]
    fixed = volume_dataset(None, split="test", image_size=16, num_samples=2)
    again = BrainVolumeDataset(num_samples=2, image_size=16, seed=10000, fixed=True)
    assert isinstance(fixed, BrainVolumeDataset) and fixed[1]["image"].shape == (1, 16, 16, 16)
    torch.testing.assert_close(fixed[1]["image"], again[1]["image"])  # evaluation copies are reproducible
    assert not torch.equal(fixed[0]["image"], fixed[1]["image"])  # and differ from each other
    train = volume_dataset(None, split="train", image_size=16, num_samples=2)
    assert not torch.equal(train[0]["image"], train[0]["image"])  # training draws new variations
    # ... and forked DataLoader workers do not repeat each other's (their first items differ)
    batches = list(torch.utils.data.DataLoader(train, batch_size=1, num_workers=2))
    assert not torch.equal(batches[0]["image"], batches[1]["image"])
