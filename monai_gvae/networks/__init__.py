"""GVAE networks: encoder, generator, critic and the encoder+generator inference model."""

from .nets import GVAE, GVAECritic, GVAEEncoder, GVAEGenerator, GVAEGeneratorWrapper, load_gvae, reparameterize
from .latents import sample_latents
from .pretrained import load_pretrained_weights

__all__ = [
    "GVAE",
    "GVAECritic",
    "GVAEEncoder",
    "GVAEGenerator",
    "GVAEGeneratorWrapper",
    "load_gvae",
    "load_pretrained_weights",
    "reparameterize",
    "sample_latents",
]
