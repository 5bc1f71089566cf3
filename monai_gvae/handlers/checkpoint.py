"""Crash-safe checkpoints: atomic writes, complete training state, bit-exact resumption, no NaN-poisoned files.

MONAI's ``CheckpointSaver`` writes with ignite's ``DiskSaver(atomic=False)`` (a kill during ``torch.save`` leaves a
truncated file under the checkpoint's name), saves only the objects it is given (no random generator states, so a
resumed run draws other batches and latents than an uninterrupted one), and writes its "final" checkpoint when an
exception is raised (a diverged model under the final model's name). :class:`GVAECheckpointHandler` keeps its
constructor arguments and file names and fixes the three.
"""

from __future__ import annotations

import logging
import os
import random
import re
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_gvae._version import __version__
from monai_gvae.engines.gvae_trainer import NonFiniteLossError, unwrap
from monai_gvae.handlers.random_state import capture_rng_state, restore_rng_state
from monai_gvae.utils import atomic_path, check_bool, flag_word

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointInfo",
    "GVAECheckpointHandler",
    "NonFiniteStateError",
    "atomic_torch_save",
    "find_checkpoints",
    "latest_checkpoint",
    "non_finite_entries",
]

CHECKPOINT_FORMAT = 1
"""Version of the checkpoint layout written by :class:`GVAECheckpointHandler` (``checkpoint_meta.format``)."""

META_KEY = "checkpoint_meta"
RNG_KEY = "rng_state"
EPOCH_RNG_KEY = "rng_state_epoch_start"
CONFIG_KEY = "config"
_RESERVED = (META_KEY, RNG_KEY, EPOCH_RNG_KEY, CONFIG_KEY, "grad_scalers")


class NonFiniteStateError(NonFiniteLossError):
    """Weights or optimiser state hold NaN/Inf: the checkpoint that would hold them is not written."""


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint file found in a folder, with the position in training it was written at."""

    path: str
    iteration: int
    epoch: int
    kind: str  # "interval" or "final"


def atomic_torch_save(obj: Any, path: str | os.PathLike, overwrite: bool = True) -> str:
    """``torch.save`` to a temporary file beside ``path``, flushed to disk, then renamed onto ``path``.

    A process killed at any moment leaves either the previous file or the complete new one under ``path``
    (never a truncated one); at worst a hidden ``.NAME.*.tmp*`` file remains beside it.

    Args:
        obj: what to save.
        path: final file name.
        overwrite: replace an existing file (else ``FileExistsError``).

    Returns:
        ``path``.

    Example::

        atomic_torch_save({"gvae": model.state_dict()}, "runs/x/model.pt")
    """
    path = os.fspath(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    _fsync_dir(os.path.dirname(os.path.abspath(path)))
    return path


def _fsync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _tensors(obj: Any, prefix: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}.{i}")


def non_finite_entries(state: Mapping, limit: int = 5) -> list[str]:
    """Names of floating-point tensors holding NaN or Inf in a (nested) state dict, at most ``limit``.

    Example::

        non_finite_entries({"gvae": model.state_dict()})  # [] for a healthy model
    """
    bad: list[str] = []
    for name, tensor in _tensors(state, ""):
        if tensor.is_floating_point() or tensor.is_complex():
            if not bool(torch.isfinite(tensor).all()):
                bad.append(name)
                if len(bad) >= limit:
                    break
    return bad


def _checkpoint_name_pattern(file_prefix: str) -> re.Pattern:
    return re.compile(rf"^{re.escape(file_prefix)}_(epoch|iteration)=(\d+)\.pt$")


def _read(path: str, map_location: Any = "cpu", mmap: bool = False) -> dict:
    ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get(META_KEY), dict):
        raise ValueError("not a checkpoint written by GVAECheckpointHandler (no checkpoint_meta entry)")
    meta = ckpt[META_KEY]
    if meta.get("format") != CHECKPOINT_FORMAT or not meta.get("complete"):
        raise ValueError(f"unsupported or incomplete checkpoint (meta {dict(meta)})")
    return ckpt


def find_checkpoints(
    save_dir: str | os.PathLike, file_prefix: str = "checkpoint", final_filename: str | None = "model.pt"
) -> tuple[list[CheckpointInfo], dict[str, str]]:
    """Checkpoints of :class:`GVAECheckpointHandler` in ``save_dir``, newest first, and the files rejected.

    Interval checkpoints are ``{file_prefix}_epoch=N.pt`` / ``{file_prefix}_iteration=N.pt``; ``final_filename`` is
    the checkpoint written when training completed. Each file's header is read (memory-mapped, cheap); a file that
    cannot be read (truncated, foreign) is listed among the rejected with the reason. Hidden temporary files of an
    interrupted write are ignored.

    Args:
        save_dir: the folder.
        file_prefix: prefix of interval checkpoints.
        final_filename: the final checkpoint's name, or ``None``.

    Returns:
        ``(checkpoints, rejected)``: readable checkpoints sorted by iteration (newest first; at equal iteration a
        final checkpoint first), and ``{path: reason}`` for unreadable ones.

    Example::

        found, rejected = find_checkpoints("runs/x")
    """
    save_dir = os.fspath(save_dir)
    if not os.path.isdir(save_dir):
        return [], {}
    pattern = _checkpoint_name_pattern(file_prefix)
    found: list[CheckpointInfo] = []
    rejected: dict[str, str] = {}
    for name in sorted(os.listdir(save_dir)):
        is_final = final_filename is not None and name == final_filename
        if not (is_final or pattern.match(name)):
            continue
        path = os.path.join(save_dir, name)
        try:
            meta = _read(path, mmap=True)[META_KEY]
        except Exception as e:  # a truncated or foreign file: torch raises many types
            rejected[path] = f"{type(e).__name__}: {e}"
            continue
        found.append(CheckpointInfo(path, int(meta["iteration"]), int(meta["epoch"]), "final" if is_final else "interval"))
    found.sort(key=lambda c: (c.iteration, c.kind == "final"), reverse=True)
    return found, rejected


def latest_checkpoint(
    save_dir: str | os.PathLike,
    file_prefix: str = "checkpoint",
    final_filename: str | None = "model.pt",
    max_iteration: int | None = None,
    map_location: Any = "cpu",
) -> tuple[CheckpointInfo, dict] | None:
    """The newest complete checkpoint whose tensors are all finite, loaded.

    Args:
        save_dir, file_prefix, final_filename: as in :func:`find_checkpoints`.
        max_iteration: ignore checkpoints written after this iteration.
        map_location: where to load tensors.

    Returns:
        ``(info, checkpoint)``, or ``None`` when there is no usable checkpoint. Unusable files are logged and
        left in place.

    Example::

        info, ckpt = latest_checkpoint("runs/x")
    """
    found, rejected = find_checkpoints(save_dir, file_prefix, final_filename)
    log = logging.getLogger(__name__)
    for path, reason in rejected.items():
        log.warning(f"ignoring unreadable checkpoint {path}: {reason}")
    for info in found:
        if max_iteration is not None and info.iteration > max_iteration:
            continue
        try:
            ckpt = _read(info.path, map_location=map_location)
        except Exception as e:
            log.warning(f"ignoring unreadable checkpoint {info.path}: {type(e).__name__}: {e}")
            continue
        bad = non_finite_entries({k: v for k, v in ckpt.items() if k not in _RESERVED})
        if bad:
            log.warning(f"ignoring checkpoint {info.path}: non-finite values in {', '.join(bad)}")
            continue
        return info, ckpt
    return None


class GVAECheckpointHandler:
    """Crash-safe checkpoints and resumption for ``GVAETrainer`` (or any ignite trainer), a drop-in for MONAI's
    ``CheckpointSaver`` in training bundles.

    What it adds to ``CheckpointSaver``:

    * **Atomic writes**: each file is written under a hidden temporary name, flushed to disk and renamed; a
      ``SIGKILL`` at any moment never leaves a truncated file under a checkpoint's name. Old checkpoints are
      deleted (beyond ``n_saved``) only after the new one is in place.
    * **Complete state**: besides ``save_dict`` (networks, optimisers; DDP wrappers unwrapped) each checkpoint
      holds the trainer's state (``"trainer"``, added when missing), the ``GVAETrainer``'s EMA generator and
      gradient scalers, the states of every random generator (Python, NumPy, torch CPU/CUDA, the trainer's
      ``latent_generator``, the data loader's and its sampler's generators, the dataset transforms'
      ``Randomizable.R``), the configuration (``config`` plus the command line and package versions) and a
      ``checkpoint_meta`` entry (format, iteration, epoch, ``complete``).
    * **Resumption** (``resume=True``): at ``STARTED`` the newest complete, finite checkpoint in ``save_dir`` is
      loaded (unreadable or non-finite files are skipped with a warning) and training continues exactly where
      it was: with deterministic settings (CPU, ``num_workers=0`` or seeded workers) a run killed and resumed
      ends with the same weights as an uninterrupted one. Mid-epoch checkpoints (``epoch_level=False``) replay
      the epoch's data order up to the checkpoint (loading, not training on, the batches already seen).
      ``resume`` may also be a checkpoint path.
    * **No poisoned or misleading files**: a checkpoint whose weights or optimiser state hold NaN/Inf is not
      written (:class:`NonFiniteStateError`, the last good checkpoint stays on disk), and nothing is written when
      training stops with an exception (the final file ``final_filename`` means "training completed").
    * **No overwriting**: with ``resume=False`` a ``save_dir`` that already holds checkpoints is refused
      (``FileExistsError``) instead of mixing two runs.

    Attach it last (after handlers such as ``ValidationHandler``), so that a checkpoint at the end of an epoch
    is written after that epoch's handlers have run.

    Args:
        save_dir: folder of the checkpoints.
        save_dict: objects to save, ``{name: obj}`` with ``state_dict``/``load_state_dict`` (as for
            ``CheckpointSaver``; an ``Engine`` is saved through ``engine.state_dict()``).
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
        ValueError: ``save_interval < 0`` or ``n_saved < 1``.
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
        self._pending: tuple[str, dict] | None = None
        self._learning_rates: list[float] | None = None
        self._epoch_start_rng: dict | None = None
        self._skip_epoch_capture = False
        self._save_at_epoch_end = False
        self._last_save_iteration = -1
        self._resumed_iteration = -1

    # ------------------------------------------------------------------ attaching
    def attach(self, engine: Engine) -> None:
        """Register the handler: restore (``STARTED``), snapshot (``EPOCH_STARTED``), save (interval, ``COMPLETED``).

        Raises:
            FileExistsError: ``resume=False``, ``overwrite=False`` and ``save_dir`` already holds checkpoints.
            FileNotFoundError: ``resume`` names a file that does not exist.
        """
        if self._name is None:
            self.logger = engine.logger
        self.engine = engine
        if "trainer" not in self.save_dict and not any(v is engine for v in self.save_dict.values()):
            self.save_dict["trainer"] = engine
        os.makedirs(self.save_dir, exist_ok=True)
        # under DDP only rank 0 writes, so only rank 0 cleans up: the other ranks must not race its deletions
        rank0 = _is_rank0()
        if rank0:
            self._remove_stale_temporaries()
        if self.resume is False or self.resume is None:
            if rank0 or not self.overwrite:  # every rank refuses an earlier run; with overwrite, rank 0 deletes it
                self._refuse_or_delete_earlier_run()
        elif not isinstance(self.resume, bool) and not os.path.isfile(os.fspath(self.resume)):
            raise FileNotFoundError(f"checkpoint to resume from not found: {os.fspath(self.resume)}")
        elif self.resume is not True:
            self._pending = (os.fspath(self.resume), {})
        else:
            self._pending = ("latest", {})
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        if self.save_interval > 0:
            if self.epoch_level:
                engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self._interval)
            else:
                engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.save_interval), self._interval)
                engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_end_deferred)
        if self.save_final:
            engine.add_event_handler(Events.COMPLETED, self._completed)

    def _refuse_or_delete_earlier_run(self) -> None:
        found, rejected = find_checkpoints(self.save_dir, self.file_prefix, self.final_filename)
        existing = sorted([c.path for c in found] + list(rejected))
        if existing and not self.overwrite:
            raise FileExistsError(
                f"{self.save_dir} already holds checkpoints of an earlier run ({', '.join(existing)}); "
                "resume it (resume=True, bundle: --resume true), choose another folder (--output_dir) or "
                "replace them (overwrite=True)."
            )
        for path in existing:  # overwrite: the earlier run's checkpoints must not mix with this run's
            self.logger.warning(f"overwrite: deleting {path}, a checkpoint of an earlier run")
            os.remove(path)

    def _remove_stale_temporaries(self) -> None:
        names = [self.file_prefix + "_"] + ([self.final_filename] if self.final_filename else [])
        for entry in os.listdir(self.save_dir):
            if entry.startswith(".") and ".tmp" in entry and any(entry[1:].startswith(n) for n in names):
                path = os.path.join(self.save_dir, entry)
                self.logger.warning(f"removing {path}, left by a write that was interrupted")
                try:
                    os.remove(path)
                except OSError:
                    pass

    # ------------------------------------------------------------------ saving
    def _objects(self) -> dict[str, Any]:
        """The state dicts of ``save_dict`` plus the GVAETrainer's EMA generator and gradient scalers."""
        engine = self.engine
        out: dict[str, Any] = {}
        for key, obj in self.save_dict.items():
            if key in _RESERVED:
                raise ValueError(f"save_dict key {key!r} is reserved by GVAECheckpointHandler.")
            obj = unwrap(obj) if isinstance(obj, torch.nn.Module) else obj
            out[key] = obj.state_dict()
        ema = getattr(engine, "generator_ema", None)
        if ema is not None and "generator_ema" not in out:
            out["generator_ema"] = ema.state_dict()
        scalers = {n: s.state_dict() for n in ("scaler_g", "scaler_d") if (s := getattr(engine, n, None)) is not None}
        if any(scalers.values()):
            out["grad_scalers"] = scalers
        return out

    def _full_config(self) -> dict[str, Any]:
        engine = self.engine
        trainer: dict[str, Any] = {}
        for attr in ("objective", "n_critic", "seed", "amp", "check_finite"):
            value = getattr(engine, attr, None)
            if isinstance(value, (bool, int, float, str)):
                trainer[attr] = value
        loader = getattr(engine, "data_loader", None)
        if isinstance(getattr(loader, "batch_size", None), int):
            trainer["batch_size"] = loader.batch_size
        for attr in ("loss_function", "critic_loss_function"):
            fn = getattr(engine, attr, None)
            if fn is not None:
                trainer[attr] = {k: v for k, v in vars(fn).items() if not k.startswith("_") and isinstance(v, (bool, int, float, str))}
        network = unwrap(getattr(engine, "network", None))
        return {
            "user": self.config,
            "trainer": trainer,
            "network": dict(getattr(network, "config", {}) or {}),
            "argv": [str(a) for a in sys.argv],
            "versions": {"monai_gvae": __version__, "torch": str(torch.__version__)},
        }

    def checkpoint(self, kind: str = "interval") -> dict[str, Any]:
        """The dictionary written to disk now (state dicts, random states, config, meta).

        Raises:
            NonFiniteStateError: ``check_finite`` and a weight or optimiser tensor holds NaN/Inf.
        """
        engine = self.engine
        if engine is None:
            raise RuntimeError("attach the handler to an engine first.")
        objects = self._objects()
        if self.check_finite:
            bad = non_finite_entries(objects)
            if bad:
                last = self.saved[-1] if self.saved else self.resumed_from
                raise NonFiniteStateError(
                    f"refusing to write a {kind} checkpoint at iteration {engine.state.iteration} "
                    f"(epoch {engine.state.epoch}): non-finite values in {', '.join(bad)}; "
                    f"the last good checkpoint is {last or 'none (none was written)'}."
                )
        it, length = engine.state.iteration, engine.state.epoch_length
        mid_epoch = bool(length) and it % length != 0
        ckpt = dict(objects)
        ckpt[RNG_KEY] = capture_rng_state(engine)
        if mid_epoch:
            ckpt[EPOCH_RNG_KEY] = self._epoch_start_rng
        ckpt[CONFIG_KEY] = self._full_config()
        ckpt[META_KEY] = {
            "format": CHECKPOINT_FORMAT,
            "complete": True,
            "kind": kind,
            "iteration": int(it),
            "epoch": int(it // length if length else engine.state.epoch),
            "epoch_length": int(length) if length else None,
            "max_epochs": engine.state.max_epochs,
            "exact_resume": (not mid_epoch) or self._epoch_start_rng is not None,
            "time": time.time(),
        }
        return ckpt

    def _save(self, kind: str) -> str:
        engine = self.engine
        if kind == "final":
            name = self.final_filename
        elif self.epoch_level:
            name = f"{self.file_prefix}_epoch={engine.state.epoch}.pt"
        else:
            name = f"{self.file_prefix}_iteration={engine.state.iteration}.pt"
        if not _is_rank0():
            return os.path.join(self.save_dir, name)
        path = atomic_torch_save(self.checkpoint(kind), os.path.join(self.save_dir, name), overwrite=True)
        self.saved.append(path)
        self._last_save_iteration = engine.state.iteration
        self.logger.info(f"saved {kind} checkpoint {path} (iteration {engine.state.iteration})")
        if kind == "interval":
            self._prune()
        return path

    def _prune(self) -> None:
        """Delete the oldest interval checkpoints beyond ``n_saved`` (never newer ones from an abandoned run)."""
        if self.n_saved is None:
            return
        pattern = _checkpoint_name_pattern(self.file_prefix)
        mine = []
        for name in os.listdir(self.save_dir):
            m = pattern.match(name)
            if m is None:
                continue
            number = int(m.group(2))
            iteration = number * (self.engine.state.epoch_length or 1) if m.group(1) == "epoch" else number
            if iteration <= self.engine.state.iteration:
                mine.append((iteration, name))
        for _, name in sorted(mine)[: max(0, len(mine) - self.n_saved)]:
            os.remove(os.path.join(self.save_dir, name))
            self.logger.info(f"deleted old checkpoint {os.path.join(self.save_dir, name)}")

    def _interval(self, engine: Engine) -> None:
        if not self.epoch_level and engine.state.epoch_length and engine.state.iteration % engine.state.epoch_length == 0:
            # the end of an epoch: save after the epoch's handlers (validation draws random numbers too)
            self._save_at_epoch_end = True
            return
        if engine.state.iteration != self._last_save_iteration:
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
        self._pending = (os.fspath(path), {})
        self._learning_rates = list(learning_rates) if learning_rates is not None else None

    def _started(self, engine: Engine) -> None:
        if self._pending is None:
            return
        target, _ = self._pending
        self._pending = None
        if target == "latest":
            found = latest_checkpoint(self.save_dir, self.file_prefix, self.final_filename, map_location=self._location())
            if found is None:
                listed, rejected = find_checkpoints(self.save_dir, self.file_prefix, self.final_filename)
                if listed or rejected:
                    self.logger.warning(
                        f"none of the {len(listed) + len(rejected)} checkpoints in {self.save_dir} is usable (see the "
                        "warnings above; they are left in place): training from the start"
                    )
                else:
                    self.logger.info(f"no checkpoint to resume in {self.save_dir}: training from the start")
                return
            info, ckpt = found
            path = info.path
        else:
            path = target
            try:
                ckpt = _read(path, map_location=self._location())
            except Exception as e:
                raise ValueError(f"cannot resume from {path}: {type(e).__name__}: {e}") from e
        self.restore(engine, ckpt, path)

    def _location(self) -> Any:
        if self.map_location is not None:
            return self.map_location
        device = getattr(getattr(self.engine, "state", None), "device", None)
        return device if device is not None else "cpu"

    def restore(self, engine: Engine, ckpt: dict, path: str = "<memory>") -> None:
        """Load a checkpoint into the networks, optimisers, trainer and random generators (called at ``STARTED``).

        Raises:
            ValueError: the checkpoint lacks an object of ``save_dict``, a state does not fit (other network
                configuration), or it was written after the configured ``max_epochs``.
        """
        prior_max_epochs = engine.state.max_epochs
        for key, obj in self.save_dict.items():
            if key not in ckpt:
                raise ValueError(f"checkpoint {path} has no entry {key!r} (entries: {sorted(ckpt)}).")
            target = unwrap(obj) if isinstance(obj, torch.nn.Module) else obj
            try:
                target.load_state_dict(ckpt[key])
            except Exception as e:
                raise ValueError(f"cannot load {key!r} from checkpoint {path}: {e}") from e
        ema = getattr(engine, "generator_ema", None)
        if ema is not None and "generator_ema" in ckpt and "generator_ema" not in self.save_dict:
            ema.load_state_dict(ckpt["generator_ema"])
        for name, state in ckpt.get("grad_scalers", {}).items():
            if getattr(engine, name, None) is not None:
                getattr(engine, name).load_state_dict(state)
        if prior_max_epochs is not None and engine.state.epoch > prior_max_epochs:
            raise ValueError(
                f"checkpoint {path} was written at epoch {engine.state.epoch}, after max_epochs={prior_max_epochs}: "
                "raise max_epochs to train further."
            )
        engine.state.max_epochs = prior_max_epochs
        meta = ckpt[META_KEY]
        if meta.get("epoch_length") and engine.state.epoch_length and meta["epoch_length"] != engine.state.epoch_length:
            self.logger.warning(
                f"checkpoint {path} was written with {meta['epoch_length']} iterations per epoch, this run has "
                f"{engine.state.epoch_length} (other data or batch size): the run continues but is not an exact resumption."
            )
        if self._learning_rates is not None:
            groups = [g for opt in _optimizers(self.save_dict) for g in opt.param_groups]
            if len(groups) != len(self._learning_rates):
                raise ValueError(f"{len(self._learning_rates)} learning rates given for {len(groups)} parameter groups.")
            for group, lr in zip(groups, self._learning_rates):
                group["lr"] = lr
            self._learning_rates = None
        self._resume_random_state(engine, ckpt, path)
        self.resumed_from = path
        self._resumed_iteration = engine.state.iteration
        self._last_save_iteration = engine.state.iteration
        self.logger.info(f"resumed from {path}: iteration {engine.state.iteration}, epoch {engine.state.epoch}")

    def _resume_random_state(self, engine: Engine, ckpt: dict, path: str) -> None:
        if _world_size() > 1:
            # The checkpoint holds rank 0's generators; restoring them on every rank would make all ranks draw the
            # same latents. Each rank gets fresh streams, derived from the seed, its rank and the iteration.
            rank = torch.distributed.get_rank()
            base = int(getattr(engine, "seed", None) or 0) + 7919 * rank + 1_000_003 * int(engine.state.iteration)
            torch.manual_seed(base)
            random.seed(base)
            np.random.seed(base % 2**32)
            gen = getattr(engine, "latent_generator", None)
            if isinstance(gen, torch.Generator):
                gen.manual_seed(base)
            self.logger.warning(
                f"resuming a distributed run from {path}: weights, optimisers and trainer state restored; random "
                "streams re-seeded per rank (not a bit-exact continuation)."
            )
            return
        rng = ckpt.get(RNG_KEY)
        if rng is None:
            self.logger.warning(f"checkpoint {path} holds no random states: the resumed run is not exact.")
            return
        length = engine.state.epoch_length
        skip = engine.state.iteration % length if length else 0
        epoch_rng = ckpt.get(EPOCH_RNG_KEY)
        if skip and epoch_rng is not None and hasattr(engine.state.dataloader, "__len__"):
            # Mid-epoch: replay the epoch's data order from its start up to the checkpoint, then continue with the
            # random states of the checkpoint.
            self._warn(restore_rng_state(epoch_rng, engine), path)
            self._epoch_start_rng = epoch_rng
            self._skip_epoch_capture = True
            engine.state.dataloader = _FastForward(
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

    def _epoch_started(self, engine: Engine) -> None:
        if self._skip_epoch_capture:
            self._skip_epoch_capture = False
            return
        # the random states from which this epoch's data order is drawn (for mid-epoch resumption)
        self._epoch_start_rng = capture_rng_state(engine) if not self.epoch_level else None


class _FastForward:
    """Iterable standing in for the data loader for one epoch: skips ``skip`` batches, then calls ``on_skipped``."""

    def __init__(self, engine: Engine, loader: Any, skip: int, on_skipped: Any) -> None:
        self.engine, self.loader, self.skip, self.on_skipped = engine, loader, skip, on_skipped

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        self.engine.state.dataloader = self.loader  # later epochs iterate the loader itself
        iterator = iter(self.loader)
        for _ in range(self.skip):
            next(iterator)
        self.on_skipped()
        return iterator


def _optimizers(save_dict: Mapping[str, Any]) -> list[torch.optim.Optimizer]:
    return [v for v in save_dict.values() if isinstance(v, torch.optim.Optimizer)]


def _world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def _is_rank0() -> bool:
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or torch.distributed.get_rank() == 0
