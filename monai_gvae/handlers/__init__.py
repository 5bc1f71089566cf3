"""Ignite handlers for reliable GVAE training: crash-safe checkpoints with exact resumption, a divergence guard and
rollback after divergence (see ``docs/reliability.md``)."""

from .checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointInfo,
    GVAECheckpointHandler,
    NonFiniteStateError,
    atomic_torch_save,
    find_checkpoints,
    latest_checkpoint,
    non_finite_entries,
)
from .divergence import DivergenceGuard, NonFiniteGradientError, run_with_rollback
from .random_state import capture_rng_state, data_random_generators, restore_rng_state

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointInfo",
    "GVAECheckpointHandler",
    "NonFiniteStateError",
    "atomic_torch_save",
    "find_checkpoints",
    "latest_checkpoint",
    "non_finite_entries",
    "DivergenceGuard",
    "NonFiniteGradientError",
    "run_with_rollback",
    "capture_rng_state",
    "restore_rng_state",
    "data_random_generators",
]
