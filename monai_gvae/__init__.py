"""monai-gvae: the Generative Variational Autoencoder as MONAI networks, engines, bundles and transforms."""

from ._version import __version__

# Subpackages are imported here (as MONAI does) so that bundle configs can write `$monai_gvae.networks...`
# after a plain `$import monai_gvae`. Package modules never `import monai_gvae` (that would import every layer,
# upward ones included); they read the version from monai_gvae._version.
from . import bundle, data, engines, handlers, losses, networks, transforms  # noqa: E402

__all__ = ["__version__", "bundle", "data", "engines", "handlers", "losses", "networks", "transforms"]
