"""What bundles and the command line need that MONAI lacks: sample grids, synthesis to marked files, reports, and
the conversion of command-line settings to typed values (``settings``).

``evaluation`` (folder metrics, memorisation check) and ``training`` (bundle training run) are imported on use.
"""

from pathlib import Path as _Path

# the one conversion of boolean text (``settings`` uses it); kept here for configs and scripts written against it
from monai_gvae.utils import flag

from .adaptation import load_pretrained
from .handlers import SampleGridHandler
from .png_synthesis import synthesize_rgb_png
from .settings import BundleSettings, build_checkpoint_handler, build_trainer, convert_setting
from .synthesis import (
    FORMATS,
    generate,
    label_class_names,
    output_names,
    sample_latents,
    synthesize,
    synthesize_to_nifti,
)
from .visualize import LABEL_PALETTE, sample_grid, save_sample_grid

__all__ = [
    "SampleGridHandler",
    "FORMATS",
    "generate",
    "label_class_names",
    "output_names",
    "sample_latents",
    "synthesize",
    "synthesize_to_nifti",
    "synthesize_rgb_png",
    "sample_grid",
    "save_sample_grid",
    "LABEL_PALETTE",
    "load_pretrained",
    "flag",
    "BundleSettings",
    "build_trainer",
    "build_checkpoint_handler",
    "convert_setting",
    "SCHEMA_FILE",
]

SCHEMA_FILE = str(_Path(__file__).resolve().parent / "schema" / "meta_schema_gvae.json")
"""The metadata schema shipped in the package, for ``verify_metadata --filepath`` (nothing is downloaded)."""
