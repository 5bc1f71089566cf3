"""Transforms: packing image+label into the GVAE's channels, and (see array/dictionary) synthesis."""

from .array import PackImageLabel
from .dictionary import PackImageLabelD, PackImageLabeld, PackImageLabelDict
from .utils import from_model_range, pack_image_label, to_model_range, unpack_image_label

__all__ = [
    "PackImageLabel",
    "PackImageLabeld",
    "PackImageLabelD",
    "PackImageLabelDict",
    "pack_image_label",
    "unpack_image_label",
    "to_model_range",
    "from_model_range",
]
