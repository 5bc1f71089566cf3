"""Running a bundle's training from Python or the command line, without overwriting earlier checkpoints."""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence
from typing import Any

from monai_gvae.bundle.settings import convert_setting

__all__ = ["DEFAULT_BUNDLE", "train_bundle"]

DEFAULT_BUNDLE = os.path.join("bundles", "gvae_brain2d")
"""The bundle trained by default (relative to the working directory: the repository root)."""

_CHECKPOINT_PATTERNS = ("model.pt", "checkpoint_*.pt", "model_key_metric=*.pt")


def train_bundle(
    bundle_dir: str | os.PathLike = DEFAULT_BUNDLE,
    config_files: Sequence[str] | None = None,
    meta_file: str | None = None,
    run_id: str = "training",
    overrides: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> str | None:
    """Run a bundle's training workflow (MONAI ``ConfigWorkflow``), as ``python -m monai.bundle run`` does.

    Before anything runs, the resolved ``output_dir`` is checked for checkpoints of an earlier run
    (``model.pt``, ``checkpoint_*.pt``): training refuses to overwrite them unless ``overwrite`` (then the bundle's
    ``GVAECheckpointHandler`` deletes them when training starts), or the config resumes them (``--resume true``).

    Args:
        bundle_dir: the bundle folder (``configs/train.yaml``, ``configs/metadata.json``).
        config_files: config files to merge in order (default ``bundle_dir/configs/train.yaml``).
        meta_file: metadata file (default ``bundle_dir/configs/metadata.json`` when present).
        run_id: the config id to run (``training``; MONAI's default id is ``run``).
        overrides: config ids and values, e.g. ``{"max_epochs": 1, "output_dir": "/tmp/run"}``;
            ``bundle_root`` defaults to ``bundle_dir``.
        overwrite: allow an ``output_dir`` that already holds checkpoints.
        progress: attach an Ignite progress bar to ``train#trainer`` (stderr).

    Returns:
        the resolved ``output_dir`` (``None`` if the config has none).

    Raises:
        FileNotFoundError: missing bundle folder or config file.
        FileExistsError: ``output_dir`` holds checkpoints and ``overwrite`` is False.

    Example::

        train_bundle("bundles/gvae_brain2d", overrides={"max_epochs": 1, "output_dir": "/tmp/gvae"})
    """
    from monai.bundle import ConfigWorkflow

    bundle_dir = os.fspath(bundle_dir)
    if not os.path.isdir(bundle_dir):
        raise FileNotFoundError(
            f"bundle folder not found: {bundle_dir} (give --bundle, or run from the repository root)."
        )
    configs = list(config_files) if config_files else [os.path.join(bundle_dir, "configs", "train.yaml")]
    for config in configs:
        if not os.path.isfile(config):
            raise FileNotFoundError(f"config file not found: {config}")
    if meta_file is None:
        default_meta = os.path.join(bundle_dir, "configs", "metadata.json")
        meta_file = default_meta if os.path.isfile(default_meta) else None
    logging_file = os.path.join(bundle_dir, "configs", "logging.conf")
    settings = {"bundle_root": bundle_dir, **dict(overrides or {})}
    workflow = ConfigWorkflow(
        config_file=configs[0] if len(configs) == 1 else configs,
        meta_file=meta_file,
        logging_file=logging_file if os.path.isfile(logging_file) else False,
        run_id=run_id,
        workflow_type="train",
        **settings,
    )
    output_dir = workflow.parser.get_parsed_content("output_dir") if "output_dir" in workflow.parser else None
    # GVAECheckpointHandler (monai_gvae.handlers) resumes a run (`--resume true`) and, told to, replaces one itself
    resume_key = "train#checkpoint_saver#resume"
    resuming = False
    if resume_key in workflow.parser:
        # typed as the handler receives it (build_checkpoint_handler converts command-line text the same way)
        resume = convert_setting("resume", workflow.parser.get_parsed_content(resume_key))
        resuming = resume not in (False, None)
        if overwrite:
            workflow.parser["train#checkpoint_saver#overwrite"] = True
    if output_dir is not None and not overwrite and not resuming:
        found = sorted(p for pattern in _CHECKPOINT_PATTERNS for p in glob.glob(os.path.join(output_dir, pattern)))
        if found:
            raise FileExistsError(
                f"{output_dir} already holds checkpoints of an earlier run ({os.path.basename(found[0])}"
                f"{', ...' if len(found) > 1 else ''}); nothing was run. Choose another output_dir or pass --overwrite."
            )
    workflow.initialize()
    if progress and "train#trainer" in workflow.parser:
        from ignite.handlers import ProgressBar

        def losses(output: Any) -> dict:
            if not isinstance(output, Mapping):
                return {}
            return {k: float(output[k]) for k in ("loss_g", "loss_d") if k in output and output[k] is not None}

        ProgressBar(persist=True).attach(workflow.parser.get_parsed_content("train#trainer"), output_transform=losses)
    workflow.run()
    workflow.finalize()
    return output_dir
