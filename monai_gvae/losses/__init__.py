"""GVAE losses: KL, Wasserstein critic loss, gradient penalty, the encoder-generator objective, VAE-GAN's
feature-matching reconstruction loss and the segmentation terms (consistency, gradient matching) of a
label-conditioned generator."""

from .gvae_losses import (
    CriticLoss,
    EncoderGeneratorLoss,
    gradient_difference,
    gradient_penalty,
    kl_divergence,
    wasserstein_critic_loss,
    wasserstein_generator_loss,
)
from .feature_matching import FeatureMatchingLoss
from .segmentation_consistency import SegmentationConsistencyLoss, SegmentationGradientMatchingLoss

__all__ = [
    "FeatureMatchingLoss",
    "SegmentationConsistencyLoss",
    "SegmentationGradientMatchingLoss",
    "CriticLoss",
    "EncoderGeneratorLoss",
    "gradient_difference",
    "gradient_penalty",
    "kl_divergence",
    "wasserstein_critic_loss",
    "wasserstein_generator_loss",
]
