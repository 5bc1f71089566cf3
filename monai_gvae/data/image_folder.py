"""Images from a folder or a ``.zip`` (CelebA-HQ's ``0.jpg ... 29999.jpg``, or class sub-folders), never downloaded."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from monai_gvae.data.utils import (
    LazyItemDataset,
    decode_image,
    natural_sort_key,
    pil_to_array,
    require_path,
    resize_center_crop,
    split_indices,
)

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderDataset"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


class ImageFolderDataset(LazyItemDataset):
    """Images in a folder (searched recursively) or in a ``.zip`` file, in natural order, resized and centre-cropped.

    Natural order sorts digit runs as numbers (``2.jpg`` before ``10.jpg``), so CelebA-HQ's ``0.jpg ... 29999.jpg``
    keep their index order. When every image sits in a first-level sub-folder and there are at least two of them
    (``cats/1.png``, ``dogs/1.png``), the sub-folders are classes and items get ``"label"`` (index of the sub-folder
    in natural order); a zip's single top folder (``data1024x1024/0.jpg``) is not a class. A zip is
    opened lazily in each process, so the dataset works with DataLoader workers.

    Args:
        root: a folder or a ``.zip`` file.
        image_size: output edge length (the shorter side is scaled to it, then the centre is cropped);
            ``None`` keeps the stored size (then all images must have the same size to be batched).
        transform: optional callable applied to each item dictionary.
        split: ``"all"``, ``"train"`` or ``"test"``; ``"test"`` is an evenly interleaved ``holdout_fraction`` of
            the sorted images (see :func:`monai_gvae.data.brain_holdout_mask`), ``"train"`` the rest.
        holdout_fraction: fraction of images in ``"test"``.
        num_samples: keep only the first ``num_samples`` images of the split.
        mode: Pillow mode, ``"RGB"`` (3 channels) or ``"L"`` (1 channel).
        extensions: file name endings counted as images (case-insensitive).

    Items: ``"image"`` (float32 ``(C, S, S)`` in [0, 1]), ``"filename"`` (path relative to ``root``) and, with class
    sub-folders, ``"label"``.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: a corrupt zip, no images found, a bad split; on access, an undecodable image (the message names
            the file or zip member).

    Example::

        ds = ImageFolderDataset("/data/celeba_hq/data1024x1024", image_size=128, split="train")
        ds[0]["image"].shape  # (3, 128, 128)
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int | None = 128,
        transform: Callable[..., Any] | Sequence[Callable[..., Any]] | None = None,
        split: str = "all",
        holdout_fraction: float = 0.1,
        num_samples: int | None = None,
        mode: str = "RGB",
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
    ) -> None:
        self.root = require_path(root, "image folder or zip")
        self.image_size, self.mode = image_size, mode
        exts = tuple(e.lower() for e in extensions)
        if not self.root.exists():
            raise FileNotFoundError(f"image folder or zip not found: {self.root}")
        self.is_zip = self.root.is_file()
        if self.is_zip:
            try:
                with zipfile.ZipFile(self.root) as zf:
                    names = [n for n in zf.namelist() if not n.endswith("/")]
            except (zipfile.BadZipFile, OSError) as e:
                raise ValueError(f"{self.root} is not a readable zip file: {e}") from e
        else:
            names = [
                os.path.relpath(os.path.join(d, f), self.root).replace(os.sep, "/")
                for d, _, files in os.walk(self.root)
                for f in files
            ]
        names = sorted(
            (n for n in names if n.lower().endswith(exts) and not os.path.basename(n).startswith(".")),
            key=natural_sort_key,
        )
        if not names:
            raise ValueError(f"no images ({', '.join(exts)}) found in {self.root}.")
        self.classes: list[str] | None = None
        # Class sub-folders: every image one level below the root (a zip's single top folder does not count).
        parts = [n.split("/") for n in names]
        if all(len(p) == 2 for p in parts) and len({p[0] for p in parts}) > 1:
            self.classes = sorted({p[0] for p in parts}, key=natural_sort_key)
        self.filenames = [names[i] for i in split_indices(len(names), split, holdout_fraction)][:num_samples]
        self.split = split
        self._zip: tuple[int, zipfile.ZipFile] | None = None
        super().__init__(len(self.filenames), transform)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_zip"] = None  # an open ZipFile cannot be pickled; each worker opens its own
        return state

    def _read(self, name: str) -> bytes:
        if not self.is_zip:
            path = self.root / name
            try:
                return path.read_bytes()
            except OSError as e:
                raise ValueError(f"cannot read image {path}: {e}") from e
        if self._zip is None or self._zip[0] != os.getpid():
            self._zip = (os.getpid(), zipfile.ZipFile(self.root))
        try:
            return self._zip[1].read(name)
        except (zipfile.BadZipFile, OSError, KeyError) as e:
            raise ValueError(f"cannot read {name} from zip {self.root}: {e}") from e

    def load_item(self, index: int) -> dict[str, Any]:
        name = self.filenames[index]
        source = f"{self.root}!{name}" if self.is_zip else str(self.root / name)
        img = resize_center_crop(decode_image(self._read(name), source, self.mode), self.image_size)
        item: dict[str, Any] = {"image": pil_to_array(img), "filename": name}
        if self.classes is not None:
            item["label"] = self.classes.index(name.split("/")[0])
        return item
