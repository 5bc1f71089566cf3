"""Transforms: packing image+label into the GVAE's channels, and GVAE synthesis for augmentation."""

from .array import GVAESynthesize, PackImageLabel
from .dictionary import (
    GVAESynthesizeD,
    GVAESynthesized,
    GVAESynthesizeDict,
    PackImageLabelD,
    PackImageLabeld,
    PackImageLabelDict,
)
from .pool import (
    BUNDLE_MODEL_FILE,
    SYNTHETIC_FLAG,
    SYNTHETIC_MODE,
    SYNTHETIC_MODEL,
    GVAESamplePool,
    model_checksum,
    resolve_gvae,
    synthetic_meta,
)
from .utils import from_model_range, pack_image_label, to_model_range, unpack_image_label

__all__ = [
    "PackImageLabel",
    "PackImageLabeld",
    "PackImageLabelD",
    "PackImageLabelDict",
    "GVAESynthesize",
    "GVAESynthesized",
    "GVAESynthesizeD",
    "GVAESynthesizeDict",
    "GVAESamplePool",
    "resolve_gvae",
    "model_checksum",
    "synthetic_meta",
    "SYNTHETIC_FLAG",
    "SYNTHETIC_MODEL",
    "SYNTHETIC_MODE",
    "BUNDLE_MODEL_FILE",
    "pack_image_label",
    "unpack_image_label",
    "to_model_range",
    "from_model_range",
]
