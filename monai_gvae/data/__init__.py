"""Data readers: the embedded brain slices, synthetic stand-ins and other sources (never download)."""

from .brain import (
    BRAIN_CLASS_NAMES,
    DEFAULT_BRAIN_SLICES_FILE,
    DEFAULT_BRAIN_VOLUME_FILE,
    SLAB_LAYOUTS,
    BrainSliceDataset,
    brain_holdout_mask,
    brain_slab_split,
    load_brain_slices,
    load_brain_volume,
    synthetic_slices,
)
from .image_folder import IMAGE_EXTENSIONS, ImageFolderDataset
from .inputs import InputImageError, find_images, load_image, load_image_folder, read_reference_geometry
from .lsun import LSUNDataset, list_lmdb_keys, lsun_lmdb_path
from .mnist import MNISTDataset, read_idx
from .utils import LazyItemDataset, decode_image, natural_sort_key
from .volumes import BrainVolumeDataset, VolumeFolderDataset, volume_dataset
from .writers import (
    SYNTHETIC_DESCRIPTION,
    SyntheticStudy,
    default_affine,
    derived_uid,
    fit_affine,
    write_synthetic_dicom,
    write_synthetic_nifti,
    write_synthetic_png,
    write_synthetic_segmentation,
)
from .mixing import SyntheticMixDataset, load_synthetic_manifest
from .safe import BadItemError, SafeDataset, describe_item
from .subsets import labelled_subset, unlabelled_pool
from .labelled_slices import load_labelled_slices

__all__ = [
    "SyntheticMixDataset",
    "load_synthetic_manifest",
    "BadItemError",
    "SafeDataset",
    "describe_item",
    "SYNTHETIC_DESCRIPTION",
    "SyntheticStudy",
    "default_affine",
    "derived_uid",
    "fit_affine",
    "write_synthetic_dicom",
    "write_synthetic_nifti",
    "write_synthetic_png",
    "write_synthetic_segmentation",
    "InputImageError",
    "find_images",
    "load_image",
    "load_image_folder",
    "read_reference_geometry",
    "BRAIN_CLASS_NAMES",
    "DEFAULT_BRAIN_SLICES_FILE",
    "DEFAULT_BRAIN_VOLUME_FILE",
    "SLAB_LAYOUTS",
    "BrainSliceDataset",
    "brain_holdout_mask",
    "brain_slab_split",
    "load_brain_slices",
    "load_brain_volume",
    "synthetic_slices",
    "labelled_subset",
    "unlabelled_pool",
    "load_labelled_slices",
    # readers of the benchmark data sets (issue 3)
    "MNISTDataset",
    "read_idx",
    "LSUNDataset",
    "list_lmdb_keys",
    "lsun_lmdb_path",
    "ImageFolderDataset",
    "IMAGE_EXTENSIONS",
    "VolumeFolderDataset",
    "BrainVolumeDataset",
    "volume_dataset",
    "LazyItemDataset",
    "decode_image",
    "natural_sort_key",
]
