"""Crash-safe checkpoints: atomic writes, complete training state, bit-exact resumption, no NaN-poisoned files.

MONAI's ``CheckpointSaver`` writes with ignite's ``DiskSaver(atomic=False)`` (a kill during ``torch.save`` leaves a
truncated file under the checkpoint's name), saves only the objects it is given (no random generator states, so a
resumed run draws other batches and latents than an uninterrupted one), and writes its "final" checkpoint when an
exception is raised (a diverged model under the final model's name). :class:`GVAECheckpointHandler` keeps its
constructor arguments and file names and fixes the three. The files are handled by :mod:`.checkpoint_io`, the
random states by :mod:`.resume`; what the trainer owns comes from its ``state_dict()``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import torch
from ignite.engine import Engine, Events

from monai_gvae.engines.gvae_trainer import NonFiniteLossError, unwrap
from monai_gvae.utils import check_bool, flag_word

from .checkpoint_io import (
    CONFIG_KEY,
    META_KEY,
    RESERVED_KEYS,
    atomic_torch_save,
    check_earlier_run,
    checkpoint_meta,
    interval_checkpoint_name,
    non_finite_entries,
    prune_interval_checkpoints,
    remove_stale_temporaries,
    run_record,
)
from .checkpoint_io import is_rank0 as _is_rank0  # a module attribute: tests stand in for other DDP ranks with it
from .resume import RandomStateTracker, checkpoint_to_resume, load_checkpoint, set_learning_rates

__all__ = ["GVAECheckpointHandler", "NonFiniteStateError"]


class NonFiniteStateError(NonFiniteLossError):
    """Weights or optimiser state hold NaN/Inf: the checkpoint that would hold them is not written."""


class GVAECheckpointHandler:
    """Crash-safe checkpoints and resumption for ``GVAETrainer`` (or any ignite trainer), a drop-in for MONAI's
    ``CheckpointSaver`` in training bundles (see ``docs/reliability.md``).

    * **Atomic writes** (:func:`~.checkpoint_io.atomic_torch_save`): a ``SIGKILL`` at any moment never leaves a truncated file under
      a checkpoint's name; old checkpoints are deleted (beyond ``n_saved``) only after the new one is in place.
    * **Complete state**: the state dicts of ``save_dict`` (DDP wrappers unwrapped), the trainer's among them
      (``"trainer"``, added when missing: ``GVAETrainer.state_dict()`` holds its EMA generator, gradient scalers and
      latent generator), the random states (:class:`~.resume.RandomStateTracker`), the configuration
      (:func:`~.checkpoint_io.run_record`) and ``checkpoint_meta``.
    * **Resumption** (``resume=True``): at ``STARTED`` the newest complete, finite checkpoint in ``save_dir`` is
      loaded and training continues exactly where it was (also from a mid-epoch checkpoint). ``resume`` may also
      be a checkpoint path.
    * **No poisoned or misleading files**: NaN/Inf weights or optimiser states are not written
      (:class:`NonFiniteStateError`), and nothing is written when training stops with an exception.
    * **No mixing of runs**: with ``resume=False`` a ``save_dir`` holding an earlier run's checkpoints is refused
      (``FileExistsError``), or emptied of them with ``overwrite=True``.

    Attach it last (after handlers such as ``ValidationHandler``), so that a checkpoint at the end of an epoch
    is written after that epoch's handlers have run.

    Args:
        save_dir: folder of the checkpoints.
        save_dict: objects to save, ``{name: obj}`` with ``state_dict``/``load_state_dict`` (as for
            ``CheckpointSaver``).
        file_prefix: interval checkpoints are ``{file_prefix}_epoch=N.pt`` or ``{file_prefix}_iteration=N.pt``.
        save_final: write ``final_filename`` when training completes.
        final_filename: name of the final checkpoint (``load_gvae`` reads it).
        epoch_level: ``save_interval`` counts epochs (True) or iterations (False).
        save_interval: checkpoint every N epochs/iterations; 0 for none.
        n_saved: interval checkpoints kept (the newest); ``None`` keeps all.
        resume: ``False``/``None``, ``True``/``"latest"`` (the newest usable checkpoint in ``save_dir``; start
            afresh when there is none) or a checkpoint path.
        config: configuration to store (plain values), e.g. the bundle's hyper-parameters.
        check_finite: refuse to write checkpoints holding NaN/Inf.
        map_location: where to load tensors when resuming; default the trainer's device.
        name: logger name; default the engine's logger.
        overwrite: with ``resume=False``, delete the checkpoints of an earlier run in ``save_dir`` (logged) instead
            of refusing to start. Under DDP only rank 0 deletes (it is also the only rank that writes).

    Raises:
        ValueError: ``save_interval < 0``, ``n_saved < 1``, an empty ``save_dict`` or a bad ``file_prefix``.
        TypeError: ``save_final``, ``epoch_level``, ``check_finite`` or ``overwrite`` is not a bool, or ``resume`` is
            a boolean word as a string (``"false"``): convert command-line text where it enters.

    Example::

        handler = GVAECheckpointHandler(
            "runs/x", {"gvae": gvae, "critic": critic, "optimizer": opt_g, "critic_optimizer": opt_d},
            save_interval=1, resume=True,
        )
        handler.attach(trainer)
        trainer.run()
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        save_dict: Mapping[str, Any],
        file_prefix: str = "checkpoint",
        save_final: bool = True,
        final_filename: str | None = "model.pt",
        epoch_level: bool = True,
        save_interval: int = 1,
        n_saved: int | None = 2,
        resume: bool | str | os.PathLike = False,
        config: Mapping[str, Any] | None = None,
        check_finite: bool = True,
        map_location: str | torch.device | None = None,
        name: str | None = None,
        overwrite: bool = False,
    ) -> None:
        if save_interval < 0:
            raise ValueError(f"save_interval must be >= 0, got {save_interval}.")
        if n_saved is not None and n_saved < 1:
            raise ValueError(f"n_saved must be >= 1 or None, got {n_saved}.")
        if not save_dict:
            raise ValueError("save_dict must name at least one object to save.")
        if not file_prefix or os.sep in file_prefix:
            raise ValueError(f"file_prefix must be a non-empty file name prefix, got {file_prefix!r}.")
        # typed values only ("false" is truthy); bundles convert command-line text first (monai_gvae.bundle.settings)
        save_final, epoch_level = check_bool(save_final, "save_final"), check_bool(epoch_level, "epoch_level")
        check_finite, overwrite = check_bool(check_finite, "check_finite"), check_bool(overwrite, "overwrite")
        if isinstance(resume, str) and flag_word(resume) is not None:
            raise TypeError(f"resume must be a bool or a checkpoint path, got the string {resume!r}.")
        reserved = sorted(set(save_dict) & set(RESERVED_KEYS))
        if reserved:
            raise ValueError(f"save_dict key(s) {reserved} are reserved by GVAECheckpointHandler.")
        self.save_dir = os.fspath(save_dir)
        self.save_dict = dict(save_dict)
        self.file_prefix = file_prefix
        self.save_final = save_final
        self.final_filename = final_filename if save_final else None
        self.epoch_level = epoch_level
        self.save_interval = save_interval
        self.n_saved = n_saved
        self.resume = True if resume == "latest" else resume
        self.config = dict(config) if config is not None else {}
        self.check_finite = check_finite
        self.overwrite = overwrite
        self.map_location = map_location
        self.logger = logging.getLogger(name)
        self._name = name
        self.engine: Engine | None = None
        self.saved: list[str] = []
        self.resumed_from: str | None = None
        self._random = RandomStateTracker(mid_epoch=not epoch_level, logger=self.logger)
        self._pending: str | None = None  # a checkpoint path, or "latest", to restore at the next STARTED
        self._learning_rates: list[float] | None = None
        self._save_at_epoch_end = False
        self._last_save_iteration = -1
        self._resumed_iteration = -1

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The optimisers of ``save_dict``, in its order, then those the trainer's own state holds
        (``GVAETrainer.owned_optimizers()``: alpha-GAN's code critic's): whose learning rates a rollback lowers."""
        found = [v for v in self.save_dict.values() if isinstance(v, torch.optim.Optimizer)]
        owned = getattr(self.engine, "owned_optimizers", None)
        return found + [o for o in (owned() if callable(owned) else []) if all(o is not f for f in found)]

    def attach(self, engine: Engine) -> None:
        """Register the handler: restore (``STARTED``), snapshot (``EPOCH_STARTED``), save (interval, ``COMPLETED``).

        Raises:
            FileExistsError: ``resume=False``, ``overwrite=False`` and ``save_dir`` already holds checkpoints.
            FileNotFoundError: ``resume`` names a file that does not exist.
        """
        if self._name is None:
            self.logger = self._random.logger = engine.logger
        self.engine = engine
        if not any(v is engine for v in self.save_dict.values()):
            self.save_dict.setdefault("trainer", engine)
        os.makedirs(self.save_dir, exist_ok=True)
        # under DDP only rank 0 writes, so only rank 0 cleans up: the other ranks must not race its deletions
        rank0 = _is_rank0()
        if rank0:
            remove_stale_temporaries(self.save_dir, self.file_prefix, self.final_filename, self.logger)
        if self.resume is False or self.resume is None:
            if rank0 or not self.overwrite:  # every rank refuses an earlier run; with overwrite, rank 0 deletes it
                check_earlier_run(
                    self.save_dir, self.file_prefix, self.final_filename, overwrite=self.overwrite, logger=self.logger
                )
        elif not isinstance(self.resume, bool) and not os.path.isfile(os.fspath(self.resume)):
            raise FileNotFoundError(f"checkpoint to resume from not found: {os.fspath(self.resume)}")
        else:
            self._pending = "latest" if self.resume is True else os.fspath(self.resume)
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._random.epoch_started)
        if self.save_interval > 0:
            if self.epoch_level:
                engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self._interval)
            else:
                engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.save_interval), self._interval)
                engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_end_deferred)
        if self.save_final:
            engine.add_event_handler(Events.COMPLETED, self._completed)

    # ------------------------------------------------------------------ saving
    def checkpoint(
        self, kind: str = "interval", random_states: tuple[dict[str, Any], bool] | None = None
    ) -> dict[str, Any]:
        """The dictionary written to disk now (state dicts, random states, config, meta).

        Args:
            kind: ``"interval"`` or ``"final"``.
            random_states: the random-state entries and whether they resume exactly, as gathered from every rank
                by ``_save``; default this process's.

        Raises:
            NonFiniteStateError: ``check_finite`` and a weight or optimiser tensor holds NaN/Inf.
        """
        engine = self.engine
        if engine is None:
            raise RuntimeError("attach the handler to an engine first.")
        ckpt = {key: (unwrap(obj) if isinstance(obj, torch.nn.Module) else obj).state_dict() for key, obj in self.save_dict.items()}
        bad = non_finite_entries(ckpt) if self.check_finite else []
        if bad:
            raise NonFiniteStateError(
                f"refusing to write a {kind} checkpoint at iteration {engine.state.iteration} "
                f"(epoch {engine.state.epoch}): non-finite values in {', '.join(bad)}; "
                f"the last good checkpoint is {(self.saved[-1] if self.saved else self.resumed_from) or 'none (none was written)'}."
            )
        random_states, exact = random_states if random_states is not None else self._random.entries(engine)
        ckpt.update(random_states)
        ckpt[CONFIG_KEY] = run_record(engine, self.config)
        ckpt[META_KEY] = checkpoint_meta(kind, engine.state, exact)
        return ckpt

    def _save(self, kind: str) -> str:
        state = self.engine.state
        name = self.final_filename if kind == "final" else interval_checkpoint_name(
            self.file_prefix, self.epoch_level, state.epoch, state.iteration
        )
        # every rank's random states: a collective in a distributed run, so every rank gets here (only rank 0 writes)
        random_states = self._random.gathered_entries(self.engine)
        if not _is_rank0():
            return os.path.join(self.save_dir, name)
        path = atomic_torch_save(self.checkpoint(kind, random_states), os.path.join(self.save_dir, name), overwrite=True)
        self.saved.append(path)
        self._last_save_iteration = state.iteration
        self.logger.info(f"saved {kind} checkpoint {path} (iteration {state.iteration})")
        if kind == "interval" and self.n_saved is not None:
            prune_interval_checkpoints(self.save_dir, self.file_prefix, self.n_saved, state.iteration, state.epoch_length, self.logger)
        return path

    def _interval(self, engine: Engine) -> None:
        if not self.epoch_level and engine.state.epoch_length and engine.state.iteration % engine.state.epoch_length == 0:
            # the end of an epoch: save after the epoch's handlers (validation draws random numbers too)
            self._save_at_epoch_end = True
        elif engine.state.iteration != self._last_save_iteration:
            self._save("interval")

    def _epoch_end_deferred(self, engine: Engine) -> None:
        if self._save_at_epoch_end:
            self._save_at_epoch_end = False
            if engine.state.iteration != self._last_save_iteration:
                self._save("interval")

    def _completed(self, engine: Engine) -> None:
        path = os.path.join(self.save_dir, self.final_filename)
        if self.resumed_from is not None and engine.state.iteration == self._resumed_iteration and os.path.isfile(path):
            self.logger.info(f"training was already complete at iteration {engine.state.iteration}; kept {path}")
            return
        self._save("final")

    # ------------------------------------------------------------------ resuming
    def schedule_restore(self, path: str | os.PathLike, learning_rates: list[float] | None = None) -> None:
        """Restore ``path`` at the next ``STARTED`` (the next ``engine.run()``), optionally with new learning rates.

        Args:
            path: a checkpoint written by this handler.
            learning_rates: rates of the optimisers' parameter groups (in ``save_dict`` order) to set after loading
                (rollback after divergence); ``None`` keeps the checkpoint's.
        """
        self._pending = os.fspath(path)
        self._learning_rates = list(learning_rates) if learning_rates is not None else None

    def _started(self, engine: Engine) -> None:
        target, self._pending = self._pending, None
        if target is None:
            return
        location = self.map_location if self.map_location is not None else getattr(engine.state, "device", None) or "cpu"
        found = checkpoint_to_resume(target, self.save_dir, self.file_prefix, self.final_filename, location, self.logger)
        if found is not None:
            self.restore(engine, *found)

    def restore(self, engine: Engine, ckpt: dict, path: str = "<memory>") -> None:
        """Load a checkpoint into the ``save_dict`` objects (the trainer's own state among them) and the random
        generators (called at ``STARTED``), with the learning rates of :meth:`schedule_restore` if given.

        Raises:
            ValueError: the checkpoint lacks an object of ``save_dict``, a state does not fit (other network
                configuration), or it was written after the configured ``max_epochs``.
        """
        ckpt = load_checkpoint(engine, self.save_dict, ckpt, path, self.logger)
        if self._learning_rates is not None:
            set_learning_rates(self.optimizers, self._learning_rates)
            self._learning_rates = None
        self._random.restore(engine, ckpt, path)
        self.resumed_from = path
        self._resumed_iteration = self._last_save_iteration = engine.state.iteration
        self.logger.info(f"resumed from {path}: iteration {engine.state.iteration}, epoch {engine.state.epoch}")
