"""What bundles need that MONAI lacks: sample grids, synthesis to marked files, model loading."""

from .handlers import SampleGridHandler
from .synthesis import generate, synthesize_to_nifti
from .visualize import LABEL_PALETTE, sample_grid, save_sample_grid

__all__ = ["SampleGridHandler", "generate", "synthesize_to_nifti", "sample_grid", "save_sample_grid", "LABEL_PALETTE"]
