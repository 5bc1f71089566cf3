"""Divergence guard: stop on NaN/Inf gradients before the optimiser step, and optional rollback with a lower LR.

``GVAETrainer(check_finite=True)`` already stops on a non-finite loss term before the optimiser step. A finite loss
can still give an infinite gradient (an overflow in the backward pass); one Adam step with it poisons every
weight. :class:`DivergenceGuard` checks the gradients in an optimiser *step pre-hook*, so no step is ever taken
with them; with mixed precision on CUDA, ``GradScaler`` already skips such steps and the hook only sees finite
gradients. :func:`run_with_rollback` turns either error into a restart from the last good checkpoint with lowered
learning rates (off by default: ``max_rollbacks=0``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from ignite.engine import Engine, Events
from torch import nn

from monai_gvae.engines.gvae_trainer import NonFiniteLossError, unwrap

from .checkpoint import GVAECheckpointHandler
from .checkpoint_io import latest_checkpoint

__all__ = ["DivergenceGuard", "NonFiniteGradientError", "run_with_rollback"]

logger = logging.getLogger(__name__)


class NonFiniteGradientError(NonFiniteLossError):
    """A gradient became NaN or Inf; the optimiser step that would have used it was not taken."""


def _grads_finite(grads: list[torch.Tensor]) -> bool:
    if not grads:
        return True
    foreach_norm = getattr(torch, "_foreach_norm", None)
    norms = foreach_norm(grads) if foreach_norm is not None else [g.norm() for g in grads]
    return bool(torch.isfinite(torch.stack([n.float() for n in norms])).all())


class DivergenceGuard:
    """Raises :class:`NonFiniteGradientError` naming the iteration, the step and the parameters when a gradient is
    NaN/Inf, before the optimiser uses it.

    It hooks ``engine.optimizer`` (the encoder-generator step), ``engine.critic_optimizer`` (the critic step) and
    ``engine.code_critic_optimizer`` (alpha-GAN's code-critic step, when there is one) of a ``GVAETrainer``, or the
    ``optimizers`` given. Cost: one fused norm over the gradients per step (measured in
    ``docs/reliability.md``).

    Args:
        optimizers: ``{step name: (optimizer, module or None)}``; default the trainer's optimisers with the
            encoder+generator, the critic and the code critic (for parameter names in the message).

    Example::

        DivergenceGuard().attach(trainer)
    """

    def __init__(self, optimizers: dict[str, tuple[torch.optim.Optimizer, nn.Module | None]] | None = None) -> None:
        self.optimizers = optimizers
        self.engine: Engine | None = None
        self._handles: list[Any] = []
        self.checked_steps = 0

    def attach(self, engine: Engine) -> None:
        """Install the step pre-hooks when the run starts (a trainer attaches its handlers before it has set its
        optimisers) and remove them when it completes."""
        self.engine = engine
        engine.add_event_handler(Events.STARTED, self.install)
        engine.add_event_handler(Events.COMPLETED, self.detach)

    def install(self, engine: Engine | None = None) -> None:
        """Register the step pre-hooks on the optimisers (done at ``STARTED`` by :meth:`attach`).

        Raises:
            ValueError: no optimiser found.
        """
        engine = engine if engine is not None else self.engine
        self.engine = engine
        self.detach()
        optimizers = self.optimizers
        if optimizers is None:
            optimizers = {}
            # named by role, so that a message reads "generator.trunk.project.weight", not "1.trunk.project.weight"
            roles = {name: getattr(engine, name, None) for name in ("encoder", "generator")}
            modules = {name: unwrap(m) for name, m in roles.items() if m is not None}
            if getattr(engine, "optimizer", None) is not None:
                optimizers["encoder-generator"] = (engine.optimizer, nn.ModuleDict(modules) if modules else None)
            if getattr(engine, "critic_optimizer", None) is not None:
                optimizers["critic"] = (engine.critic_optimizer, unwrap(getattr(engine, "critic", None)))
            if getattr(engine, "code_critic_optimizer", None) is not None:
                optimizers["code critic"] = (engine.code_critic_optimizer, unwrap(getattr(engine, "code_critic", None)))
        if not optimizers:
            raise ValueError("DivergenceGuard found no optimiser to guard (pass optimizers=).")
        for step, (opt, module) in optimizers.items():
            self._handles.append(opt.register_step_pre_hook(self._hook(step, opt, module)))

    def detach(self, engine: Engine | None = None) -> None:
        """Remove the hooks."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, step: str, opt: torch.optim.Optimizer, module: nn.Module | None) -> Callable:
        def hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            self.checked_steps += 1
            if _grads_finite(grads):
                return
            names = {id(p): n for n, p in module.named_parameters()} if module is not None else {}
            bad = []
            for g in optimizer.param_groups:
                for p in g["params"]:
                    if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                        kind = "nan" if bool(torch.isnan(p.grad).any()) else "inf"
                        bad.append(f"{names.get(id(p), f'parameter of shape {tuple(p.shape)}')} ({kind})")
            state = getattr(self.engine, "state", None)
            where = f"iteration {state.iteration} (epoch {state.epoch})" if state is not None else "this step"
            raise NonFiniteGradientError(
                f"non-finite gradient in the {step} step at {where}: {', '.join(bad[:5])}"
                f"{f' and {len(bad) - 5} more' if len(bad) > 5 else ''}; no optimiser step was taken with it."
            )

        return hook


def run_with_rollback(
    engine: Engine,
    checkpointer: GVAECheckpointHandler,
    max_rollbacks: int = 0,
    lr_factor: float = 0.5,
) -> int:
    """``engine.run()``, restarting from the last good checkpoint with lower learning rates when training diverges.

    On :class:`~monai_gvae.engines.NonFiniteLossError` (a NaN/Inf loss, gradient or weights) the newest complete,
    finite checkpoint written at or before the failing iteration is restored (weights, optimisers, trainer and
    random states) and every optimiser's learning rates are set to ``lr_factor`` times those in use when it failed;
    at most ``max_rollbacks`` times, then the error is raised. With ``max_rollbacks=0`` this is ``engine.run()``.

    Args:
        engine: the trainer, with ``checkpointer`` attached.
        checkpointer: the checkpoint handler whose checkpoints are rolled back to.
        max_rollbacks: rollbacks allowed (0: none, the default).
        lr_factor: learning-rate factor per rollback, in (0, 1).

    Returns:
        the number of rollbacks done.

    Raises:
        NonFiniteLossError: divergence with no rollback left, or no good checkpoint to return to.
        ValueError: ``max_rollbacks < 0`` or ``lr_factor`` outside (0, 1).

    Example::

        handler.attach(trainer)
        run_with_rollback(trainer, handler, max_rollbacks=3, lr_factor=0.5)
    """
    if max_rollbacks < 0:
        raise ValueError(f"max_rollbacks must be >= 0, got {max_rollbacks}.")
    if not 0.0 < lr_factor < 1.0:
        raise ValueError(f"lr_factor must be in (0, 1), got {lr_factor}.")
    rollbacks = 0
    while True:
        try:
            engine.run()
            return rollbacks
        except NonFiniteLossError as err:
            if rollbacks >= max_rollbacks:
                raise
            found = latest_checkpoint(
                checkpointer.save_dir, checkpointer.file_prefix, checkpointer.final_filename,
                max_iteration=engine.state.iteration,
            )
            if found is None:
                raise NonFiniteLossError(f"{err} No good checkpoint to roll back to in {checkpointer.save_dir}.") from err
            info = found[0]
            rollbacks += 1
            lrs = [g["lr"] * lr_factor for opt in checkpointer.optimizers for g in opt.param_groups]
            checkpointer.schedule_restore(info.path, learning_rates=lrs)
            engine.state.iteration, engine.state.epoch = info.iteration, info.epoch
            _reset_for_rerun(engine)
            logger.warning(
                f"rollback {rollbacks}/{max_rollbacks}: {err} -> restarting from {info.path} "
                f"(iteration {info.iteration}) with learning rates x{lr_factor}."
            )


def _reset_for_rerun(engine: Engine) -> None:
    """Let ``engine.run()`` start again after an exception (ignite keeps the finished run generator otherwise,
    and a second ``run()`` would return at once without training)."""
    if hasattr(engine, "_internal_run_generator"):
        engine._internal_run_generator = None
    engine.should_terminate = False
    engine.should_terminate_single_epoch = False
    if hasattr(engine, "_dataloader_iter"):
        engine._dataloader_iter = None
