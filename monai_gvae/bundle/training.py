"""Running a bundle's training from Python or the command line, without overwriting earlier checkpoints."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from monai_gvae.bundle.catalog import DEFAULT_BUNDLE_NAME, bundle_names, bundle_path
from monai_gvae.bundle.settings import convert_setting

__all__ = ["DEFAULT_BUNDLE", "DEFAULT_OUTPUT_DIR", "resolve_bundle", "train_bundle"]

DEFAULT_BUNDLE = DEFAULT_BUNDLE_NAME
"""The bundle trained by default: the shipped ``gvae_brain2d`` (:mod:`monai_gvae.bundle.catalog`), wherever the
package is installed."""

DEFAULT_OUTPUT_DIR = os.path.join("runs", DEFAULT_BUNDLE_NAME)
"""Where a run of the default bundle writes when no ``output_dir`` is given (relative to the working directory: the
shipped bundle's own folder may be inside the installation)."""


def resolve_bundle(bundle: str | os.PathLike | None) -> str:
    """The folder of ``bundle``: an existing folder as it is, else the shipped bundle of that name
    (``monai-gvae bundle list``); ``None`` is the default bundle.

    Raises:
        FileNotFoundError: neither a folder nor a shipped bundle (the message lists the shipped ones).

    Example::

        resolve_bundle(None)             # .../gvae_brain2d (the shipped default bundle)
        resolve_bundle("gvae_mnist")     # the shipped MNIST bundle
        resolve_bundle("my_bundle")      # ./my_bundle, if that folder exists
    """
    if bundle is None:
        return str(bundle_path(DEFAULT_BUNDLE_NAME))
    text = os.fspath(bundle)
    if os.path.isdir(text):
        return text
    if text in bundle_names():
        return str(bundle_path(text))
    raise FileNotFoundError(
        f"bundle folder not found: {text} (give a bundle folder, or the name of a shipped bundle: "
        f"{', '.join(bundle_names())}; `monai-gvae bundle init NAME DIR` writes one to a folder)."
    )


def train_bundle(
    bundle_dir: str | os.PathLike | None = None,
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
        bundle_dir: the bundle folder (``configs/train.yaml``, ``configs/metadata.json``), or the name of a shipped
            bundle; ``None``: the shipped default bundle (``gvae_brain2d``), whose ``output_dir`` then defaults to
            :data:`DEFAULT_OUTPUT_DIR` under the working directory.
        config_files: config files to merge in order (default ``bundle_dir/configs/train.yaml``).
        meta_file: metadata file (default ``bundle_dir/configs/metadata.json`` when present).
        run_id: the config id to run (``training``; MONAI's default id is ``run``).
        overrides: config ids and values, e.g. ``{"max_epochs": 1, "output_dir": "/tmp/run"}``;
            ``bundle_root`` defaults to ``bundle_dir``.
        overwrite: allow an ``output_dir`` that already holds checkpoints.
        progress: show the progress bar: the bundle's own (its ``progress`` id), or else one attached to
            ``train#trainer`` (stderr).

    Returns:
        the resolved ``output_dir`` (``None`` if the config has none).

    Raises:
        FileNotFoundError: missing bundle folder (neither a folder nor a shipped bundle) or config file.
        FileExistsError: ``output_dir`` holds checkpoints and ``overwrite`` is False.

    Example::

        train_bundle("bundles/gvae_brain2d", overrides={"max_epochs": 1, "output_dir": "/tmp/gvae"})
        train_bundle(overrides={"max_epochs": 1})  # the shipped gvae_brain2d, into ./runs/gvae_brain2d
    """
    overrides = dict(overrides or {})
    if bundle_dir is None:
        overrides.setdefault("output_dir", DEFAULT_OUTPUT_DIR)
    workflow = _bundle_workflow(resolve_bundle(bundle_dir), config_files, meta_file, run_id, overrides)
    output_dir = workflow.parser.get_parsed_content("output_dir") if "output_dir" in workflow.parser else None
    _refuse_earlier_run(workflow, output_dir, overwrite)
    own_progress_bar = "progress" in workflow.parser
    if own_progress_bar and "progress" not in overrides:
        # the bundle shows its own progress bar (train#handlers), here only when asked for
        workflow.parser["progress"] = bool(progress)
    workflow.initialize()
    if progress and not own_progress_bar and "train#trainer" in workflow.parser:
        from monai_gvae.handlers import TrainingProgressBar

        TrainingProgressBar().attach(workflow.parser.get_parsed_content("train#trainer"))
    workflow.run()
    workflow.finalize()
    return output_dir


def _bundle_workflow(
    bundle_dir: str,
    config_files: Sequence[str] | None,
    meta_file: str | None,
    run_id: str,
    overrides: Mapping[str, Any],
) -> Any:
    """The bundle's ``ConfigWorkflow`` (not yet initialised), its files checked and defaulted as
    :func:`train_bundle` documents."""
    from monai.bundle import ConfigWorkflow

    configs = list(config_files) if config_files else [os.path.join(bundle_dir, "configs", "train.yaml")]
    for config in configs:
        if not os.path.isfile(config):
            raise FileNotFoundError(f"config file not found: {config}")
    if meta_file is None:
        default_meta = os.path.join(bundle_dir, "configs", "metadata.json")
        meta_file = default_meta if os.path.isfile(default_meta) else None
    logging_file = os.path.join(bundle_dir, "configs", "logging.conf")
    settings = {"bundle_root": bundle_dir, **overrides}
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
