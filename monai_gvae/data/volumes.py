"""3D volumes for the 3D GVAE: a folder of NIfTI files and DICOM series, or the embedded brain volume.

Volumes are found and read by :func:`monai_gvae.data.find_images` / :func:`monai_gvae.data.load_image` (MONAI's
``LoadImage`` with ``NibabelReader`` for NIfTI and ``PydicomReader`` for DICOM series grouped and checked by Series
Instance UID), then oriented to RAS, scaled to [0, 1] by percentiles, cropped to their foreground, resampled to
isotropic voxels so that the longest side fits the cube, and padded/cropped to ``image_size^3``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    CropForeground,
    Orientation,
    RandAdjustContrast,
    RandAffine,
    RandFlip,
    Resize,
    ResizeWithPadOrCrop,
    ScaleIntensityRangePercentiles,
    Spacing,
)

from monai_gvae.data.brain import load_brain_volume
from monai_gvae.data.inputs import ImageItem, find_images, load_image
from monai_gvae.data.utils import LazyItemDataset, natural_sort_key, require_path, split_indices

__all__ = ["VolumeFolderDataset", "BrainVolumeDataset", "volume_dataset"]


def _foreground(x: torch.Tensor) -> torch.Tensor:
    """Voxels above 2% of the [0, 1] range count as foreground (module level: picklable for workers)."""
    return x > 0.02


class VolumeFolderDataset(LazyItemDataset):
    """NIfTI volumes and DICOM series from a folder, read with MONAI's ``LoadImage`` and fitted into a cube.

    The folder is searched recursively by :func:`monai_gvae.data.find_images` (NIfTI files; DICOM files grouped into
    series by Series Instance UID and checked for consistent slices); PNG/JPEG files are ignored. Each volume is read
    by :func:`monai_gvae.data.load_image`, oriented to RAS, scaled to [0, 1] between its 0.5th and 99.5th intensity
    percentiles (clipped), cropped to its foreground (voxels above 0.02), resampled to isotropic voxels so that its
    longest side spans ``image_size`` voxels (aspect ratio kept), and zero-padded (or centre-cropped) to
    ``image_size^3``.

    Args:
        root: folder searched recursively.
        image_size: edge of the output cube.
        transform: optional callable applied to each item dictionary after loading.
        split: ``"all"``, ``"train"`` or ``"test"`` (an evenly interleaved ``holdout_fraction`` of the volumes in
            natural order of their names, see :func:`monai_gvae.data.brain_holdout_mask`).
        holdout_fraction: fraction of volumes in ``"test"``.
        num_samples: keep only the first ``num_samples`` volumes of the split.

    Items: ``"image"`` (``MetaTensor`` float32 ``(1, S, S, S)`` in [0, 1], affine tracked) and ``"filename"`` (the
    file, or the folder of a DICOM series).

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: no volume found, bad split, an inconsistent DICOM series (``InputImageError``); on access, an
            unreadable file or a volume that is not 3D (the message names it).

    Example::

        ds = VolumeFolderDataset("/data/t1_nifti", image_size=64, split="train")
        ds[0]["image"].shape  # (1, 64, 64, 64)
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int = 64,
        transform: Callable[..., Any] | Sequence[Callable[..., Any]] | None = None,
        split: str = "all",
        holdout_fraction: float = 0.2,
        num_samples: int | None = None,
    ) -> None:
        self.root = require_path(root, "volume folder")
        if not self.root.is_dir():
            raise FileNotFoundError(f"volume folder not found: {self.root}")
        found = sorted(
            (item for item in find_images(self.root) if item.kind in ("nifti", "dicom")),
            key=lambda item: natural_sort_key(item.name),
        )
        if not found:
            raise ValueError(f"no NIfTI files (.nii, .nii.gz) or DICOM series found in {self.root}.")
        self.volumes: list[ImageItem] = [found[i] for i in split_indices(len(found), split, holdout_fraction)][
            :num_samples
        ]
        self.image_size, self.split = image_size, split
        self._fit = Compose(
            [
                Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
                ScaleIntensityRangePercentiles(lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True),
                CropForeground(select_fn=_foreground, margin=1, allow_smaller=True),
                self._isotropic,
                ResizeWithPadOrCrop(spatial_size=(image_size,) * 3),
            ]
        )
        super().__init__(len(self.volumes), transform)

    def _isotropic(self, image: torch.Tensor) -> torch.Tensor:
        """Resample to isotropic voxels whose size makes the longest physical extent span ``image_size`` voxels."""
        pixdim = np.asarray(image.pixdim if isinstance(image, MetaTensor) else [1.0] * 3, dtype=np.float64)
        extent = np.asarray(image.shape[1:], dtype=np.float64) * pixdim
        return Spacing(pixdim=(float(extent.max()) / self.image_size,) * 3, mode="bilinear")(image)

    def load_item(self, index: int) -> dict[str, Any]:
        item = self.volumes[index]
        image = load_image(item)  # InputImageError (a ValueError) naming the file when unreadable
        if image.ndim != 4 or image.shape[0] != 1:
            raise ValueError(f"{item.path}: expected one 3D volume, got shape {tuple(image.shape)}.")
        return {"image": self._fit(image.float()), "filename": item.path}


class BrainVolumeDataset(LazyItemDataset):
    """Augmented copies of the embedded 64^3 brain volume (:func:`load_brain_volume`) as a stand-in 3D data set.

    One subject cannot teach anatomical variability: this data set makes ``num_samples`` variations of it by a
    random left-right flip (p = 0.5), a random affine (rotations up to 0.1 rad, scaling up to 8%, shifts up to
    3/64 of the edge) and a random gamma in [0.8, 1.25] (p = 0.5). It serves as the default data of the
    ``gvae_brain3d`` bundle so that it trains and evaluates out of the box; point the bundle at a NIfTI/DICOM folder
    (``VolumeFolderDataset``) for a real model.

    Args:
        num_samples: items per epoch.
        image_size: edge of the cube; the 64^3 volume is resized (area interpolation) when it differs.
        augment: apply the random variations (``False``: identical copies).
        seed: seed of the variations.
        fixed: item ``i`` always gets the variation drawn from ``seed + i`` (evaluation); otherwise one random
            stream seeded once with ``seed`` (training: new variations every epoch; each DataLoader worker reseeds
            its stream from torch's per-worker seed).
        transform: optional callable applied to each item dictionary.
        data_file: optional ``.npz`` replacing the shipped volume (see :func:`load_brain_volume`).

    Items: ``"image"`` (float32 tensor ``(1, S, S, S)`` in [0, 1]) and ``"index"``.

    Example::

        ds = BrainVolumeDataset(num_samples=8, image_size=32, seed=1, fixed=True)
        ds[0]["image"].shape  # (1, 32, 32, 32)
    """

    def __init__(
        self,
        num_samples: int = 32,
        image_size: int = 64,
        augment: bool = True,
        seed: int = 0,
        fixed: bool = False,
        transform: Callable[..., Any] | Sequence[Callable[..., Any]] | None = None,
        data_file: str | Path | None = None,
    ) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
        volume = torch.as_tensor(load_brain_volume(data_file)["image"])
        if tuple(volume.shape[1:]) != (image_size,) * 3:
            volume = torch.as_tensor(Resize((image_size,) * 3, mode="area")(volume)).float()
        self.volume = volume
        self.augment, self.seed, self.fixed = augment, seed, fixed
        shift = 3.0 * image_size / 64.0
        self._augmentation = Compose(
            [
                RandFlip(prob=0.5, spatial_axis=0),
                RandAffine(
                    prob=1.0, rotate_range=(0.1, 0.1, 0.1), scale_range=(0.08, 0.08, 0.08),
                    translate_range=(shift, shift, shift), padding_mode="zeros",
                ),
                RandAdjustContrast(prob=0.5, gamma=(0.8, 1.25)),
            ]
        ).set_random_state(seed=seed)
        self._worker_id: int | None = None
        super().__init__(num_samples, transform)

    def load_item(self, index: int) -> dict[str, Any]:
        image = self.volume.clone()
        if self.augment:
            worker = torch.utils.data.get_worker_info()
            if self.fixed:
                self._augmentation.set_random_state(seed=self.seed + index)
            elif worker is not None and self._worker_id != worker.id:
                # forked DataLoader workers inherit the same random state: give each its own stream (torch's
                # per-worker seed, reproducible under monai.utils.set_determinism)
                self._augmentation.set_random_state(seed=int(worker.seed % 2**32))
                self._worker_id = worker.id
            image = torch.as_tensor(self._augmentation(image)).float().clamp(0.0, 1.0)
        return {"image": image, "index": index}


def volume_dataset(
    dataset_dir: str | Path | None = None,
    split: str = "train",
    image_size: int = 64,
    transform: Callable[..., Any] | Sequence[Callable[..., Any]] | None = None,
    num_samples: int | None = None,
    holdout_fraction: float = 0.2,
    seed: int = 0,
) -> LazyItemDataset:
    """The 3D bundle's data: a :class:`VolumeFolderDataset` of ``dataset_dir``, or without one the embedded volume.

    Without ``dataset_dir``: ``"train"`` gives 32 randomly augmented copies per epoch and ``"test"`` 8 fixed
    augmented copies (seeds offset by 10000 from training's) of the same single volume
    (:class:`BrainVolumeDataset`): not held-out data, a smoke-test default.

    Args:
        dataset_dir: folder of NIfTI files / DICOM series, or ``None``.
        split: ``"train"``, ``"test"`` or ``"all"``.
        image_size: edge of the cube.
        transform: applied to each item dictionary.
        num_samples: items (folder: the first ones of the split; embedded: the number of copies).
        holdout_fraction: folder only, fraction of volumes held out for ``"test"``.
        seed: embedded only, seed of the augmentation.
    """
    if dataset_dir is None or str(dataset_dir) == "":
        training = split == "train"
        count = num_samples if num_samples is not None else (32 if training else 8)
        return BrainVolumeDataset(
            num_samples=count, image_size=image_size, seed=seed + (0 if training else 10000), fixed=not training,
            transform=transform,
        )
    return VolumeFolderDataset(dataset_dir, image_size, transform, split, holdout_fraction, num_samples)
