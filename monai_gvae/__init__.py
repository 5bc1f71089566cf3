"""monai-gvae: the Generative Variational Autoencoder as MONAI networks, engines, bundles and transforms."""

__version__ = "0.1.0"

# Subpackages are imported here (as MONAI does) so that bundle configs can write `$monai_gvae.networks...`
# after a plain `$import monai_gvae`. __version__ comes first: submodules read it.
from . import bundle, data, engines, handlers, losses, networks, transforms  # noqa: E402

__all__ = ["__version__", "bundle", "data", "engines", "handlers", "losses", "networks", "transforms"]
