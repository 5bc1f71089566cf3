"""What a person watching a training run sees: one progress bar for the whole run with the loss terms, and one line
per validation (the bundles' ``train#handlers`` and ``validate#handlers``).

Ignite's engines log ``Epoch[N] Complete`` after every epoch (600 lines for the default bundle) and MONAI's
``StatsHandler`` adds more; the bundles keep those loggers at ``WARNING`` (``configs/logging.conf``) and show these
two handlers instead.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar

from monai_gvae.engines import GVAEKeys, loss_terms

__all__ = ["DEFAULT_PROGRESS_TERMS", "TrainingProgressBar", "ValidationLogger"]

DEFAULT_PROGRESS_TERMS: tuple[str, ...] = (GVAEKeys.LOSS_G, GVAEKeys.LOSS_REC, GVAEKeys.LOSS_KL, GVAEKeys.LOSS_D)
"""Loss terms shown beside the bar: the encoder-generator loss, its reconstruction and KL terms, the critic loss."""


class TrainingProgressBar(ProgressBar):
    """One progress bar for a whole training run (all epochs), with the epoch and the latest loss terms.

    Ignite's ``ProgressBar`` draws one bar per epoch, which for the default bundle (600 epochs of 2 iterations) is a
    bar flickering 600 times; this one counts the iterations of the run (``max_epochs x epoch_length``), starts at the
    trainer's iteration when a run is resumed, and reads the loss terms at most every ``postfix_interval`` seconds
    (reading a loss that is still a GPU tensor waits for the GPU, see ``float_outputs`` in docs/performance.md).
    Its ``log_message`` and :class:`ValidationLogger` write lines without breaking the bar.

    Args:
        output_transform: ``engine.state.output -> {name: number}``; default the terms of ``keys``
            (:func:`monai_gvae.engines.loss_terms`).
        keys: the loss terms shown when ``output_transform`` is ``None`` (:data:`DEFAULT_PROGRESS_TERMS`).
        postfix_interval: seconds between two readings of the loss terms.
        persist: keep the finished bar on screen.
        tqdm_kwargs: passed to ``tqdm`` (``file``, ``ncols``, ``disable``, ...). When the output is not a terminal
            (a log file), the bar is redrawn at most every 30 s unless ``mininterval`` is given.

    Example::

        TrainingProgressBar().attach(trainer)  # or in a bundle's train#handlers:
        # - _target_: monai_gvae.handlers.TrainingProgressBar
    """

    def __init__(
        self,
        output_transform: Callable[[Any], Mapping[str, float]] | None = None,
        keys: Iterable[str] = DEFAULT_PROGRESS_TERMS,
        postfix_interval: float = 0.5,
        persist: bool = True,
        **tqdm_kwargs: Any,
    ) -> None:
        tqdm_kwargs.setdefault("file", sys.stderr)
        if "mininterval" not in tqdm_kwargs and not _is_terminal(tqdm_kwargs["file"]):
            tqdm_kwargs["mininterval"] = 30.0
        tqdm_kwargs.setdefault("dynamic_ncols", True)
        super().__init__(persist=persist, **tqdm_kwargs)
        keys = tuple(keys)
        self.output_transform = output_transform or (lambda output: loss_terms(output, keys))
        self.postfix_interval = float(postfix_interval)
        self._last_postfix = float("-inf")

    def attach(self, engine: Engine) -> None:  # type: ignore[override]
        """Show the bar on ``engine`` (a trainer): updated after each iteration, closed when the run ends."""
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._update)
        engine.add_event_handler(Events.COMPLETED, self._close)
        engine.add_event_handler(Events.TERMINATE, self._close)

    def _update(self, engine: Engine) -> None:
        state = engine.state
        if self.pbar is None:
            total = state.max_epochs * state.epoch_length if state.max_epochs and state.epoch_length else None
            self.pbar = self.pbar_cls(
                total=total, initial=state.iteration - 1, desc="training", unit="it", leave=self.persist,
                **self.tqdm_kwargs,
            )
            self._last_postfix = float("-inf")
        now = time.monotonic()
        if now - self._last_postfix >= self.postfix_interval:
            self._last_postfix = now
            self._set_postfix(engine)
        self.pbar.update(state.iteration - self.pbar.n)

    def _set_postfix(self, engine: Engine) -> None:
        state = engine.state
        terms = {"epoch": f"{state.epoch}/{state.max_epochs}"}
        terms.update({k: f"{v:.4g}" for k, v in self.output_transform(state.output).items()})
        self.pbar.set_postfix(terms, refresh=False)

    def _close(self, engine: Engine) -> None:
        if self.pbar is not None:
            self._set_postfix(engine)  # the final values, whatever the interval
        super()._close(engine)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class ValidationLogger:
    """One log line per validation run: each metric, and the key metric's best value so far.

    Attach it to an evaluator (a bundle's ``validate#handlers``). The line goes to the logger ``name`` at ``INFO``
    (the bundles' ``logging.conf`` prints it on stdout), written so that a progress bar on the terminal is cleared
    before and redrawn after it, e.g.::

        validation after epoch 100: val_reconstruction_mae 0.0571 (best 0.0571 at epoch 100)

    Which value is "best" is the evaluator's decision (MONAI's ``metric_cmp_fn``; greater is better unless the
    evaluator is told otherwise).

    Args:
        name: the logger's name.

    Example::

        ValidationLogger().attach(evaluator)
    """

    def __init__(self, name: str = "monai_gvae.validation") -> None:
        self.logger = logging.getLogger(name)

    def attach(self, engine: Engine) -> None:
        """Log after each run of ``engine`` (an evaluator runs one epoch per validation)."""
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        from tqdm import tqdm

        state = engine.state
        parts = [f"{k} {_number(v)}" for k, v in state.metrics.items()]
        line = f"validation after epoch {state.epoch}: " + (", ".join(parts) or "no metrics")
        key = getattr(state, "key_metric_name", None)
        if key is not None and getattr(state, "best_metric_epoch", -1) != -1:
            line += f" (best {_number(state.best_metric)} at epoch {state.best_metric_epoch})"
        with tqdm.external_write_mode(file=sys.stdout):
            self.logger.info(line)


def _number(value: Any) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)
