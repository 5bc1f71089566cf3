"""Data readers: the embedded brain slices, synthetic stand-ins and other sources (never download)."""

from .brain import (
    BRAIN_CLASS_NAMES,
    DEFAULT_BRAIN_SLICES_FILE,
    DEFAULT_BRAIN_VOLUME_FILE,
    BrainSliceDataset,
    brain_holdout_mask,
    load_brain_slices,
    load_brain_volume,
    synthetic_slices,
)
from .writers import SYNTHETIC_DESCRIPTION, write_synthetic_nifti

__all__ = [
    "SYNTHETIC_DESCRIPTION",
    "write_synthetic_nifti",
    "BRAIN_CLASS_NAMES",
    "DEFAULT_BRAIN_SLICES_FILE",
    "DEFAULT_BRAIN_VOLUME_FILE",
    "BrainSliceDataset",
    "brain_holdout_mask",
    "load_brain_slices",
    "load_brain_volume",
    "synthetic_slices",
]
