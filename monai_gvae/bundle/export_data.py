"""The embedded brain slices as image files, for the commands that read folders (``monai-gvae evaluate``,
``memorization``): ``monai-gvae export-data OUT`` writes ``OUT/<split>/images/`` and ``OUT/<split>/labels/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from monai_gvae.data import load_brain_slices
from monai_gvae.utils import atomic_path, check_targets_free

__all__ = ["BRAIN_SPLIT_CANDIDATES", "brain_splits", "export_brain_slices"]

BRAIN_SPLIT_CANDIDATES = ("train", "val", "test")
"""Split names tried, in this order; those :func:`monai_gvae.data.load_brain_slices` knows are exported."""

_DESCRIPTION = "monai-gvae embedded brain slice (Colin27 T1, real data; see BRAIN_DATA_NOTICE.txt)"


def brain_splits() -> list[str]:
    """The splits of the embedded brain slices (those of :data:`BRAIN_SPLIT_CANDIDATES` that
    :func:`load_brain_slices` accepts and that hold slices)."""
    splits = []
    for split in BRAIN_SPLIT_CANDIDATES:
        try:
            if load_brain_slices(split):
                splits.append(split)
        except ValueError:  # a split this version of the data does not have
            continue
    return splits


def export_brain_slices(output_dir: str | os.PathLike, overwrite: bool = False) -> dict[str, int]:
    """Write the embedded brain slices as NIfTI files: ``OUT/<split>/images/slice_<index>.nii.gz`` (float32 in
    [0, 1]) and ``OUT/<split>/labels/slice_<index>.nii.gz`` (uint8 class indices 0..3) for each split.

    The arrays are written as :func:`monai_gvae.data.load_brain_slices` returns them (identity affine), so MONAI's
    ``LoadImage`` reads each file back as the array the bundles train on, and the folders are in the layout
    ``monai-gvae evaluate --data`` and ``memorization --train/--holdout`` read (``images/`` + ``labels/``). These
    are real (template) images, not synthetic ones: they carry no synthetic marking. All targets are checked before
    anything is written.

    Args:
        output_dir: the folder to write (created).
        overwrite: replace existing files.

    Returns:
        the number of slices written per split, e.g. ``{"train": 46, "test": 15}``.

    Raises:
        FileExistsError: a target exists and ``overwrite`` is False (nothing written).

    Example::

        export_brain_slices("data")  # data/train/images/..., data/test/labels/...
    """
    out = Path(output_dir)
    items = {split: load_brain_slices(split) for split in brain_splits()}
    targets = []
    for split, slices in items.items():
        for item in slices:
            name = f"slice_{item['slice_index']:03d}.nii.gz"
            targets += [out / split / "images" / name, out / split / "labels" / name]
    check_targets_free(targets, overwrite)
    counts = {}
    for split, slices in items.items():
        for item in slices:
            name = f"slice_{item['slice_index']:03d}.nii.gz"
            _write(item["image"][0].astype(np.float32), out / split / "images" / name, overwrite, label=False)
            _write(item["label"][0].astype(np.uint8), out / split / "labels" / name, overwrite, label=True)
        counts[split] = len(slices)
    return counts


def _write(array: np.ndarray, path: Path, overwrite: bool, label: bool) -> None:
    img = nib.Nifti1Image(array, np.eye(4))
    img.header["descrip"] = _DESCRIPTION[:79].encode()
    if label:
        img.header["intent_code"] = 1002  # NIFTI_INTENT_LABEL
    with atomic_path(path, overwrite=overwrite) as tmp:
        nib.save(img, tmp)
