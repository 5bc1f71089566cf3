"""Transforms: packing image+label into the GVAE's channels, and GVAE synthesis for augmentation.

The model a synthesis transform draws from is read by ``monai_gvae.networks`` (``resolve_gvae``, ``load_gvae``,
``model_checksum``), the package's one place for model I/O.
"""

from .array import GVAESynthesize, PackImageLabel
from .conditioning import encode_pairs, label_to_condition, posterior_variants, synthesize_for_labels
from .dictionary import (
    GVAESynthesizeD,
    GVAESynthesized,
    GVAESynthesizeDict,
    PackImageLabelD,
    PackImageLabeld,
    PackImageLabelDict,
)
from .filtering import DICE_REDUCTIONS, SyntheticPairFilter, calibrate_posterior_sigma, class_dice, foreground_dice
from .label_maps import interpolate_label_maps, nearest_label_maps, signed_distance_maps
from .label_propagation import fuse_label_maps, implausible_class_areas, propagate_label_map, register_label_map
from .pool import SYNTHETIC_FLAG, SYNTHETIC_MODE, SYNTHETIC_MODEL, GVAESamplePool, synthetic_meta
from .utils import from_model_range, pack_image_label, to_model_range, unpack_image_label, unpack_to_host

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
    "synthetic_meta",
    "SYNTHETIC_FLAG",
    "SYNTHETIC_MODEL",
    "SYNTHETIC_MODE",
    "pack_image_label",
    "unpack_image_label",
    "unpack_to_host",
    "to_model_range",
    "from_model_range",
    "label_to_condition",
    "encode_pairs",
    "synthesize_for_labels",
    "posterior_variants",
    "SyntheticPairFilter",
    "calibrate_posterior_sigma",
    "foreground_dice",
    "class_dice",
    "DICE_REDUCTIONS",
    "signed_distance_maps",
    "interpolate_label_maps",
    "nearest_label_maps",
    "register_label_map",
    "propagate_label_map",
    "fuse_label_maps",
    "implausible_class_areas",
]
