"""GVAE losses: KL, Wasserstein critic loss, gradient penalty and the encoder-generator objective."""

from .gvae_losses import (
    CriticLoss,
    EncoderGeneratorLoss,
    gradient_penalty,
    kl_divergence,
    wasserstein_critic_loss,
    wasserstein_generator_loss,
)

__all__ = [
    "CriticLoss",
    "EncoderGeneratorLoss",
    "gradient_penalty",
    "kl_divergence",
    "wasserstein_critic_loss",
    "wasserstein_generator_loss",
]
