"""MNIST / Fashion-MNIST from their IDX files (raw or gzipped), never downloaded."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monai_gvae.data.utils import LazyItemDataset, require_path

__all__ = ["IDX_DTYPES", "read_idx", "find_idx_file", "MNISTDataset"]

IDX_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
"""IDX type codes (third byte of the magic number) and their big-endian numpy dtypes."""

_GZIP_MAGIC = b"\x1f\x8b"
_PREFIXES = {"train": "train", "test": "t10k"}


def read_idx(path: str | Path, ndim: int | None = None, dtype_code: int | None = None) -> np.ndarray:
    """Read an IDX file (the MNIST format), raw or gzip-compressed (recognised by its magic bytes).

    The magic number is two zero bytes, a type code (``0x08`` = unsigned byte, see :data:`IDX_DTYPES`) and the
    number of dimensions; then one big-endian uint32 per dimension and the data. MNIST images have magic
    ``0x00000803`` and labels ``0x00000801``.

    Args:
        path: the ``.idx*-ubyte`` file, optionally ``.gz``.
        ndim: expected number of dimensions (checked when given).
        dtype_code: expected type code (checked when given).

    Returns:
        the array, in native byte order.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable gzip data, wrong magic number, unexpected type/dimensions, or a data size that
            does not match the header (truncated file); the message names the file.

    Example::

        images = read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", ndim=3)  # (10000, 28, 28)
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == _GZIP_MAGIC
        if gzipped:
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"cannot read IDX file {path}: {e}") from e
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in IDX_DTYPES:
        raise ValueError(
            f"{path} is not an IDX file: magic number 0x{data[:4].hex() or '(empty)'} (expected 0x0000TTNN with a "
            f"type code TT in {[hex(c) for c in IDX_DTYPES]}; MNIST images are 0x00000803, labels 0x00000801)."
        )
    code, file_ndim = data[2], data[3]
    if dtype_code is not None and code != dtype_code:
        raise ValueError(f"IDX file {path} holds type 0x{code:02x}, expected 0x{dtype_code:02x}.")
    if ndim is not None and file_ndim != ndim:
        raise ValueError(f"IDX file {path} has {file_ndim} dimensions, expected {ndim} (magic 0x{data[:4].hex()}).")
    header = 4 + 4 * file_ndim
    if len(data) < header:
        raise ValueError(f"IDX file {path} is truncated inside its header ({len(data)} bytes).")
    dims = struct.unpack(f">{file_ndim}I", data[4:header])
    dtype = np.dtype(IDX_DTYPES[code])
    expected = math.prod(dims) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"IDX file {path}: header says shape {dims} ({expected} bytes of data) but {len(data) - header} bytes "
            "follow; the file is truncated or corrupt."
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def find_idx_file(root: str | Path, prefix: str, kind: str, ndim: int) -> Path:
    """Find ``<prefix>-<kind>-idx<ndim>-ubyte`` in ``root``, also as ``.gz`` or with a dot (``-images.idx3-ubyte``).

    Raises:
        FileNotFoundError: none of the names exists; the message lists the names tried.
    """
    root = require_path(root, "MNIST folder")
    stems = (f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte")
    names = [s + ext for s in stems for ext in ("", ".gz")]
    for name in names:
        if (root / name).is_file():
            return root / name
    if not root.is_dir():
        raise FileNotFoundError(f"MNIST folder not found: {root}")
    raise FileNotFoundError(f"no IDX {kind} file in {root}; tried {', '.join(names)}.")


class MNISTDataset(LazyItemDataset):
    """MNIST or Fashion-MNIST read from its IDX files (``train-images-idx3-ubyte[.gz]``, ``t10k-...``).

    Works for any IDX images/labels pair of this naming, e.g. Debian's ``dataset-fashion-mnist`` in
    ``/usr/share/datasets/fashion-mnist``. Nothing is downloaded. The uint8 arrays are read once (about 47 MB
    for the 60000 training images) and each item is converted on access.

    Args:
        root: folder holding the IDX files.
        split: ``"train"`` (``train-*``) or ``"test"`` (``t10k-*``).
        transform: optional callable applied to each item dictionary (e.g. a MONAI ``Compose``).
        num_samples: keep only the first ``num_samples`` items (``None``: all).
        with_labels: read the labels file (then required) and add ``"label"`` to each item.

    Items are dictionaries with ``"image"`` (float32 ``(1, 28, 28)`` in [0, 1]), ``"label"`` (``int`` class,
    when ``with_labels``) and ``"index"`` (position in the file).

    Raises:
        FileNotFoundError: the folder or an IDX file is missing (the message names it).
        ValueError: bad split, malformed IDX file, or image and label counts that differ.

    Example::

        ds = MNISTDataset("/usr/share/datasets/fashion-mnist", split="test", num_samples=100)
        ds[0]["image"].shape  # (1, 28, 28)
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable[..., Any] | Sequence[Callable[..., Any]] | None = None,
        num_samples: int | None = None,
        with_labels: bool = True,
    ) -> None:
        if split not in _PREFIXES:
            raise ValueError(f"split must be one of {tuple(_PREFIXES)}, got {split!r}.")
        prefix = _PREFIXES[split]
        self.images_file = find_idx_file(root, prefix, "images", 3)
        images = read_idx(self.images_file, ndim=3, dtype_code=0x08)
        self.labels_file: Path | None = None
        labels = None
        if with_labels:
            self.labels_file = find_idx_file(root, prefix, "labels", 1)
            labels = read_idx(self.labels_file, ndim=1, dtype_code=0x08)
            if len(labels) != len(images):
                raise ValueError(
                    f"{self.images_file} holds {len(images)} images but {self.labels_file} {len(labels)} labels."
                )
        if num_samples is not None:
            if num_samples < 0:
                raise ValueError(f"num_samples must be >= 0, got {num_samples}.")
            images = images[:num_samples]
            labels = labels[:num_samples] if labels is not None else None
        self.images, self.labels, self.split = images, labels, split
        super().__init__(len(images), transform)

    def load_item(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"image": self.images[index][None].astype(np.float32) / np.float32(255.0), "index": index}
        if self.labels is not None:
            item["label"] = int(self.labels[index])
        return item
