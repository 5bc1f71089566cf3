"""GVAE networks: encoder, generator, critic, alpha-GAN's code critic and the encoder+generator inference model;
model I/O (``io``) and the channels-last memory format (``utils``)."""

from .io import BUNDLE_MODEL_FILE, bundle_model_path, load_gvae, model_checksum, resolve_gvae
from .nets import GVAE, CodeCritic, GVAECritic, GVAEEncoder, GVAEGenerator, GVAEGeneratorWrapper, reparameterize
from .latents import sample_latents
from .pretrained import load_pretrained_weights
from .utils import channels_last_format, prepare_network

__all__ = [
    "GVAE",
    "CodeCritic",
    "GVAECritic",
    "GVAEEncoder",
    "GVAEGenerator",
    "GVAEGeneratorWrapper",
    "reparameterize",
    "BUNDLE_MODEL_FILE",
    "bundle_model_path",
    "load_gvae",
    "model_checksum",
    "resolve_gvae",
    "load_pretrained_weights",
    "channels_last_format",
    "prepare_network",
    "sample_latents",
]
