"""MONAI's experiment tracking (``python -m monai.bundle run training ... --tracking mlflow``) on the GVAE bundles.

``--tracking mlflow`` appends MONAI's default ``MLFlowHandler`` to ``train#handlers`` and ``validate#handlers``. Its
trainer handler reads ``output[0]["loss"]``, the decollated output of MONAI's ``SupervisedTrainer``; ``GVAETrainer``'s
output is one dict of loss terms (``GVAEKeys``), so the bundles pass their handler list through
:func:`tracked_handlers`, which points such a handler at the loss terms, gives it the run's parameters and adds the
sample grid to the artifacts it records. Without ``--tracking`` the list is returned unchanged.

MLflow is optional (``pip install "monai-gvae[mlflow]"``); MONAI stores the runs in a local SQLite file,
``<output_dir>/mlruns.db``, with artifacts under ``<output_dir>/mlruns`` (no server; ``mlflow ui --backend-store-uri
sqlite:///<output_dir>/mlruns.db`` shows them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from monai_gvae.engines import loss_terms

__all__ = ["tracked_handlers"]


def _scalar_or_loss_terms(transform: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """``transform`` where it gives a number for the output, else the output's loss terms (a dict of floats)."""

    def output_transform(output: Any) -> Any:
        if transform is not None:
            try:
                value = transform(output)
            except (KeyError, IndexError, TypeError):
                value = None
            if value is not None and not isinstance(value, (tuple, list, dict)):
                return value
        return loss_terms(output)

    return output_transform


def _repaired_path(path: str) -> str:
    """MONAI records the executed config as ``$@output_dir + '/config_<time>.json'``; when ``output_dir`` was given on
    the command line (plain text, not an expression) that becomes the text ``<dir> + '/config_<time>.json'``."""
    match = re.fullmatch(r"(.+) \+ '(/[^']+)'", path)
    return match.group(1) + match.group(2) if match and not os.path.exists(path) else path


def tracked_handlers(
    handlers: Sequence[Any],
    params: Mapping[str, Any] | None = None,
    artifacts: Iterable[str | os.PathLike] = (),
) -> list[Any]:
    """The trainer's handler list, with each ``MLFlowHandler`` in it fitted to ``GVAETrainer``.

    For each ``monai.handlers.MLFlowHandler`` among ``handlers``: its ``output_transform`` falls back to the loss terms
    (:func:`monai_gvae.engines.loss_terms`, one MLflow metric per term) where it does not give a number for the
    trainer's output; ``params`` are added to its ``experiment_param`` (recorded as the run's parameters when training
    starts); ``artifacts`` (e.g. the sample grid ``samples.png``) are added to the files it records when training
    completes. Other handlers are passed on as they are.

    Args:
        handlers: the handlers given to the trainer (a bundle's ``train#handlers``).
        params: parameters to record, e.g. the learning rates and loss weights.
        artifacts: files or folders to record at the end of training (missing ones are skipped by the handler).

    Returns:
        the handlers, as a new list.

    Example (the bundles' ``train#trainer``)::

        train_handlers: "$monai_gvae.bundle.tracked_handlers(@train#handlers, params=@tracking_params,
                          artifacts=[os.path.join(@output_dir, 'samples.png')])"
    """
    from monai.handlers import MLFlowHandler

    handlers = list(handlers)
    for handler in handlers:
        if not isinstance(handler, MLFlowHandler):
            continue
        handler.output_transform = _scalar_or_loss_terms(handler.output_transform)
        if params:
            handler.experiment_param = {**dict(params), **dict(handler.experiment_param or {})}
        recorded = tuple(_repaired_path(os.fspath(a)) for a in handler.artifacts if a)
        handler.artifacts = recorded + tuple(os.fspath(a) for a in artifacts if os.fspath(a) not in recorded)
    return handlers
