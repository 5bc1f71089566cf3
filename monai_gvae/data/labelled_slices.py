"""A user's labelled images as 2D slices for few-label benchmarks: ``images/`` + ``labels/`` NIfTI folders.

:func:`load_labelled_slices` turns a folder of paired NIfTI files, 2D slices or 3D volumes, into the items
:func:`~monai_gvae.data.load_brain_slices` returns (``image`` ``(1, S, S)`` float32 in [0, 1], ``label``
``(1, S, S)`` int64 in ``0..C-1``, ``slice_index``), in file order and, within a volume, slice order, so that
:func:`~monai_gvae.data.brain_slab_split` can cut contiguous held-out slabs with gaps from them as it does for
the embedded slices.
"""

from __future__ import annotations

import os
import re
from typing import Any

import nibabel as nib
import numpy as np
import torch

from monai.transforms import Orientation

from monai_gvae.data.brain_build import radiological
from monai_gvae.data.inputs import InputImageError, find_images, load_image

__all__ = ["load_labelled_slices"]


def load_labelled_slices(
    data_dir: str | os.PathLike,
    image_size: int = 64,
    num_classes: int | None = None,
    axis: int = 2,
    min_foreground: float = 0.01,
    percentiles: tuple[float, float] = (0.5, 99.5),
    volume_pattern: str | None = None,
) -> list[dict[str, Any]]:
    """Read ``data_dir/images`` and ``data_dir/labels`` (NIfTI files paired by name) as square 2D slices.

    Each 3D volume is reoriented to RAS (MONAI's ``Orientation``, from the file's affine) and cut into slices
    along the anatomical ``axis`` (0 sagittal, 1 coronal, 2 axial), each slice in the radiological view of the
    embedded slices (:func:`~monai_gvae.data.brain_build.radiological`: anterior or superior at the top, the
    patient's right on the image's left), so that the image's columns run left-right in axial and coronal slices
    (what a left-right flip, ``RandFlipd(spatial_axis=1)``, expects) and grids read as a viewer shows them. A 2D
    file is one slice, taken as stored (rows first, as ``LoadImage`` reads it). A slice is kept when at least
    ``min_foreground`` of its label is foreground (non-zero). A 2D file names no subject, so each is its own
    volume, unless ``volume_pattern`` groups the files of one subject into one volume (e.g. ``"(.+)_slice[0-9]+"``
    for ``patient01_slice7.nii.gz``): its slices in natural name order (``slice2`` before ``slice10``), so that a
    split can hold whole subjects out and k can count labelled subjects, as for 3D volumes. Intensities are mapped to [0, 1] per file with
    the ``percentiles`` of its non-zero voxels, then clipped. Each slice is zero-padded to a square (centred) and
    resized to ``image_size`` (area averaging for the image, nearest neighbour for the label). Label values are
    remapped to ``0..C-1`` in increasing order of the values found in all files (0 stays background when
    present), ``C`` being the number of distinct values.

    Args:
        data_dir: the folder holding ``images/`` and ``labels/``.
        image_size: edge length of the square slices.
        num_classes: classes declared; an error when the labels hold more distinct values. ``None``: as found.
        axis: anatomical axis along which 3D volumes are sliced: 0 sagittal, 1 coronal, 2 axial (after RAS
            reorientation; a volume already in RAS order is sliced along the same array axis).
        min_foreground: fraction of foreground label pixels a slice needs to be kept, in ``[0, 1)``.
        percentiles: ``(low, high)`` intensity percentiles mapped to 0 and 1.
        volume_pattern: a regular expression searched in each 2D file's name (without extension) whose first group
            names its volume (subject); ``None``: every 2D file is its own volume. 3D files are volumes already.

    Returns:
        list of ``{"image", "label", "slice_index", "source", "volume", "level"}`` dicts (``slice_index`` the position
        in the whole ordered list, ``volume`` the file's name without extension, ``level`` the slice's index along
        ``axis`` in its volume (0 for a 2D file; with ``volume_pattern`` the file's position in its volume),
        ``source`` ``"volume:level"``), with the remapping stored in each item's ``"label_values"``; the items of
        one volume are consecutive, in level order.

    Raises:
        FileNotFoundError: no such folder, or no ``images``/``labels`` subfolder.
        InputImageError: no NIfTI file, an image without a label (or a label without an image), an image and
            label of different shapes or voxel orders (3D), a file that is neither 2D nor 3D, more label values than
            ``num_classes``, non-integer label values, no slice with foreground, or (``volume_pattern``) a 2D file
            whose name it does not match or a 3D file; each names the file.
        ValueError: invalid ``image_size``, ``axis``, ``min_foreground`` or ``percentiles``, or a
            ``volume_pattern`` that is not a regular expression with a group.

    Example::

        items = load_labelled_slices("my_data", image_size=64, num_classes=4, axis=2)
        train = [items[i] for i in np.flatnonzero(brain_slab_split(len(items)) == "train")]
    """
    if not isinstance(image_size, int) or image_size < 4:
        raise ValueError(f"image_size must be an integer >= 4, got {image_size!r}.")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}.")
    if not 0.0 <= min_foreground < 1.0:
        raise ValueError(f"min_foreground must be in [0, 1), got {min_foreground}.")
    if not 0.0 <= percentiles[0] < percentiles[1] <= 100.0:
        raise ValueError(f"percentiles must be (low, high) with 0 <= low < high <= 100, got {percentiles}.")
    pairs = _paired_files(os.fspath(data_dir))
    volumes = [(name, *_read_pair(image_item, label_item)) for name, image_item, label_item in pairs]
    if volume_pattern is not None:
        volumes = _grouped_slice_files(volumes, [image_item for _, image_item, _ in pairs], volume_pattern)
    values = np.unique(np.concatenate([np.unique(v[2]) for v in volumes]))
    if num_classes is not None and len(values) > num_classes:
        raise InputImageError(
            f"{data_dir}: the label maps hold {len(values)} distinct values {values.tolist()[:12]} but "
            f"num_classes={num_classes} was declared; pass --num-classes {len(values)} or merge classes."
        )
    items: list[dict[str, Any]] = []
    for name, image, label, *grouped_level in volumes:
        level = grouped_level[0] if grouped_level else 0
        image = _unit_intensity(image, percentiles)
        slices = [(image, label, level)] if image.ndim == 2 else _slices(image, label, axis)
        for image2d, label2d, index in slices:
            if np.mean(label2d != 0) < min_foreground:
                continue
            remapped = np.searchsorted(values, label2d)  # values is sorted and holds every label value
            image_t, label_t = _square_resize(image2d, remapped, image_size)
            items.append({"image": image_t, "label": label_t, "source": f"{name}:{index}", "volume": name,
                          "level": index, "label_values": values.tolist()})
    if not items:
        raise InputImageError(f"{data_dir}: no slice has at least {min_foreground:.0%} foreground label pixels.")
    for position, item in enumerate(items):
        item["slice_index"] = position
    return items


def _natural_key(name: str) -> list[Any]:
    """``slice2`` before ``slice10``: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _grouped_slice_files(
    volumes: list[tuple[str, np.ndarray, np.ndarray]], files: list[Any], volume_pattern: str
) -> list[tuple[str, np.ndarray, np.ndarray, int]]:
    """2D slice files as ``(volume, image, label, level)``: the volume the pattern's first group names, the level the
    file's position in its volume in natural name order; volumes in natural order of their names."""
    try:
        pattern = re.compile(volume_pattern)
    except re.error as error:
        raise ValueError(f"volume_pattern {volume_pattern!r} is not a regular expression: {error}") from error
    if pattern.groups < 1:
        raise ValueError(f"volume_pattern {volume_pattern!r} has no group: its first group (...) names the volume.")
    grouped: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {}
    for (name, image, label), item in zip(volumes, files):
        if image.ndim != 2:
            raise InputImageError(f"{item.path}: a 3D volume; volume_pattern groups 2D slice files into volumes "
                                  "(3D files are volumes already): leave it out, or keep 2D files only.")
        match = pattern.search(name)
        if match is None or not match.group(1):
            raise InputImageError(f"{item.path}: its name {name!r} does not match volume_pattern {volume_pattern!r} "
                                  "(the first group names the file's volume).")
        grouped.setdefault(match.group(1), []).append((name, image, label))
    return [(volume, image, label, level)
            for volume in sorted(grouped, key=_natural_key)
            for level, (_, image, label) in enumerate(sorted(grouped[volume], key=lambda f: _natural_key(f[0])))]


def _paired_files(data_dir: str) -> list[tuple[str, Any, Any]]:
    """``(name, image item, label item)`` for each NIfTI image, sorted by name; errors name unpaired files."""
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"data folder not found: {data_dir}")
    folders = {sub: os.path.join(data_dir, sub) for sub in ("images", "labels")}
    for sub, folder in folders.items():
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{data_dir} has no {sub}/ folder: put images in {folders['images']} and "
                                    f"label maps with the same file names in {folders['labels']}.")
    found = {sub: {i.name: i for i in find_images(folder) if i.kind == "nifti"} for sub, folder in folders.items()}
    if not found["images"]:
        raise InputImageError(f"no NIfTI images (.nii, .nii.gz) found in {folders['images']}.")
    for have, lack in (("images", "labels"), ("labels", "images")):
        unpaired = sorted(set(found[have]) - set(found[lack]))
        if unpaired:
            raise InputImageError(
                f"{found[have][unpaired[0]].path} has no file of the same name in {folders[lack]} "
                f"({len(unpaired)} unpaired); images and labels are paired by file name."
            )
    return [(name, found["images"][name], found["labels"][name]) for name in sorted(found["images"])]


def _read_pair(image_item: Any, label_item: Any) -> tuple[np.ndarray, np.ndarray]:
    """An image and its label as arrays of the same 2D or 3D shape (singleton and channel axes dropped)."""
    arrays, voxel_orders = [], []
    for item in (image_item, label_item):
        loaded = load_image(item)
        if loaded.ndim == 4 and min(loaded.shape[1:]) > 1:  # a 3D volume: RAS order, so that axis is anatomical
            voxel_orders.append("".join(nib.aff2axcodes(np.asarray(loaded.affine))))
            loaded = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))(loaded)
        array = np.asarray(torch.as_tensor(loaded).float())
        if array.shape[0] != 1:
            raise InputImageError(f"{item.path}: {array.shape[0]} channels; one channel (a grey image or a label map) is expected.")
        array = array[0]
        while array.ndim > 2 and 1 in array.shape:  # a 2D slice stored as (H, W, 1)
            array = array.squeeze(array.shape.index(1))
        if array.ndim not in (2, 3):
            raise InputImageError(f"{item.path}: a 2D slice or a 3D volume is expected, got shape {array.shape}.")
        arrays.append(array)
    image, label = arrays
    if len(set(voxel_orders)) > 1:  # reoriented apart, the two would no longer overlay: refuse, do not guess
        raise InputImageError(
            f"{label_item.path}: voxel order {voxel_orders[1]} (from its affine) differs from its image "
            f"{image_item.path} ({voxel_orders[0]}); save the label with the image's affine."
        )
    if image.shape != label.shape:
        raise InputImageError(
            f"{label_item.path}: label shape {label.shape} differs from its image {image_item.path} {image.shape}."
        )
    if not np.array_equal(label, np.round(label)) or label.min() < 0:
        raise InputImageError(f"{label_item.path}: label values must be non-negative integer class indices.")
    return image, label.astype(np.int64)


def _unit_intensity(image: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    """Map the percentiles of the non-zero voxels to [0, 1] and clip (all zeros stay zero)."""
    nonzero = image[image != 0]
    if nonzero.size == 0:
        return np.zeros_like(image, dtype=np.float32)
    low, high = np.percentile(nonzero, percentiles)
    if high <= low:
        high = low + 1.0
    return np.clip((image - low) / (high - low), 0.0, 1.0).astype(np.float32)


def _slices(image: np.ndarray, label: np.ndarray, axis: int) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """The RAS volume's slices along ``axis``, each in the radiological view (the in-plane axes stay in RAS order)."""
    return [(np.ascontiguousarray(radiological(np.take(image, i, axis))),
             np.ascontiguousarray(radiological(np.take(label, i, axis))), i) for i in range(image.shape[axis])]


def _square_resize(image: np.ndarray, label: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad to a centred square, then resize to ``size`` (area / nearest); ``(1, size, size)`` each."""
    side = max(image.shape)
    pads = [((side - n) // 2, side - n - (side - n) // 2) for n in image.shape]
    image, label = np.pad(image, pads), np.pad(label, pads)
    image_t = torch.as_tensor(image)[None, None]
    label_t = torch.as_tensor(label)[None, None].float()
    if side != size:
        image_t = torch.nn.functional.interpolate(image_t, size=(size, size), mode="area" if side > size else "bilinear")
        label_t = torch.nn.functional.interpolate(label_t, size=(size, size), mode="nearest")
    return image_t[0].clamp(0, 1).numpy().astype(np.float32), label_t[0].round().long().numpy()

