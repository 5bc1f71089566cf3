"""Engines: the GVAE trainer (GVAE and its VAE / WGAN-GP baselines) and the reconstruction evaluator."""

from .gvae_evaluator import GVAEEvaluator
from .gvae_trainer import OBJECTIVES, GVAETrainer, NonFiniteLossError, unwrap
from .performance import channels_last_format, configure_backends, maybe_compile, prepare_network
from .utils import LOSS_KEYS, GVAEKeys, loss_terms, lower_is_better, split_condition

__all__ = [
    "GVAETrainer",
    "GVAEEvaluator",
    "NonFiniteLossError",
    "OBJECTIVES",
    "unwrap",
    "GVAEKeys",
    "LOSS_KEYS",
    "loss_terms",
    "lower_is_better",
    "split_condition",
    "channels_last_format",
    "configure_backends",
    "maybe_compile",
    "prepare_network",
]
