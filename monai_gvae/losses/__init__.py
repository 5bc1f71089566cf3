"""GVAE losses: KL, Wasserstein critic loss, gradient penalty, the encoder-generator objective and the
segmentation-consistency term of a label-conditioned generator."""

from .gvae_losses import (
    CriticLoss,
    EncoderGeneratorLoss,
    gradient_penalty,
    kl_divergence,
    wasserstein_critic_loss,
    wasserstein_generator_loss,
)
from .segmentation_consistency import SegmentationConsistencyLoss

__all__ = [
    "SegmentationConsistencyLoss",
    "CriticLoss",
    "EncoderGeneratorLoss",
    "gradient_penalty",
    "kl_divergence",
    "wasserstein_critic_loss",
    "wasserstein_generator_loss",
]
