"""The package version, in a module of its own so that any layer can read it without importing the whole package
(``import monai_gvae`` imports every subpackage; see docs/architecture.md)."""

__version__ = "0.1.0"
