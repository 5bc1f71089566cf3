"""What bundles and the command line need that MONAI lacks: sample grids, synthesis to marked files, reports, the
conversion of command-line settings to typed values (``settings``), the refusals made before a run (``checks``),
one-line errors and end-of-run messages (``console``), experiment tracking (``tracking``) and the bundles shipped with
the package (``catalog``).

``evaluation`` (folder metrics, memorisation check), ``training`` (bundle training run) and ``export_data`` (the
embedded slices as files) are imported on use.
"""

from pathlib import Path as _Path

# the one conversion of boolean text (``settings`` uses it); kept here for configs and scripts written against it
from monai_gvae.utils import flag

from .adaptation import load_pretrained
from .catalog import DEFAULT_BUNDLE_NAME, bundle_names, bundle_path, init_bundle
from .checks import check_checkpoint, check_datasets, check_numbers, check_training_run
from .console import readable_errors, report_evaluation, report_synthesis
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
from .tracking import tracked_handlers
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
    "DEFAULT_BUNDLE_NAME",
    "bundle_names",
    "bundle_path",
    "init_bundle",
    "check_checkpoint",
    "check_datasets",
    "check_numbers",
    "check_training_run",
    "readable_errors",
    "report_evaluation",
    "report_synthesis",
    "tracked_handlers",
]

SCHEMA_FILE = str(_Path(__file__).resolve().parent / "schema" / "meta_schema_gvae.json")
"""The metadata schema shipped in the package, for ``verify_metadata --filepath`` (nothing is downloaded)."""
