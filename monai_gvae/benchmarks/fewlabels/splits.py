"""The few-label benchmark's data: train / val / test slabs of the embedded slices or of a user's NIfTI
folders (:func:`fewlabel_splits`, :class:`FewLabelData`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from monai_gvae.benchmarks.segmentation import IMAGE_SIZE, NUM_CLASSES
from monai_gvae.data import BRAIN_CLASS_NAMES, brain_slab_split, load_brain_slices, load_labelled_slices

__all__ = ["FewLabelData", "fewlabel_splits"]


@dataclass
class FewLabelData:
    """The benchmark's data: ``train`` (the k labelled items are drawn from it; the rest is the unlabelled pool),
    ``val`` (for choosing settings), ``test`` (held out: reported once per setting), all contiguous slabs of one
    ordered series of slices separated by gaps (:func:`~monai_gvae.data.brain_slab_split`).

    Attributes:
        train, val, test: the splits' items (``image`` ``(1, S, S)`` in [0, 1], ``label`` ``(1, S, S)`` in
            ``0..num_classes-1``, ``slice_index``).
        num_classes: label classes, background included.
        class_names: names of the foreground classes 1.. (for per-class Dice).
        description: where the slices come from, for the report's header.
        left_right_flip: whether the slices' columns run left-right, so that the augmentation may flip them
            (:attr:`FewLabelSettings.left_right_flip`): true for the embedded axial slices and ``data_dir``'s axial
            and coronal slices (and 2D files), false for sagittal slices (``axis=0``).
    """

    train: list[dict]
    val: list[dict]
    test: list[dict]
    num_classes: int
    class_names: tuple[str, ...]
    description: str
    left_right_flip: bool = True


def fewlabel_splits(
    data_dir: str | os.PathLike | None = None,
    axis: int = 2,
    num_classes: int | None = None,
    holdout_fraction: float = 0.25,
    val_fraction: float = 0.15,
    gap: int = 3,
    split_layout: str = "alternate",
) -> FewLabelData:
    """Train / val / test slabs of the embedded brain slices, or of a user's ``images/`` + ``labels/`` NIfTI folders.

    Args:
        data_dir: ``None`` for the embedded slices (:func:`~monai_gvae.data.load_brain_slices`); else a folder read
            by :func:`~monai_gvae.data.load_labelled_slices` (2D slices, or 3D volumes sliced along ``axis``,
            resized to 64 x 64, labels remapped to ``0..C-1``); the slices are split in their file and slice order.
        axis: the anatomical axis along which 3D volumes are sliced, after RAS reorientation: 0 sagittal,
            1 coronal, 2 axial (``data_dir`` only).
        num_classes: classes declared for ``data_dir`` (an error when the labels hold more); ``None``: as found.
        holdout_fraction, val_fraction, gap: the slab split (:func:`~monai_gvae.data.brain_slab_split`).
        split_layout: ``"alternate"`` (val and test slabs at different levels, the recorded runs) or ``"paired"``
            (a val slab beside each test slab, so that validation sees the levels the test slabs score).

    Returns:
        :class:`FewLabelData`.

    Raises:
        FileNotFoundError, InputImageError, ValueError: as the loaders (each names the file or setting).

    Example::

        data = fewlabel_splits("my_scans", axis=2, num_classes=3)
        len(data.train), len(data.val), len(data.test)
    """
    if data_dir is None:
        splits = {s: load_brain_slices(s, holdout_fraction, None, val_fraction, gap, split_layout)
                  for s in ("train", "val", "test")}
        return FewLabelData(**splits, num_classes=NUM_CLASSES, class_names=tuple(BRAIN_CLASS_NAMES[1:]),
                            description="embedded Colin27/AAL axial brain slices (4 classes)")
    items = load_labelled_slices(data_dir, image_size=IMAGE_SIZE, num_classes=num_classes, axis=axis)
    values = items[0]["label_values"]
    classes = num_classes if num_classes is not None else len(values)
    roles = brain_slab_split(len(items), holdout_fraction, val_fraction, gap, layout=split_layout)
    splits = {s: [i for i, role in zip(items, roles) if role == s] for s in ("train", "val", "test")}
    names = tuple(f"class_{v}" for v in values[1:]) + tuple(f"class_{c}" for c in range(len(values), classes))
    return FewLabelData(**splits, num_classes=classes, class_names=names,
                        description=f"{os.fspath(data_dir)} ({len(items)} slices along axis {axis}, label values "
                                    f"{values} as classes 0..{classes - 1})",
                        left_right_flip=axis != 0)  # a sagittal slice's columns run anterior-posterior



def _stack(items: Sequence[Mapping[str, Any]], key: str) -> torch.Tensor:
    """``items[i][key]`` stacked along a new first axis."""
    return torch.stack([torch.as_tensor(i[key]) for i in items])
