"""Exact resumption: the random states a checkpoint holds, and putting them back when a run resumes, including the
replay of an epoch's data order up to a mid-epoch checkpoint and each rank's own streams under DDP."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine

from monai_gvae.engines.gvae_trainer import unwrap

from .checkpoint_io import (
    EPOCH_RNG_KEY,
    META_KEY,
    RANK_RNG_KEY,
    RNG_KEY,
    find_checkpoints,
    latest_checkpoint,
    read_checkpoint,
    upgrade_checkpoint,
    world_size,
)
from .random_state import capture_rng_state, engine_generators, restore_rng_state

__all__ = ["RandomStateTracker", "checkpoint_to_resume", "load_checkpoint", "reseed_for_rank", "set_learning_rates"]


def checkpoint_to_resume(
    target: str,
    save_dir: str,
    file_prefix: str,
    final_filename: str | None,
    map_location: Any,
    logger: logging.Logger,
) -> tuple[dict, str] | None:
    """The checkpoint a run resumes from, loaded, and its path.

    Args:
        target: a checkpoint path, or ``"latest"``: the newest complete, finite checkpoint in ``save_dir``
            (:func:`~.checkpoint_io.latest_checkpoint`; ``None`` when there is none, logged).
        save_dir, file_prefix, final_filename: where and under which names the run's checkpoints are.
        map_location: where to load tensors.
        logger: where "training from the start" is logged.

    Returns:
        ``(checkpoint, path)``, or ``None`` to train from the start.

    Raises:
        ValueError: ``target`` is a path that cannot be read as a checkpoint.

    Example::

        found = checkpoint_to_resume("latest", "runs/x", "checkpoint", "model.pt", "cpu", logger)
    """
    if target != "latest":
        try:
            return read_checkpoint(target, map_location=map_location), target
        except Exception as e:
            raise ValueError(f"cannot resume from {target}: {type(e).__name__}: {e}") from e
    found = latest_checkpoint(save_dir, file_prefix, final_filename, map_location=map_location)
    if found is not None:
        return found[1], found[0].path
    listed, rejected = find_checkpoints(save_dir, file_prefix, final_filename)
    if listed or rejected:
        logger.warning(
            f"none of the {len(listed) + len(rejected)} checkpoints in {save_dir} is usable (see the warnings above; "
            "they are left in place): training from the start"
        )
    else:
        logger.info(f"no checkpoint to resume in {save_dir}: training from the start")
    return None


def load_checkpoint(
    engine: Engine, save_dict: Mapping[str, Any], ckpt: dict, path: str, logger: logging.Logger
) -> dict:
    """Load ``ckpt`` into the objects of ``save_dict`` (networks unwrapped from DDP; the engine through its
    ``load_state_dict``), keeping the engine's configured ``max_epochs`` so that a run can be extended.

    Returns:
        the checkpoint in the current layout (:func:`~.checkpoint_io.upgrade_checkpoint`).

    Raises:
        ValueError: the checkpoint lacks an object of ``save_dict``, a state does not fit (other network
            configuration), or it was written after the configured ``max_epochs``.

    Example::

        load_checkpoint(trainer, {"gvae": gvae, "trainer": trainer}, read_checkpoint("model.pt"), "model.pt", logger)
    """
    prior_max_epochs = engine.state.max_epochs
    ckpt = upgrade_checkpoint(ckpt, next((k for k, v in save_dict.items() if v is engine), "trainer"))
    for key, obj in save_dict.items():
        if key not in ckpt:
            raise ValueError(f"checkpoint {path} has no entry {key!r} (entries: {sorted(ckpt)}).")
        try:
            (unwrap(obj) if isinstance(obj, torch.nn.Module) else obj).load_state_dict(ckpt[key])
        except Exception as e:
            raise ValueError(f"cannot load {key!r} from checkpoint {path}: {e}") from e
    if prior_max_epochs is not None and engine.state.epoch > prior_max_epochs:
        raise ValueError(
            f"checkpoint {path} was written at epoch {engine.state.epoch}, after max_epochs={prior_max_epochs}: "
            "raise max_epochs to train further."
        )
    engine.state.max_epochs = prior_max_epochs
    saved_length = ckpt[META_KEY].get("epoch_length")
    if saved_length and engine.state.epoch_length and saved_length != engine.state.epoch_length:
        logger.warning(
            f"checkpoint {path} was written with {saved_length} iterations per epoch, this run has "
            f"{engine.state.epoch_length} (other data or batch size): the run continues but is not an exact resumption."
        )
    return ckpt


def set_learning_rates(optimizers: Sequence[torch.optim.Optimizer], learning_rates: Sequence[float]) -> None:
    """Set the learning rates of the optimisers' parameter groups, in order (a rollback after divergence).

    Raises:
        ValueError: not one rate per parameter group.

    Example::

        set_learning_rates([opt_g, opt_d], [5e-5, 5e-5])
    """
    groups = [g for opt in optimizers for g in opt.param_groups]
    if len(groups) != len(learning_rates):
        raise ValueError(f"{len(learning_rates)} learning rates given for {len(groups)} parameter groups.")
    for group, lr in zip(groups, learning_rates):
        group["lr"] = lr


class RandomStateTracker:
    """The random states a checkpoint needs for an exact resumption, and their restoration.

    A checkpoint at the end of an epoch needs the random states of that moment. One in the middle of an epoch
    (``mid_epoch=True``) also needs those of the epoch's start, from which the epoch's data order was drawn: on
    resuming, that order is replayed, the batches already trained on are loaded and skipped, then the checkpoint's
    own states take over. In a distributed run every rank's states are gathered into the checkpoint
    (:meth:`gathered_entries`), and each rank resumes with its own.

    Args:
        mid_epoch: checkpoints may fall inside an epoch (``GVAECheckpointHandler(epoch_level=False)``).
        logger: where warnings about an inexact resumption go.

    Example::

        tracker = RandomStateTracker(mid_epoch=True, logger=trainer.logger)
        trainer.add_event_handler(Events.EPOCH_STARTED, tracker.epoch_started)
        ckpt.update(tracker.entries(trainer)[0])    # when saving
        tracker.restore(trainer, ckpt, "ckpt.pt")   # when resuming (at STARTED)
    """

    def __init__(self, mid_epoch: bool, logger: logging.Logger) -> None:
        self.mid_epoch = mid_epoch
        self.logger = logger
        self.epoch_start: dict | None = None
        self._restored_epoch_start = False

    def epoch_started(self, engine: Engine) -> None:
        """Snapshot the states this epoch's data order is drawn from (``EPOCH_STARTED``); after a mid-epoch
        resumption the snapshot restored from the checkpoint is kept."""
        if self._restored_epoch_start:
            self._restored_epoch_start = False
            return
        self.epoch_start = capture_rng_state(engine) if self.mid_epoch else None

    def entries(self, engine: Engine) -> tuple[dict[str, Any], bool]:
        """The checkpoint entries for the engine's current position, and whether they resume exactly."""
        iteration, length = engine.state.iteration, engine.state.epoch_length
        inside_epoch = bool(length) and iteration % length != 0
        entries: dict[str, Any] = {RNG_KEY: capture_rng_state(engine)}
        if inside_epoch:
            entries[EPOCH_RNG_KEY] = self.epoch_start
        return entries, (not inside_epoch) or self.epoch_start is not None

    def gathered_entries(self, engine: Engine) -> tuple[dict[str, Any], bool]:
        """:meth:`entries` for a checkpoint; in a distributed run those of every rank (a collective: every rank must
        call it, as the checkpoint handler does whenever it saves), rank 0's at the top level as in a single-process
        checkpoint and all of them, in rank order, under :data:`~.checkpoint_io.RANK_RNG_KEY`."""
        own, exact = self.entries(engine)
        ranks = world_size()
        if ranks == 1:
            return own, exact
        gathered: list[Any] = [None] * ranks
        torch.distributed.all_gather_object(gathered, (own, exact))
        entries = dict(gathered[0][0])
        entries[RANK_RNG_KEY] = [rank_entries for rank_entries, _ in gathered]
        return entries, all(rank_exact for _, rank_exact in gathered)

    def restore(self, engine: Engine, ckpt: dict, path: str) -> None:
        """Put back the random states of ``ckpt`` (after its ``save_dict`` objects and the engine's iteration).

        Distributed: each rank its own states, when the checkpoint holds those of as many ranks; otherwise (written
        by another number of processes, or by an older version) fresh streams (:func:`reseed_for_rank`), with a
        warning. Mid-epoch: the engine's data loader is replaced, for the rest of this epoch, by one that replays
        the epoch's order.
        """
        if world_size() > 1:
            per_rank = ckpt.get(RANK_RNG_KEY)
            if per_rank is None or len(per_rank) != world_size():
                reseed_for_rank(engine, torch.distributed.get_rank())
                written_by = "without per-rank random states" if per_rank is None else f"by {len(per_rank)} processes"
                self.logger.warning(
                    f"resuming a distributed run of {world_size()} processes from {path}, written {written_by}: "
                    "weights, optimisers and trainer state restored; random streams re-seeded per rank (not a "
                    "bit-exact continuation)."
                )
                return
            own = per_rank[torch.distributed.get_rank()]
            ckpt = {**{k: v for k, v in ckpt.items() if k not in (RNG_KEY, EPOCH_RNG_KEY)}, **own}
        rng = ckpt.get(RNG_KEY)
        if rng is None:
            self.logger.warning(f"checkpoint {path} holds no random states: the resumed run is not exact.")
            return
        length = engine.state.epoch_length
        skip = engine.state.iteration % length if length else 0
        epoch_rng = ckpt.get(EPOCH_RNG_KEY)
        if skip and epoch_rng is not None and hasattr(engine.state.dataloader, "__len__"):
            # replay the epoch's data order from its start up to the checkpoint, then continue from its states
            self._warn(restore_rng_state(epoch_rng, engine), path)
            self.epoch_start = epoch_rng
            self._restored_epoch_start = True
            engine.state.dataloader = FastForward(
                engine, engine.state.dataloader, skip, lambda: self._warn(restore_rng_state(rng, engine), path)
            )
            return
        if skip:
            self.logger.warning(
                f"checkpoint {path} was written mid-epoch without the epoch's data order: the rest of epoch "
                f"{engine.state.epoch + 1} draws a new order (the resumed run is not exact)."
            )
        self._warn(restore_rng_state(rng, engine), path)

    def _warn(self, problems: list[str], path: str) -> None:
        for p in problems:
            self.logger.warning(f"resuming from {path}: {p}; the resumed run is not exact.")


def reseed_for_rank(engine: Engine, rank: int) -> int:
    """Seed Python, NumPy, torch and the engine's own generators (:func:`engine_generators`) from the engine's
    ``seed`` (0 without one), ``rank`` and the iteration.

    A checkpoint holds rank 0's generators; restoring them on every rank would make all ranks draw the same latents.

    Returns:
        the seed used.

    Example::

        reseed_for_rank(trainer, torch.distributed.get_rank())
    """
    base = int(getattr(engine, "seed", None) or 0) + 7919 * rank + 1_000_003 * int(engine.state.iteration)
    torch.manual_seed(base)
    random.seed(base)
    np.random.seed(base % 2**32)
    for gen in engine_generators(engine).values():
        gen.manual_seed(base)
    return base


class FastForward:
    """Iterable standing in for the data loader for one epoch: skips ``skip`` batches, then calls ``on_skipped``
    (later epochs iterate the loader itself).

    Example::

        engine.state.dataloader = FastForward(engine, engine.state.dataloader, 3, lambda: None)
    """

    def __init__(self, engine: Engine, loader: Any, skip: int, on_skipped: Callable[[], None]) -> None:
        self.engine, self.loader, self.skip, self.on_skipped = engine, loader, skip, on_skipped

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        self.engine.state.dataloader = self.loader
        iterator = iter(self.loader)
        for _ in range(self.skip):
            next(iterator)
        self.on_skipped()
        return iterator
