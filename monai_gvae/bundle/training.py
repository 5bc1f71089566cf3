"""Running a bundle's training from Python or the command line, without overwriting earlier checkpoints."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any

from monai_gvae.bundle.settings import convert_setting

__all__ = ["DEFAULT_BUNDLE", "train_bundle"]

DEFAULT_BUNDLE = os.path.join("bundles", "gvae_brain2d")
"""The bundle trained by default (relative to the working directory: the repository root)."""


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
    (:func:`monai_gvae.handlers.earlier_run_files`: ``model.pt``, ``checkpoint_epoch=N.pt``, ...; the check of the
    bundle's ``GVAECheckpointHandler``): training refuses to overwrite them unless ``overwrite`` (then the handler
    deletes them when training starts), or the config resumes them (``--resume true``).

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
    workflow = _bundle_workflow(os.fspath(bundle_dir), config_files, meta_file, run_id, overrides)
    output_dir = workflow.parser.get_parsed_content("output_dir") if "output_dir" in workflow.parser else None
    _refuse_earlier_run(workflow, output_dir, overwrite)
    workflow.initialize()
    if progress and "train#trainer" in workflow.parser:
        _attach_progress_bar(workflow.parser.get_parsed_content("train#trainer"))
    workflow.run()
    workflow.finalize()
    return output_dir


def _bundle_workflow(
    bundle_dir: str,
    config_files: Sequence[str] | None,
    meta_file: str | None,
    run_id: str,
    overrides: Mapping[str, Any] | None,
) -> Any:
    """The bundle's ``ConfigWorkflow`` (not yet initialised), its files checked and defaulted as
    :func:`train_bundle` documents."""
    from monai.bundle import ConfigWorkflow

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
    return ConfigWorkflow(
        config_file=configs[0] if len(configs) == 1 else configs,
        meta_file=meta_file,
        logging_file=logging_file if os.path.isfile(logging_file) else False,
        run_id=run_id,
        workflow_type="train",
        **settings,
    )


def _refuse_earlier_run(workflow: Any, output_dir: str | None, overwrite: bool) -> None:
    """Raise ``FileExistsError`` when ``output_dir`` holds an earlier run's checkpoints, unless the config resumes
    them or ``overwrite`` (which is then passed on to the checkpoint handler, which replaces them)."""
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
        from monai_gvae.handlers import check_earlier_run

        check_earlier_run(
            output_dir,
            **_checkpoint_names(workflow.parser),
            hint="nothing was run. Resume it (--resume true), choose another output_dir or pass --overwrite",
        )


def _attach_progress_bar(trainer: Any) -> None:
    """An Ignite progress bar on stderr showing the two losses of each iteration."""
    from ignite.handlers import ProgressBar

    from monai_gvae.engines import GVAEKeys, loss_terms

    losses = functools.partial(loss_terms, keys=(GVAEKeys.LOSS_G, GVAEKeys.LOSS_D))
    ProgressBar(persist=True).attach(trainer, output_transform=losses)


def _checkpoint_names(parser: Any) -> dict[str, Any]:
    """``file_prefix`` and ``final_filename`` of the bundle's checkpoint handler where the config sets them (the
    handler's defaults apply otherwise): the names :func:`monai_gvae.handlers.check_earlier_run` looks for."""
    names = {}
    for name in ("file_prefix", "final_filename"):
        for block in ("train#checkpoint_saver", "train#checkpoint_saver_factory"):
            if f"{block}#{name}" in parser:
                names[name] = parser.get_parsed_content(f"{block}#{name}")
                break
    return names
