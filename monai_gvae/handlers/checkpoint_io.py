"""Checkpoint files: atomic writing, reading and validating, finding the newest usable one, and the files of an
earlier run in a folder (refused or, told to, deleted). No Ignite here: :class:`~.checkpoint.GVAECheckpointHandler`
and ``monai_gvae.bundle.train_bundle`` build on these functions.

A checkpoint is a dict of state dicts (the handler's ``save_dict`` entries, the trainer's among them) plus the
reserved entries :data:`META_KEY` (``checkpoint_meta``: format, kind, iteration, epoch, ``complete``),
:data:`RNG_KEY`, :data:`EPOCH_RNG_KEY` (random states; rank 0's in a distributed run), :data:`RANK_RNG_KEY` (every
rank's, in a distributed run) and :data:`CONFIG_KEY`.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from monai_gvae._version import __version__
from monai_gvae.utils import atomic_path

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointInfo",
    "atomic_torch_save",
    "check_earlier_run",
    "earlier_run_files",
    "find_checkpoints",
    "latest_checkpoint",
    "non_finite_entries",
    "read_checkpoint",
    "upgrade_checkpoint",
]

CHECKPOINT_FORMAT = 2
"""Version of the checkpoint layout (``checkpoint_meta.format``). Format 2: the trainer's EMA generator, gradient
scalers and random generators are inside the trainer's entry (``GVAETrainer.state_dict()``); format 1 kept the
first two beside the ``save_dict`` entries. Format 1 files are read (:func:`upgrade_checkpoint`)."""
READABLE_FORMATS = (1, CHECKPOINT_FORMAT)

META_KEY = "checkpoint_meta"
RNG_KEY = "rng_state"
EPOCH_RNG_KEY = "rng_state_epoch_start"
RANK_RNG_KEY = "rng_state_per_rank"
CONFIG_KEY = "config"
RESERVED_KEYS = (META_KEY, RNG_KEY, EPOCH_RNG_KEY, RANK_RNG_KEY, CONFIG_KEY)
"""Entries of a checkpoint that are not ``save_dict`` objects."""

# files a training run writes into its folder besides the interval checkpoints of its file prefix: the best-metric
# checkpoints of MONAI's CheckpointSaver ({prefix}_key_metric=SCORE.pt), which bundles used before this handler
_KEY_METRIC = re.compile(r"^(?:.+_)?key_metric=.*\.pt$")


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


def run_record(engine: Any, user_config: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`CONFIG_KEY` entry: ``{"user": user_config, "trainer": ..., "network": ...}`` (the engine's
    ``describe()``, e.g. ``GVAETrainer.describe``; empty for an engine without one), the command line
    (``"argv"``) and package versions."""
    describe = getattr(engine, "describe", None)
    return {
        "user": dict(user_config),
        "trainer": {},
        "network": {},
        **(describe() if callable(describe) else {}),
        "argv": [str(a) for a in sys.argv],
        "versions": {"monai_gvae": __version__, "torch": str(torch.__version__)},
    }


def checkpoint_meta(kind: str, state: Any, exact_resume: bool) -> dict[str, Any]:
    """The :data:`META_KEY` entry for a checkpoint written at the engine ``state``'s position (``kind``:
    ``"interval"`` or ``"final"``)."""
    iteration, length = state.iteration, state.epoch_length
    return {
        "format": CHECKPOINT_FORMAT,
        "complete": True,
        "kind": kind,
        "iteration": int(iteration),
        "epoch": int(iteration // length if length else state.epoch),
        "epoch_length": int(length) if length else None,
        "max_epochs": state.max_epochs,
        "exact_resume": exact_resume,
        "time": time.time(),
    }


def checkpoint_name_pattern(file_prefix: str) -> re.Pattern:
    """The names of interval checkpoints: ``{file_prefix}_epoch=N.pt`` or ``{file_prefix}_iteration=N.pt``."""
    return re.compile(rf"^{re.escape(file_prefix)}_(epoch|iteration)=(\d+)\.pt$")


def interval_checkpoint_name(file_prefix: str, epoch_level: bool, epoch: int, iteration: int) -> str:
    """The name of the interval checkpoint written at ``epoch``/``iteration``."""
    return f"{file_prefix}_epoch={epoch}.pt" if epoch_level else f"{file_prefix}_iteration={iteration}.pt"


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", mmap: bool = False) -> dict:
    """Load a checkpoint written by ``GVAECheckpointHandler`` and check that it is one, complete, of a readable
    format (``torch.load(weights_only=True)``: no code is unpickled).

    Args:
        path: the file.
        map_location: where to load tensors.
        mmap: memory-map the file (cheap when only ``checkpoint_meta`` is read).

    Returns:
        the checkpoint, as written (see :func:`upgrade_checkpoint` for format 1).

    Raises:
        ValueError: not a checkpoint of the handler, an unknown format or an incomplete write.
        Exception: whatever ``torch.load`` raises for a truncated or foreign file.

    Example::

        meta = read_checkpoint("runs/x/model.pt", mmap=True)["checkpoint_meta"]
    """
    ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get(META_KEY), dict):
        raise ValueError("not a checkpoint written by GVAECheckpointHandler (no checkpoint_meta entry)")
    meta = ckpt[META_KEY]
    if meta.get("format") not in READABLE_FORMATS or not meta.get("complete"):
        raise ValueError(f"unsupported or incomplete checkpoint (meta {dict(meta)})")
    return ckpt


def upgrade_checkpoint(ckpt: dict, engine_key: str = "trainer") -> dict:
    """The checkpoint in the current layout (:data:`CHECKPOINT_FORMAT`); a current one is returned as is.

    Format 1 kept the ``GVAETrainer``'s EMA generator (``generator_ema``) and gradient scalers (``grad_scalers``)
    beside the ``save_dict`` entries, and its random generators only among the random states; they move into the
    engine's entry, where ``GVAETrainer.load_state_dict`` finds them.

    Args:
        ckpt: a checkpoint from :func:`read_checkpoint`.
        engine_key: the entry holding the trainer's state.

    Returns:
        a shallow copy in the current layout.

    Example::

        trainer.load_state_dict(upgrade_checkpoint(read_checkpoint(path))["trainer"])
    """
    if ckpt[META_KEY].get("format") == CHECKPOINT_FORMAT:
        return ckpt
    ckpt = dict(ckpt)
    engine_state = dict(ckpt.get(engine_key) or {})
    for key in ("generator_ema", "grad_scalers"):
        if key in ckpt:
            engine_state.setdefault(key, ckpt.pop(key))
    engine_generators = (ckpt.get(RNG_KEY) or {}).get("engine")
    if engine_generators:
        engine_state.setdefault("random_generators", dict(engine_generators))
    if engine_key in ckpt:
        ckpt[engine_key] = engine_state
    ckpt[META_KEY] = {**ckpt[META_KEY], "format": CHECKPOINT_FORMAT, "upgraded_from": 1}
    return ckpt


def find_checkpoints(
    save_dir: str | os.PathLike, file_prefix: str = "checkpoint", final_filename: str | None = "model.pt"
) -> tuple[list[CheckpointInfo], dict[str, str]]:
    """Checkpoints of ``GVAECheckpointHandler`` in ``save_dir``, newest first, and the files rejected.

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
    pattern = checkpoint_name_pattern(file_prefix)
    found: list[CheckpointInfo] = []
    rejected: dict[str, str] = {}
    for name in sorted(os.listdir(save_dir)):
        is_final = final_filename is not None and name == final_filename
        if not (is_final or pattern.match(name)):
            continue
        path = os.path.join(save_dir, name)
        try:
            meta = read_checkpoint(path, mmap=True)[META_KEY]
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
            ckpt = read_checkpoint(info.path, map_location=map_location)
        except Exception as e:
            log.warning(f"ignoring unreadable checkpoint {info.path}: {type(e).__name__}: {e}")
            continue
        bad = non_finite_entries({k: v for k, v in ckpt.items() if k not in RESERVED_KEYS})
        if bad:
            log.warning(f"ignoring checkpoint {info.path}: non-finite values in {', '.join(bad)}")
            continue
        return info, ckpt
    return None


def earlier_run_files(
    save_dir: str | os.PathLike, file_prefix: str = "checkpoint", final_filename: str | None = "model.pt"
) -> list[str]:
    """The checkpoint files of an earlier training run in ``save_dir``, readable or not: the final checkpoint
    ``final_filename``, the interval checkpoints ``{file_prefix}_epoch=N.pt``/``{file_prefix}_iteration=N.pt``, and
    MONAI ``CheckpointSaver``'s best-metric checkpoints ``[PREFIX_]key_metric=SCORE.pt``. Hidden temporary files of
    an interrupted write are not among them.

    Args:
        save_dir: the folder (missing: no files).
        file_prefix: prefix of interval checkpoints.
        final_filename: the final checkpoint's name, or ``None``.

    Returns:
        the paths, sorted.

    Example::

        earlier_run_files("runs/x")  # ['runs/x/checkpoint_epoch=2.pt', 'runs/x/model.pt']
    """
    save_dir = os.fspath(save_dir)
    if not os.path.isdir(save_dir):
        return []
    pattern = checkpoint_name_pattern(file_prefix)
    names = [
        name for name in os.listdir(save_dir)
        if name == final_filename or pattern.match(name) or _KEY_METRIC.match(name)
    ]
    return sorted(os.path.join(save_dir, name) for name in names if os.path.isfile(os.path.join(save_dir, name)))


def check_earlier_run(
    save_dir: str | os.PathLike,
    file_prefix: str = "checkpoint",
    final_filename: str | None = "model.pt",
    overwrite: bool = False,
    hint: str = "resume it (resume=True; bundle and CLI: --resume true), choose another folder (--output_dir) or "
    "replace it (overwrite=True; --overwrite)",
    logger: logging.Logger | None = None,
) -> list[str]:
    """Refuse a folder holding an earlier run's checkpoints (:func:`earlier_run_files`), or delete them when
    ``overwrite``, so that two runs never mix their checkpoints.

    Args:
        save_dir, file_prefix, final_filename: as in :func:`earlier_run_files`.
        overwrite: delete the files (each deletion logged) instead of refusing.
        hint: what the user can do, appended to the error.
        logger: where deletions are logged; default this module's logger.

    Returns:
        the files deleted (``overwrite``), else ``[]``.

    Raises:
        FileExistsError: the folder holds such files and ``overwrite`` is False; the message names them.

    Example::

        check_earlier_run("runs/x")  # FileExistsError when runs/x holds a model.pt
    """
    existing = earlier_run_files(save_dir, file_prefix, final_filename)
    if existing and not overwrite:
        raise FileExistsError(
            f"{os.fspath(save_dir)} already holds checkpoints of an earlier run ({', '.join(existing)}); {hint}."
        )
    log = logger if logger is not None else logging.getLogger(__name__)
    for path in existing:
        log.warning(f"overwrite: deleting {path}, a checkpoint of an earlier run")
        os.remove(path)
    return existing


def remove_stale_temporaries(
    save_dir: str, file_prefix: str, final_filename: str | None, logger: logging.Logger
) -> None:
    """Delete the hidden temporary files that interrupted writes of these checkpoints left (logged)."""
    names = [file_prefix + "_"] + ([final_filename] if final_filename else [])
    for entry in os.listdir(save_dir):
        if entry.startswith(".") and ".tmp" in entry and any(entry[1:].startswith(n) for n in names):
            path = os.path.join(save_dir, entry)
            logger.warning(f"removing {path}, left by a write that was interrupted")
            try:
                os.remove(path)
            except OSError:
                pass


def prune_interval_checkpoints(
    save_dir: str, file_prefix: str, keep: int, iteration: int, epoch_length: int | None, logger: logging.Logger
) -> None:
    """Delete the oldest interval checkpoints beyond the newest ``keep`` written up to ``iteration`` (never newer
    ones, e.g. those of an abandoned branch of a rolled-back run)."""
    pattern = checkpoint_name_pattern(file_prefix)
    mine = []
    for name in os.listdir(save_dir):
        m = pattern.match(name)
        if m is None:
            continue
        number = int(m.group(2))
        at = number * (epoch_length or 1) if m.group(1) == "epoch" else number
        if at <= iteration:
            mine.append((at, name))
    for _, name in sorted(mine)[: max(0, len(mine) - keep)]:
        os.remove(os.path.join(save_dir, name))
        logger.info(f"deleted old checkpoint {os.path.join(save_dir, name)}")


def world_size() -> int:
    """Processes in the default ``torch.distributed`` group (1 when not distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def is_rank0() -> bool:
    """Whether this process writes checkpoints: rank 0, or the only process."""
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or torch.distributed.get_rank() == 0
