"""monai-gvae: the Generative Variational Autoencoder as MONAI networks, engines, bundles and transforms."""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

# Subpackages are imported on first use (PEP 562), so that `monai-gvae --help` and `--version` answer without
# importing torch and MONAI (seconds). `monai_gvae.networks` etc. still work after a plain `import monai_gvae`, as
# bundle configs write it (`$import monai_gvae` then `$monai_gvae.networks...`). Package modules never
# `import monai_gvae` (that would reach every layer, upward ones included); they read the version from
# monai_gvae._version.
_SUBPACKAGES = ("bundle", "data", "engines", "handlers", "losses", "metrics", "networks", "transforms", "utils")

__all__ = ["__version__", "bundle", "data", "engines", "handlers", "losses", "networks", "transforms"]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBPACKAGES))
