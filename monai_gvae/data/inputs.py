"""Medical images from folders, through MONAI's readers: NIfTI files, DICOM series and PNG files.

Used by the command line (``monai-gvae evaluate``, ``memorization``, ``synthesize --reference``) and usable
from Python. Every problem with an input raises :class:`InputImageError` naming the file (or DICOM series
folder) and what is wrong, before anything is written.

Folder layouts (:func:`load_image_folder`):

* flat: every image under the folder (recursively) is one item;
* paired: ``FOLDER/images/...`` and ``FOLDER/labels/...`` with the same relative names (labels are class-index
  maps, needed to evaluate a model that generates labels);
* a ``monai-gvae synthesize`` output folder: the label files its ``manifest.json`` lists are skipped, so only
  images are read (files added by hand, e.g. a planted copy, are read too).

Items: ``*.nii``/``*.nii.gz`` (``NibabelReader``), ``*.png``/``*.jpg``/``*.jpeg`` (``PILReader``) and DICOM
files (``*.dcm`` or any file with the DICOM preamble; ``PydicomReader``), grouped into series by folder and
Series Instance UID: a one-file series is a 2D image, a several-file series a volume (slices checked for a
common size, orientation and pixel spacing, unique Instance Numbers and even slice spacing). Names starting
with ``.`` (e.g. temporary files of an interrupted write) and other files are ignored.

Axis order: a 2D image (PNG/JPEG, a single-frame DICOM file) is read rows first, as a viewer shows it
(``PILReader(reverse_indexing=False)``, ``PydicomReader(swap_ij=False)``, the affine following), the order of the
package's training readers and of what its writers store (see :mod:`monai_gvae.data.writers`); a NIfTI file in its
stored voxel order and a DICOM series or multi-frame volume in ITK/NIfTI index order (column, row, slice), MONAI's
defaults. MONAI's ``LoadImage()`` with its default readers would put a 2D image's columns first instead.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import re
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from monai_gvae.data.utils import resize_tensor

__all__ = [
    "InputImageError",
    "ImageItem",
    "LoadedImages",
    "find_images",
    "load_image",
    "read_reference_geometry",
    "prepare_image",
    "prepare_label",
    "load_image_folder",
]

NIFTI_SUFFIXES = (".nii.gz", ".nii")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg")
_IGNORED_SUFFIXES = (".json", ".csv", ".txt", ".md", ".tmp", ".log", ".yaml", ".yml", ".pt", ".npz")


class InputImageError(ValueError):
    """An input image that cannot be read or is inconsistent; the message names the file and the problem."""


@dataclasses.dataclass(frozen=True)
class ImageItem:
    """One image found in a folder.

    Args:
        name: relative path from the searched folder without the image suffix (for a DICOM series: the
            folder's relative path, plus the Series Instance UID when the folder holds several series).
        path: the file, or the folder of a several-file DICOM series.
        kind: ``"nifti"``, ``"png"`` or ``"dicom"``.
        files: the files of a DICOM series, in Instance Number order (empty for other kinds).
    """

    name: str
    path: str
    kind: str
    files: tuple[str, ...] = ()


@dataclasses.dataclass
class LoadedImages:
    """Images of a folder, prepared for a model: intensities in [0, 1], one spatial grid.

    Args:
        images: ``(N, C, *spatial)`` float32 in [0, 1].
        labels: ``(N, 1, *spatial)`` int64 class indices, or ``None``.
        names: item names (see :class:`ImageItem`), in the order of ``images``.
        paths: the files (or series folders) read.
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    names: list[str]
    paths: list[str]


def _strip_suffix(name: str) -> str:
    low = name.lower()
    for suffix in NIFTI_SUFFIXES + PIL_SUFFIXES + (".dcm",):
        if low.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _kind_of(filename: str) -> str | None:
    low = filename.lower()
    if low.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if low.endswith(PIL_SUFFIXES):
        return "png"
    if low.endswith(".dcm"):
        return "dicom"
    if low.endswith(_IGNORED_SUFFIXES):
        return None
    return "dicom?"  # DICOM files often have no suffix: checked for the preamble


def _read_dicom_header(path: str):
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as e:  # pydicom raises several types for truncated or foreign files
        raise InputImageError(f"cannot read DICOM file {path}: {type(e).__name__}: {e}") from e


def _check_series(folder: str, headers: list[tuple[str, object]]) -> tuple[str, ...]:
    """Validate a several-file DICOM series; return its files sorted by Instance Number."""
    first_path, first = headers[0]
    for path, ds in headers:
        for keyword in ("InstanceNumber", "ImagePositionPatient", "ImageOrientationPatient", "Rows", "Columns"):
            if getattr(ds, keyword, None) in (None, ""):
                raise InputImageError(f"DICOM series in {folder}: slice {path} has no {keyword}.")
        if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
            raise InputImageError(f"DICOM series in {folder}: {path} is multi-frame inside a several-file series.")
        if (ds.Rows, ds.Columns) != (first.Rows, first.Columns):
            raise InputImageError(
                f"DICOM series in {folder}: slice {path} is {ds.Rows}x{ds.Columns}, "
                f"{first_path} is {first.Rows}x{first.Columns}."
            )
        if not np.allclose(
            np.asarray(ds.ImageOrientationPatient, float), np.asarray(first.ImageOrientationPatient, float), atol=1e-4
        ):
            raise InputImageError(f"DICOM series in {folder}: slice {path} has another orientation than {first_path}.")
        spacing = np.asarray(getattr(ds, "PixelSpacing", [1, 1]), float)
        if not np.allclose(spacing, np.asarray(getattr(first, "PixelSpacing", [1, 1]), float), rtol=1e-4):
            raise InputImageError(
                f"DICOM series in {folder}: slice {path} has another pixel spacing than {first_path}."
            )
    numbers = [int(ds.InstanceNumber) for _, ds in headers]
    if len(set(numbers)) != len(numbers):
        dup = next(n for n in numbers if numbers.count(n) > 1)
        paths = [p for p, ds in headers if int(ds.InstanceNumber) == dup]
        raise InputImageError(f"DICOM series in {folder}: Instance Number {dup} is used by {paths[0]} and {paths[1]}.")
    ordered = sorted(headers, key=lambda h: int(h[1].InstanceNumber))
    iop = np.asarray(first.ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    positions = np.array([np.asarray(ds.ImagePositionPatient, float) @ normal for _, ds in ordered])
    steps = np.diff(positions)
    for k, step in enumerate(steps):
        if abs(step) < 1e-6:
            raise InputImageError(
                f"DICOM series in {folder}: slices {ordered[k][0]} and {ordered[k + 1][0]} are at the same position."
            )
        if not np.isclose(step, steps[0], rtol=1e-2, atol=1e-3):
            raise InputImageError(
                f"DICOM series in {folder}: irregular slice spacing between {ordered[k][0]} and {ordered[k + 1][0]} "
                f"({abs(step):.4g} mm, first gap {abs(steps[0]):.4g} mm): a missing or extra slice?"
            )
    return tuple(p for p, _ in ordered)


def find_images(folder: str | os.PathLike, exclude: Iterable[str] = ()) -> list[ImageItem]:
    """List the images under ``folder`` (recursively), DICOM files grouped into series.

    Args:
        folder: the folder to search.
        exclude: files or folders to skip (absolute or relative to the working directory).

    Returns:
        the items, sorted by name.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        InputImageError: an unreadable DICOM header or an inconsistent DICOM series (named).

    Example::

        items = find_images("data/train")
    """
    import pydicom

    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"image folder not found: {folder}")
    excluded = {os.path.realpath(e) for e in exclude}
    items: list[ImageItem] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and os.path.realpath(os.path.join(dirpath, d)) not in excluded
        )
        series: dict[str, list[tuple[str, object]]] = {}
        for filename in sorted(filenames):
            path = os.path.join(dirpath, filename)
            if filename.startswith(".") or os.path.realpath(path) in excluded:
                continue
            kind = _kind_of(filename)
            if kind is None:
                continue
            if kind == "dicom?":
                if not pydicom.misc.is_dicom(path):
                    continue
                kind = "dicom"
            rel = os.path.relpath(path, folder)
            if kind != "dicom":
                items.append(ImageItem(name=_strip_suffix(rel), path=path, kind=kind))
                continue
            ds = _read_dicom_header(path)
            uid = str(getattr(ds, "SeriesInstanceUID", "") or "")
            if not uid:
                raise InputImageError(f"DICOM file {path} has no Series Instance UID.")
            series.setdefault(uid, []).append((path, ds))
        rel_dir = os.path.relpath(dirpath, folder)
        for uid, headers in series.items():
            if len(headers) == 1:
                path = headers[0][0]
                items.append(
                    ImageItem(name=_strip_suffix(os.path.relpath(path, folder)), path=path, kind="dicom", files=(path,))
                )
                continue
            files = _check_series(dirpath, headers)
            name = rel_dir if len([s for s in series.values() if len(s) > 1]) == 1 else os.path.join(rel_dir, uid)
            items.append(ImageItem(name=name, path=dirpath, kind="dicom", files=files))
    return sorted(items, key=lambda item: item.name)


def _as_item(item: ImageItem | str | os.PathLike) -> ImageItem:
    if isinstance(item, ImageItem):
        return item
    path = os.fspath(item)
    if os.path.isdir(path):
        found = [i for i in find_images(path) if os.path.realpath(i.path) == os.path.realpath(path)]
        if len(found) != 1:
            raise InputImageError(
                f"{path} is a folder but not one DICOM series (found {len(found)} series directly in it)."
            )
        return found[0]
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    kind = _kind_of(os.path.basename(path))
    if kind in (None, "dicom?"):
        import pydicom

        if not pydicom.misc.is_dicom(path):
            raise InputImageError(f"{path}: not a NIfTI (.nii, .nii.gz), PNG/JPEG or DICOM file.")
        kind = "dicom"
    return ImageItem(
        name=_strip_suffix(os.path.basename(path)), path=path, kind=kind, files=(path,) if kind == "dicom" else ()
    )


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


@functools.lru_cache(maxsize=32)
def _loader(kind: str, fname_regex: str = "", picture: bool = True):
    """``(reader, LoadImage)`` for one kind of item (built once: a ``LoadImage`` instantiates every MONAI reader);
    ``picture``: a 2D DICOM image, read rows first (a volume is read in MONAI's column-first index order)."""
    from monai.data import NibabelReader, PILReader, PydicomReader
    from monai.transforms import LoadImage

    # rows first for PNG and DICOM (MONAI's defaults swap them): images as seen, as the package's writers store them
    if kind == "nifti":
        reader = NibabelReader()
    elif kind == "png":
        reader = PILReader(reverse_indexing=False)
    else:
        reader = PydicomReader(fname_regex=fname_regex, swap_ij=not picture)
    plugin_logger = logging.getLogger("monai.data.nvimgcodec_pydicom_plugin")
    level = plugin_logger.level
    plugin_logger.setLevel(logging.ERROR)  # "nvImageCodec is not available" on every CPU-only construction
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return reader, LoadImage(reader=reader, image_only=True, ensure_channel_first=True)
    finally:
        plugin_logger.setLevel(level)


def _is_multiframe(path: str) -> bool:
    """Whether a DICOM file holds several frames (a volume); unreadable headers count as single-frame (the reader
    reports them)."""
    import pydicom

    try:
        return int(getattr(pydicom.dcmread(path, stop_before_pixels=True), "NumberOfFrames", 1) or 1) > 1
    except Exception:  # pydicom raises several types for foreign files; the reader names the problem
        return False


def load_image(item: ImageItem | str | os.PathLike):
    """Read one image with MONAI's ``LoadImage`` (channel first), checking that it holds finite values.

    Args:
        item: an :class:`ImageItem`, a file, or a folder holding one DICOM series.

    Returns:
        a ``monai.data.MetaTensor`` ``(C, *spatial)`` with its ``affine`` (RAS); a 2D PNG or DICOM image rows first
        (see the module docstring).

    Raises:
        FileNotFoundError: no such file.
        InputImageError: unreadable, empty or non-finite image (the message names the file).

    Example::

        image = load_image("data/ct.nii.gz")
    """
    item = _as_item(item)
    if item.kind == "dicom" and len(item.files) > 1:
        # only this series' files, even when its folder holds other series
        pattern = "(?:" + "|".join(re.escape(os.path.join(item.path, os.path.basename(f))) for f in item.files) + r")\Z"
        reader, loader = _loader("dicom", pattern, picture=False)
    elif item.kind == "dicom":
        reader, loader = _loader("dicom", picture=not _is_multiframe(item.path))
    else:
        reader, loader = _loader(item.kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # the item's own reader first: on failure LoadImage would try every other reader and report them all
            reader.read(item.path)
        except Exception as e:  # readers raise many types for corrupt files
            raise InputImageError(f"cannot read {item.path}: {_first_line(e)}") from e
        try:
            image = loader(item.path)
        except Exception as e:
            raise InputImageError(f"cannot read {item.path}: {_first_line(e)}") from e
    if image.numel() == 0:
        raise InputImageError(f"{item.path}: the image is empty (shape {tuple(image.shape)}).")
    if not torch.isfinite(image.float()).all():
        raise InputImageError(f"{item.path}: the image contains NaN or Inf values.")
    return image


def read_reference_geometry(path: str | os.PathLike) -> tuple[np.ndarray, tuple[int, ...]]:
    """The voxel-to-world affine (4x4, RAS) and spatial shape of a reference image; nothing else is kept.

    Args:
        path: a NIfTI file, a DICOM file or a folder holding one DICOM series.

    Returns:
        ``(affine, spatial_shape)``; singleton spatial axes beyond the second are dropped.

    Raises:
        InputImageError: unreadable reference (named).

    Example::

        affine, shape = read_reference_geometry("ref/ct_series")
    """
    image = load_image(path)
    shape = tuple(int(s) for s in image.shape[1:])
    while len(shape) > 2 and shape[-1] == 1:
        shape = shape[:-1]
    affine = np.asarray(image.affine, dtype=np.float64)
    if affine.shape == (3, 3):  # a 2D affine: embed in 3D
        full = np.eye(4)
        full[:2, :2], full[:2, 3] = affine[:2, :2], affine[:2, 2]
        affine = full
    return affine, shape


def _plain(x) -> torch.Tensor:
    """A float32 CPU ``torch.Tensor`` (a ``MetaTensor``'s metadata and tracking dropped)."""
    x = (
        x.as_tensor()
        if hasattr(x, "as_tensor")
        else torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    )
    return x.detach().float().cpu()


def _to_rank(x: torch.Tensor, spatial_dims: int | None, name: str) -> torch.Tensor:
    if spatial_dims is None:
        return x
    while x.ndim - 1 > spatial_dims:
        singleton = [d for d in range(x.ndim - 1, 0, -1) if x.shape[d] == 1]
        if not singleton:
            break
        x = x.squeeze(singleton[0])
    if x.ndim - 1 != spatial_dims:
        raise InputImageError(
            f"{name}: a {x.ndim - 1}D image (shape {tuple(x.shape[1:])}) but {spatial_dims}D images are expected."
        )
    return x


def _resize_to_grid(x: torch.Tensor, size: Sequence[int], label: bool) -> torch.Tensor:
    """``x`` on a model's grid: nearest for labels, area averaging when shrinking, linear when enlarging."""
    if tuple(x.shape[1:]) == tuple(size):
        return x
    if label:
        mode = "nearest"
    elif all(s >= t for s, t in zip(x.shape[1:], size)):
        mode = "area"
    else:
        mode = "bilinear" if len(size) == 2 else "trilinear"
    return resize_tensor(x, size, mode)


def prepare_image(
    image: torch.Tensor,
    spatial_dims: int | None = None,
    spatial_size: Sequence[int] | None = None,
    channels: int | None = None,
    intensity_range: tuple[float, float] | None = None,
    name: str = "image",
) -> torch.Tensor:
    """Bring a loaded image ``(C, *spatial)`` to a model's grid with intensities in [0, 1].

    Args:
        image: channel-first image (e.g. from :func:`load_image`).
        spatial_dims: expected spatial rank; extra singleton axes are dropped.
        spatial_size: grid to resize to (area averaging when shrinking, linear otherwise); the aspect ratio is
            not preserved.
        channels: expected number of channels.
        intensity_range: ``(low, high)`` mapped to [0, 1] and clipped; ``None``: each image's min-max.
        name: the file, for error messages.

    Returns:
        float32 tensor ``(C, *spatial_size)`` in [0, 1].

    Raises:
        InputImageError: wrong rank or channel count (named).
    """
    x = _to_rank(_plain(image), spatial_dims, name)
    if channels is not None and x.shape[0] != channels:
        raise InputImageError(f"{name}: {x.shape[0]} channel(s) but {channels} expected.")
    if intensity_range is None:
        low, high = float(x.min()), float(x.max())
        x = (x - low) / (high - low) if high > low else torch.zeros_like(x)
    else:
        low, high = float(intensity_range[0]), float(intensity_range[1])
        if not high > low:
            raise ValueError(f"intensity_range must be (low, high) with high > low, got {intensity_range}.")
        x = ((x - low) / (high - low)).clamp(0.0, 1.0)
    if spatial_size is not None:
        x = _resize_to_grid(x, spatial_size, label=False).clamp(0.0, 1.0)
    return x.contiguous()


def prepare_label(
    label: torch.Tensor,
    spatial_dims: int | None = None,
    spatial_size: Sequence[int] | None = None,
    num_classes: int | None = None,
    name: str = "label",
) -> torch.Tensor:
    """Check a class-index map ``(1, *spatial)`` and resize it (nearest) to a model's grid.

    Raises:
        InputImageError: several channels, non-integer values or classes outside ``[0, num_classes)`` (named).
    """
    x = _to_rank(_plain(label), spatial_dims, name)
    if x.shape[0] != 1:
        raise InputImageError(f"{name}: a label map must have one channel, got {x.shape[0]}.")
    if not torch.equal(x, x.round()):
        raise InputImageError(f"{name}: label values must be integer class indices.")
    if x.min() < 0 or (num_classes is not None and x.max() >= num_classes):
        raise InputImageError(
            f"{name}: label values span [{int(x.min())}, {int(x.max())}] but the model has classes 0..{num_classes - 1}."
            if num_classes is not None
            else f"{name}: negative label values."
        )
    if spatial_size is not None:
        x = _resize_to_grid(x, spatial_size, label=True)
    return x.round().long().contiguous()


def _manifest_labels(folder: str) -> list[str]:
    path = os.path.join(folder, "manifest.json")
    if not os.path.isfile(path):
        return []
    try:
        with open(path) as f:
            manifest = json.load(f)
        # label maps: class-index images and DICOM-SEG objects
        entries = manifest.get("files", [])
        return [os.path.join(folder, e[key]) for e in entries for key in ("label", "segmentation") if e.get(key)]
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise InputImageError(f"cannot read {path}: {e}") from e


def load_image_folder(
    folder: str | os.PathLike,
    spatial_dims: int | None = None,
    spatial_size: Sequence[int] | None = None,
    channels: int | None = None,
    intensity_range: tuple[float, float] | None = None,
    num_classes: int | None = None,
    require_labels: bool = False,
    progress: bool = False,
) -> LoadedImages:
    """Read every image of a folder (see the module's layouts), prepared with :func:`prepare_image`.

    Args:
        folder: a flat folder, a folder with ``images/`` and ``labels/``, or a ``synthesize`` output folder.
        spatial_dims: expected spatial rank.
        spatial_size: grid to resize to; ``None``: the first image's grid (all images must then match it).
        channels: expected image channels.
        intensity_range: fixed ``(low, high)`` mapped to [0, 1]; ``None``: per-image min-max.
        num_classes: classes of the labels (checked).
        require_labels: fail unless every image has a label in ``labels/``.
        progress: show a progress bar (stderr).

    Returns:
        :class:`LoadedImages`.

    Raises:
        FileNotFoundError: no such folder.
        InputImageError: no images, a missing label, or any unreadable or inconsistent file (named).

    Example::

        data = load_image_folder("data/test", spatial_dims=2, spatial_size=(64, 64), num_classes=4)
    """
    from tqdm.auto import tqdm

    folder = os.fspath(folder)
    items, label_items, labels_dir = _image_and_label_files(folder, require_labels, num_classes)
    images, labels, names, paths = [], [], [], []
    size = tuple(spatial_size) if spatial_size is not None else None
    for item in tqdm(
        items, desc=f"reading {os.path.basename(os.path.normpath(folder))}", disable=not progress, unit="image"
    ):
        raw = load_image(item)
        x = prepare_image(raw, spatial_dims, size, channels, intensity_range, name=item.path)
        if size is None:
            size = tuple(x.shape[1:])
        elif tuple(x.shape[1:]) != size:
            raise InputImageError(f"{item.path}: shape {tuple(x.shape[1:])} differs from the first image's {size}.")
        if channels is None:
            channels = x.shape[0]
        images.append(x)
        names.append(item.name)
        paths.append(item.path)
        if label_items and (require_labels or item.name in label_items):
            if item.name not in label_items:
                raise InputImageError(f"{labels_dir} has no label for image {item.path}.")
            labels.append(_read_label(label_items[item.name], item, raw, spatial_dims, size, num_classes))
    if labels and len(labels) != len(images):
        missing = [n for n in names if n not in label_items]
        raise InputImageError(f"{labels_dir} has no label for image {missing[0]} ({len(missing)} missing).")
    return LoadedImages(
        images=torch.stack(images),
        labels=torch.stack(labels) if labels else None,
        names=names,
        paths=paths,
    )


def _image_and_label_files(
    folder: str, require_labels: bool, num_classes: int | None
) -> tuple[list[ImageItem], dict[str, ImageItem], str]:
    """The images of ``folder`` (its ``images/`` when there is one), its labels by image name (``labels/``; empty
    when there are none) and the labels folder; checks that every image has a label when ``require_labels``."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"image folder not found: {folder}")
    images_dir, labels_dir = os.path.join(folder, "images"), os.path.join(folder, "labels")
    paired = os.path.isdir(images_dir)
    items = find_images(images_dir if paired else folder, exclude=_manifest_labels(folder))
    if not items:
        raise InputImageError(f"no NIfTI, DICOM or PNG images found in {images_dir if paired else folder}.")
    label_items: dict[str, ImageItem] = {}
    if paired and os.path.isdir(labels_dir):
        label_items = {i.name: i for i in find_images(labels_dir)}
    if require_labels:
        if not label_items:
            raise InputImageError(
                f"labels are needed (the model generates {num_classes} label classes): put the images in "
                f"{images_dir} and class-index maps with the same names in {labels_dir}."
            )
        missing = [i.name for i in items if i.name not in label_items]
        if missing:
            raise InputImageError(f"{labels_dir} has no label for image {missing[0]} ({len(missing)} missing).")
    return items, label_items, labels_dir


def _read_label(
    label_item: ImageItem,
    image_item: ImageItem,
    raw_image: torch.Tensor,
    spatial_dims: int | None,
    size: tuple[int, ...],
    num_classes: int | None,
) -> torch.Tensor:
    """The label of an image, on the image's original grid (checked) and then prepared like it."""
    raw_label = load_image(label_item)
    if tuple(raw_label.shape[1:]) != tuple(raw_image.shape[1:]):
        raise InputImageError(
            f"{label_item.path}: label shape {tuple(raw_label.shape[1:])} differs from its image "
            f"{image_item.path} {tuple(raw_image.shape[1:])}."
        )
    return prepare_label(raw_label, spatial_dims, size, num_classes, name=label_item.path)
