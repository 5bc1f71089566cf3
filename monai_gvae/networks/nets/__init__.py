from .code_critic import CodeCritic
from .gvae import GVAE, reparameterize
from .gvae_critic import GVAECritic
from .gvae_encoder import GVAEEncoder
from .gvae_export import GVAEGeneratorWrapper
from .gvae_generator import GVAEGenerator

__all__ = ["GVAE", "CodeCritic", "GVAECritic", "GVAEEncoder", "GVAEGenerator", "GVAEGeneratorWrapper", "reparameterize"]
