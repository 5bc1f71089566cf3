"""Corrupt items in the benchmark readers (issue 3: IDX, LMDB, image folders, NIfTI/DICOM folders): the error names
the file or key, and SafeDataset skips and counts them, also across DataLoader workers. The readers are imported
directly: a reader that fails to import fails these tests (it is never a skip)."""

from __future__ import annotations

import gzip
import os
import io
import struct

import lmdb
import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from monai.data import DataLoader
from PIL import Image

from monai_gvae.data import BadItemError, SafeDataset
from monai_gvae.data import image_folder, lsun, mnist, utils, volumes


def _png(seed: int, size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.RandomState(seed).randint(0, 256, (size, size, 3)).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _lsun(tmp_path):
    path = tmp_path / "bedroom_train_lmdb"
    env = lmdb.open(str(path), map_size=1 << 22)
    with env.begin(write=True) as txn:
        for i in range(6):
            # two values that do not decode: a cut-off PNG and bytes that are no image at all
            value = _png(i) if i not in (1, 4) else (_png(i)[:40] if i == 1 else b"\x00" * 64)
            txn.put(f"k{i}".encode(), value)
    env.close()
    return lsun.LSUNDataset(tmp_path, "bedroom", image_size=8), "bedroom_train_lmdb key k1"


def _image_folder(tmp_path):
    for i in range(6):
        data = _png(i)
        if i == 1:
            data = data[: len(data) // 2]  # truncated
        elif i == 4:
            data = b"not an image, despite the name"
        (tmp_path / f"{i}.png").write_bytes(data)
    return image_folder.ImageFolderDataset(tmp_path, image_size=8), "1.png"


def _volume_folder(tmp_path):
    for i in range(6):
        path = tmp_path / f"v{i}.nii.gz"
        nib.save(nib.Nifti1Image(np.random.RandomState(i).rand(6, 6, 6).astype(np.float32), np.eye(4)), path)
        if i == 1:
            path.write_bytes(path.read_bytes()[:100])  # truncated gzip
        elif i == 4:
            path.write_bytes(gzip.compress(b"not a NIfTI header" * 30))
    return volumes.VolumeFolderDataset(tmp_path, image_size=8), "v1.nii.gz"


@pytest.mark.parametrize("make", [_lsun, _image_folder, _volume_folder], ids=["lmdb", "image-folder", "nifti-folder"])
def test_reader_corrupt_items_are_named_or_skipped_and_counted(tmp_path, make):
    dataset, name = make(tmp_path)
    assert len(dataset) == 6
    with pytest.raises(BadItemError, match=name.replace(".", r"\.")):
        SafeDataset(dataset)[1]
    safe = SafeDataset(dataset, skip_bad_items=True)
    batches = list(DataLoader(safe, batch_size=3, num_workers=2))
    assert [b["image"].shape[0] for b in batches] == [3, 3]
    assert safe.num_bad == 2 and safe.bad_indices == [1, 4] and safe.report() == 2


@pytest.mark.parametrize("damage", ["truncated", "crc", "bad magic"])
def test_corrupt_idx_gzip_is_named(tmp_path, damage):
    images = np.random.RandomState(0).randint(0, 256, (4, 28, 28)).astype(np.uint8)
    labels = np.arange(4, dtype=np.uint8)
    for kind, arr in (("images", images), ("labels", labels)):
        raw = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
        (tmp_path / f"train-{kind}-idx{arr.ndim}-ubyte.gz").write_bytes(gzip.compress(raw))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    good = bytearray(path.read_bytes())
    if damage == "truncated":
        data = bytes(good[: len(good) // 2])
    elif damage == "crc":
        good[-6] ^= 0xFF  # flip a byte of the stored CRC-32
        data = bytes(good)
    else:
        data = gzip.compress(b"\x08\x03\x00\x00" + bytes(100))
    path.write_bytes(data)
    with pytest.raises(ValueError, match=str(path).replace(".", r"\.")):
        mnist.MNISTDataset(tmp_path)


IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
FUZZ = settings(max_examples=int(os.environ.get("GVAE_FUZZ_EXAMPLES", "40")), deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(
    st.sampled_from(sorted(IDX_DTYPES) + [0x07, 0x0A]), st.lists(st.integers(0, 4), min_size=0, max_size=4),
    st.integers(-9, 9).map(lambda d: 0 if abs(d) < 7 else d), st.booleans(), st.binary(max_size=4).map(lambda b: b or b"\x00\x00"),
)
def test_read_idx_valid_or_clear_error(tmp_path, code, dims, size_error, gz, magic):
    """Random IDX headers, sizes (mostly right, sometimes a few bytes short or long) and gzip: the array the header
    describes, or a ValueError naming the file."""
    dtype = np.dtype(IDX_DTYPES.get(code, "u1"))
    payload = np.random.RandomState(len(dims)).randint(0, 100, size=dims).astype(dtype).tobytes()
    head = (magic[:2] if magic[:2] != b"\x00\x00" and len(magic) > 2 else b"\x00\x00") + bytes([code, len(dims)])
    raw = head + struct.pack(f">{len(dims)}I", *dims) + payload
    raw = raw[: len(raw) + size_error] if size_error < 0 else raw + bytes(size_error)
    path = tmp_path / f"fuzz-{code}-{len(dims)}-{size_error}-{int(gz)}.idx"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    try:
        array = mnist.read_idx(path)
    except ValueError as e:
        assert str(path) in str(e)
        assert code not in IDX_DTYPES or size_error != 0 or head[:2] != b"\x00\x00"
        return
    assert code in IDX_DTYPES and size_error == 0 and head[:2] == b"\x00\x00"
    assert array.shape == tuple(dims) and array.dtype == dtype.newbyteorder("=")
    assert np.array_equal(array, np.frombuffer(payload, dtype=dtype).reshape(dims))


@FUZZ
@given(st.sampled_from(["png", "jpeg", "cut png", "magic + junk"]), st.integers(1, 99),
       st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF\x00\x00\x00\x00WEBP", b"BM", b""]), st.binary(max_size=64))
def test_decode_image_valid_or_clear_error(kind, cut, magic, junk):
    """Whole images, a PNG cut anywhere, or a known magic number followed by junk: a decoded image or a ValueError
    naming the source."""
    jpeg = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(jpeg, "JPEG")
    data = {"png": _png(0), "jpeg": jpeg.getvalue(), "cut png": _png(0)[: len(_png(0)) * cut // 100],
            "magic + junk": magic + junk}[kind]
    try:
        img = utils.decode_image(data, "fuzz-source", "RGB")
    except ValueError as e:
        assert "fuzz-source" in str(e) and kind in ("cut png", "magic + junk")
        return
    assert img.mode == "RGB" and img.size == (8, 8)
    if kind == "cut png":  # decoded although cut (only trailing chunks lost): then the pixels must be intact
        assert np.array_equal(np.asarray(img), np.asarray(Image.open(io.BytesIO(_png(0))).convert("RGB")))
