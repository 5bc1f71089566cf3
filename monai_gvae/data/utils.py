"""Helpers shared by the dataset readers: lazily built items, natural sorting, image decoding, splits."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import Dataset
from monai.transforms import apply_transform
from PIL import Image, ImageOps

__all__ = [
    "LazyItemDataset",
    "natural_sort_key",
    "image_format",
    "decode_image",
    "resize_center_crop",
    "resize_tensor",
    "pil_to_array",
    "split_indices",
    "holdout_mask",
    "require_path",
    "SPLITS",
]

SPLITS = ("all", "train", "test")

# Leading bytes of the encoded formats the readers accept (WebP: "RIFF", 4 size bytes, "WEBP").
_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
)


def require_path(root: Any, what: str) -> Path:
    """``root`` as a ``Path``; a clear error when no path was configured (a bundle's ``dataset_dir: null``).

    Raises:
        ValueError: ``root`` is ``None`` or empty.
    """
    if root is None or str(root) == "":
        raise ValueError(f"no {what} given: set the data location (bundles: --dataset_dir /path/to/data).")
    return Path(root).expanduser()


def natural_sort_key(name: str) -> list:
    """Sort key putting ``2.jpg`` before ``10.jpg`` (digit runs compared as numbers, the rest case-insensitively).

    Example:
        >>> sorted(["10.jpg", "2.jpg", "1.jpg"], key=natural_sort_key)
        ['1.jpg', '2.jpg', '10.jpg']
    """
    # re.split with a capturing group alternates text (even positions) and digit runs (odd positions), so
    # two keys only ever compare str with str and int with int.
    return [int(tok) if i % 2 else tok.lower() for i, tok in enumerate(re.split(r"(\d+)", name))]


def image_format(data: bytes) -> str | None:
    """The encoded image format from its leading bytes (``"JPEG"``, ``"PNG"``, ``"WEBP"``, ``"BMP"``) or ``None``."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None


def decode_image(data: bytes, source: str, mode: str = "RGB") -> Image.Image:
    """Decode JPEG/PNG/WebP/BMP bytes with Pillow, the format recognised by its magic bytes.

    Args:
        data: the encoded image.
        source: where the bytes came from (file, zip member or LMDB key), named in errors.
        mode: Pillow mode of the result (``"RGB"`` or ``"L"``).

    Returns:
        the decoded image, converted to ``mode``.

    Raises:
        ValueError: unknown format or undecodable data; the message names ``source``.
    """
    fmt = image_format(data)
    if fmt is None:
        raise ValueError(
            f"{source}: not a JPEG, PNG, WebP or BMP image (first bytes {data[:12]!r}, {len(data)} bytes)."
        )
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as img:
            img.load()
            return img.convert(mode)
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError... for corrupt data
        raise ValueError(f"{source}: cannot decode {fmt} image: {e}") from e


def resize_center_crop(img: Image.Image, size: int | None) -> Image.Image:
    """Scale the shorter side to ``size`` (bicubic, antialiased) and crop the centre ``size x size``.

    ``None`` returns the image unchanged.
    """
    if size is None:
        return img
    if img.size == (size, size):
        return img
    return ImageOps.fit(img, (size, size), method=Image.BICUBIC)


def resize_tensor(x: torch.Tensor, size: Sequence[int], mode: str) -> torch.Tensor:
    """Resize a channel-first tensor ``(C, *spatial)`` (no batch axis) to ``size`` with ``torch`` interpolation.

    Computed in float32; an integer tensor is rounded back to its dtype (``"nearest"`` keeps label values).
    Linear modes use ``align_corners=False``, as MONAI's ``Resize`` does, so the results equal it.

    Args:
        x: the tensor.
        size: spatial output shape.
        mode: ``"nearest"``, ``"area"``, ``"bilinear"`` (2D) or ``"trilinear"`` (3D).

    Returns:
        the resized tensor, in ``x``'s dtype.

    Example::

        label = resize_tensor(label, (64, 64), "nearest")
    """
    dtype = x.dtype
    kwargs = {} if mode in ("nearest", "area") else {"align_corners": False}
    out = torch.nn.functional.interpolate(x[None].float(), size=tuple(size), mode=mode, **kwargs)[0]
    return out.round().to(dtype) if not dtype.is_floating_point else out.to(dtype)


def pil_to_array(img: Image.Image) -> np.ndarray:
    """Pillow image -> channel-first float32 array in [0, 1] (``(C, H, W)``)."""
    arr = np.asarray(img, dtype=np.float32) / np.float32(255.0)
    return arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))


def holdout_mask(num_items: int, holdout_fraction: float) -> np.ndarray:
    """Boolean mask of the held-out (test) positions among ``num_items`` ordered items, evenly interleaved.

    The ``round(num_items * holdout_fraction)`` test positions are ``floor((j + 0.5) * num_items / n_test)``
    (every 4th item for 0.25), so a held-out item always has training neighbours on both sides.

    Args:
        num_items: number of items, in their natural order (e.g. slices from inferior to superior).
        holdout_fraction: fraction held out, ``0 <= holdout_fraction < 1``.

    Returns:
        Array of shape ``(num_items,)``, ``True`` for test items.

    Raises:
        ValueError: if ``num_items`` is negative or ``holdout_fraction`` is outside ``[0, 1)``.

    Example:
        >>> holdout_mask(8, 0.25).nonzero()[0].tolist()
        [2, 6]
    """
    if num_items < 0:
        raise ValueError(f"num_items must be >= 0, got {num_items}")
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    mask = np.zeros(num_items, dtype=bool)
    n_test = int(round(num_items * holdout_fraction))
    if n_test > 0:
        mask[((np.arange(n_test) + 0.5) * num_items / n_test).astype(np.int64)] = True
    return mask


def split_indices(num_items: int, split: str, holdout_fraction: float) -> np.ndarray:
    """Indices of ``split`` among ``num_items`` ordered items; ``"test"`` is every ``1/holdout_fraction``-th item.

    Uses :func:`holdout_mask` (evenly interleaved held-out positions), so the same rule splits every reader.

    Raises:
        ValueError: unknown split or fraction outside [0, 1).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    if split == "all":
        return np.arange(num_items)
    test = holdout_mask(num_items, holdout_fraction)
    return np.flatnonzero(test if split == "test" else ~test)


class LazyItemDataset(Dataset):
    """A MONAI ``Dataset`` whose items are built on access by :meth:`load_item` (files are read lazily).

    Subclasses implement ``load_item(index) -> dict`` and call ``super().__init__(num_items, transform)``.
    Indexing, slicing and ``transform`` behave as in ``monai.data.Dataset``.
    """

    def __init__(self, num_items: int, transform: Callable[..., Any] | Sequence[Callable[..., Any]] | None = None):
        super().__init__(data=range(num_items), transform=transform)

    def load_item(self, index: int) -> dict[str, Any]:
        raise NotImplementedError

    def _transform(self, index: int) -> Any:
        item = self.load_item(self.data[index])
        return apply_transform(self.transform, item) if self.transform is not None else item
