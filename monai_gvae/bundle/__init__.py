"""What bundles and the command line need that MONAI lacks: sample grids, synthesis to marked files, reports.

``evaluation`` (folder metrics, memorisation check) and ``training`` (bundle training run) are imported on use.
"""

from .adaptation import load_pretrained
from .handlers import SampleGridHandler
from .synthesis import FORMATS, generate, model_checksum, output_names, sample_latents, synthesize, synthesize_to_nifti
from .visualize import LABEL_PALETTE, sample_grid, save_sample_grid

__all__ = [
    "SampleGridHandler",
    "FORMATS",
    "generate",
    "model_checksum",
    "output_names",
    "sample_latents",
    "synthesize",
    "synthesize_to_nifti",
    "sample_grid",
    "save_sample_grid",
    "LABEL_PALETTE",
    "load_pretrained",
]
