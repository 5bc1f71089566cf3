"""monai-gvae: the Generative Variational Autoencoder as MONAI networks, engines, bundles and transforms."""

__version__ = "0.1.0"

__all__ = ["__version__"]
