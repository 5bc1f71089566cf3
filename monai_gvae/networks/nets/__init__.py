from .gvae import GVAE, load_gvae, reparameterize
from .gvae_critic import GVAECritic
from .gvae_encoder import GVAEEncoder
from .gvae_generator import GVAEGenerator

__all__ = ["GVAE", "GVAECritic", "GVAEEncoder", "GVAEGenerator", "load_gvae", "reparameterize"]
