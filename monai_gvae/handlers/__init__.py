"""Ignite handlers for reliable GVAE training: crash-safe checkpoints with exact resumption, a divergence guard and
rollback after divergence (see ``docs/reliability.md``).

``checkpoint`` holds the Ignite handler, ``checkpoint_io`` the checkpoint files (atomic writes, reading, finding,
an earlier run's files), ``resume`` and ``random_state`` what an exact resumption puts back, ``progress`` what a
person watching a run sees (one progress bar, one line per validation).
"""

from .checkpoint import GVAECheckpointHandler, NonFiniteStateError
from .checkpoint_io import (
    CHECKPOINT_FORMAT,
    CheckpointInfo,
    atomic_torch_save,
    check_earlier_run,
    earlier_run_files,
    find_checkpoints,
    latest_checkpoint,
    non_finite_entries,
    read_checkpoint,
    upgrade_checkpoint,
)
from .divergence import DivergenceGuard, NonFiniteGradientError, run_with_rollback
from .progress import DEFAULT_PROGRESS_TERMS, TrainingProgressBar, ValidationLogger
from .random_state import capture_rng_state, data_random_generators, engine_generators, restore_rng_state
from .resume import RandomStateTracker

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointInfo",
    "GVAECheckpointHandler",
    "NonFiniteStateError",
    "atomic_torch_save",
    "check_earlier_run",
    "earlier_run_files",
    "find_checkpoints",
    "latest_checkpoint",
    "non_finite_entries",
    "read_checkpoint",
    "upgrade_checkpoint",
    "DivergenceGuard",
    "NonFiniteGradientError",
    "run_with_rollback",
    "RandomStateTracker",
    "capture_rng_state",
    "restore_rng_state",
    "data_random_generators",
    "engine_generators",
    "DEFAULT_PROGRESS_TERMS",
    "TrainingProgressBar",
    "ValidationLogger",
]
