"""The embedded brain MRI data set and a data-free synthetic stand-in.

The package ships two small arrays built by ``examples/build_brain_data.py`` from the Debian package
``mricron-data`` (Colin27 brain-extracted T1 ``ch2bet`` and the AAL atlas; see
``resources/BRAIN_DATA_NOTICE.txt`` for source and licence):

* ``resources/brain2d_64.npz``: 121 axial 64x64 slices (every axial slice of the 1 mm template whose
  brain coverage of the crop exceeds 12%), shown as radiological views (anterior up, the patient's
  right on the image's left).
* ``resources/brain3d_64.npz``: the whole brain as a 64x64x64 volume in RAS voxel order.

Labels have 4 classes, :data:`BRAIN_CLASS_NAMES`: 0 background (white matter, CSF, outside the
brain), 1 cortex (all AAL cerebral cortical regions incl. insula, cingulate, parahippocampal gyrus),
2 deep grey matter (caudate, putamen, pallidum, thalamus, hippocampus, amygdala), 3 cerebellum
(hemispheres and vermis).

Splits (:func:`brain_slab_split`): the slices come from a single subject, and neighbouring 1 mm slices
are near-copies of each other, so held-out slices are contiguous **slabs**, each separated from every
other split by a gap of ``gap`` unused slices (3 by default). Five slabs are spread evenly from inferior
to superior, test / val / test / val / test: ``"test"`` holds ``round(N * holdout_fraction)`` slices
(30 of 121 by default) in three slabs, ``"val"`` (for tuning settings) ``round(N * val_fraction)`` (18)
in two, ``"train"`` the rest (43) and the gap slices (30) belong to no split. No test slice has a
training or validation slice within ``gap`` slices of it. The split measures generalisation to unseen
sections of the same anatomy, not to new subjects.

Nothing is downloaded; all readers return MONAI-style dictionaries.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import Dataset
from monai.data.synthetic import create_test_image_2d

from monai_gvae.data.utils import holdout_mask

__all__ = [
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
]

BRAIN_CLASS_NAMES: tuple[str, ...] = ("background", "cortex", "deep_grey_matter", "cerebellum")
"""Names of the label values 0..3 of the embedded brain data."""

_RESOURCES = Path(__file__).resolve().parent / "resources"
DEFAULT_BRAIN_SLICES_FILE: Path = _RESOURCES / "brain2d_64.npz"
"""Shipped 2D slices (arrays ``image``/``label`` ``(N, 64, 64)`` uint8, ``slice_index`` ``(N,)``)."""
DEFAULT_BRAIN_VOLUME_FILE: Path = _RESOURCES / "brain3d_64.npz"
"""Shipped 3D volume (arrays ``image``/``label`` ``(64, 64, 64)`` uint8, ``affine`` ``(4, 4)``)."""

_SPLITS = ("all", "train", "val", "test")
SPLIT_ROLES = ("train", "val", "test", "gap")
"""What :func:`brain_slab_split` assigns to each slice."""
SLAB_LAYOUTS = ("alternate", "paired")
"""How :func:`brain_slab_split` places val slabs: between the test slabs, or one beside each."""
_REBUILD_HINT = "rebuild it with `python examples/build_brain_data.py` (needs the Debian package mricron-data)"


def _read_npz(data_file: str | Path | None, default: Path, ndim: int) -> dict[str, np.ndarray]:
    """Read an ``.npz`` file with ``image``/``label`` uint8 arrays of ``ndim`` dimensions.

    Args:
        data_file: path given by the caller, or ``None`` for ``default``.
        default: the shipped file.
        ndim: expected number of dimensions of ``image`` and ``label``.

    Returns:
        All arrays of the file, loaded into memory.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when the file is not a readable ``.npz`` or its arrays are malformed.
    """
    path = Path(default if data_file is None else data_file).expanduser()
    if not path.is_file():
        hint = f"; {_REBUILD_HINT}" if data_file is None else ""
        raise FileNotFoundError(f"brain data file not found: {path}{hint}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"brain data file {path} is not a readable .npz archive: {exc}") from exc
    for key in ("image", "label"):
        if key not in arrays:
            raise ValueError(f"brain data file {path} has no array {key!r} (found {sorted(arrays)})")
        if arrays[key].ndim != ndim:
            raise ValueError(f"brain data file {path}: {key!r} must have {ndim} dims, got {arrays[key].shape}")
    if arrays["image"].shape != arrays["label"].shape:
        raise ValueError(
            f"brain data file {path}: image {arrays['image'].shape} and label {arrays['label'].shape} differ"
        )
    _check_values(arrays["image"], arrays["label"], path)
    if "slice_index" in arrays:
        index = arrays["slice_index"]
        if index.shape != arrays["image"].shape[:1] or not np.issubdtype(index.dtype, np.integer):
            raise ValueError(
                f"brain data file {path}: 'slice_index' must hold {arrays['image'].shape[0]} integers, "
                f"got shape {index.shape} dtype {index.dtype}"
            )
    if "affine" in arrays:
        affine = arrays["affine"]
        if (
            affine.shape != (4, 4)
            or not (np.issubdtype(affine.dtype, np.integer) or np.issubdtype(affine.dtype, np.floating))
            or not np.isfinite(affine).all()
        ):
            raise ValueError(f"brain data file {path}: 'affine' must be a finite 4x4 matrix, got shape {affine.shape} dtype {affine.dtype}")
    return arrays


def _check_values(image: np.ndarray, label: np.ndarray, path: Path) -> None:
    """Reject what would otherwise load as silent garbage: empty arrays, wrong dtypes, out-of-range values."""
    if image.size == 0:
        raise ValueError(f"brain data file {path}: empty arrays (shape {image.shape})")
    if image.dtype == np.bool_ or not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise ValueError(f"brain data file {path}: 'image' must be uint8 (0..255) or float in [0, 1], got dtype {image.dtype}")
    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise ValueError(f"brain data file {path}: 'image' contains NaN or Inf values")
        lo, hi = float(image.min()), float(image.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"brain data file {path}: float 'image' must lie in [0, 1], got [{lo:g}, {hi:g}]")
    else:
        lo, hi = int(image.min()), int(image.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"brain data file {path}: integer 'image' must lie in 0..255, got {lo}..{hi}")
    if not (np.issubdtype(label.dtype, np.integer) or label.dtype == np.bool_):
        raise ValueError(f"brain data file {path}: 'label' must hold integer class indices, got dtype {label.dtype}")
    if int(label.min()) < 0:
        raise ValueError(f"brain data file {path}: 'label' holds negative class indices (min {int(label.min())})")


def _to_unit_float(image: np.ndarray) -> np.ndarray:
    """uint8 0..255 (or float already in [0, 1]) -> float32 in [0, 1] (ranges checked by ``_read_npz``)."""
    if np.issubdtype(image.dtype, np.integer):
        return image.astype(np.float32) / np.float32(255.0)
    return np.clip(image.astype(np.float32), 0.0, 1.0)


def brain_holdout_mask(num_slices: int, holdout_fraction: float = 0.25) -> np.ndarray:
    """Boolean mask of the held-out (test) slices among ``num_slices`` slices ordered from inferior to superior.

    The rule every reader's split uses, :func:`monai_gvae.data.utils.holdout_mask` (``round(num_slices * f)`` evenly
    interleaved positions), with the brain data's default fraction: every 4th slice is held out.

    Example:
        >>> brain_holdout_mask(8, 0.25).nonzero()[0].tolist()
        [2, 6]
    """
    return holdout_mask(num_slices, holdout_fraction)


def brain_slab_split(
    num_slices: int,
    holdout_fraction: float = 0.25,
    val_fraction: float = 0.15,
    gap: int = 3,
    test_slabs: int = 3,
    val_slabs: int | None = None,
    layout: str = "alternate",
) -> np.ndarray:
    """The split role of each of ``num_slices`` ordered slices: contiguous held-out slabs with gaps.

    ``layout="alternate"`` (the default): ``test_slabs + val_slabs`` slabs are centred at evenly spaced positions
    ``(j + 0.5) * N / slabs``, alternating test, val, test, ... (test first), so validation and test cover
    different levels of the volume. ``layout="paired"``: ``test_slabs`` held-out blocks at those positions, each
    a val slab, ``gap`` unused slices, then a test slab, so validation covers the levels the test slabs cover
    (a setting chosen on validation then sees the anatomy it is scored on; the val slices stay ``gap`` slices
    away from every test slice, and are never trained on). ``round(N * holdout_fraction)`` test slices are divided
    among the test slabs and ``round(N * val_fraction)`` validation slices among the val slabs as evenly as
    possible. The ``gap`` slices on each side of a slab are ``"gap"`` (used by no split) unless they belong
    to another slab, so no test slice lies within ``gap`` slices of a train or val slice, and no val slice
    within ``gap`` slices of a train slice.

    Args:
        num_slices: number of slices, ordered from inferior to superior.
        holdout_fraction: fraction of slices in ``"test"``, in ``[0, 1)``.
        val_fraction: fraction of slices in ``"val"``, in ``[0, 1)``.
        gap: unused slices on each side of a slab, ``>= 0``.
        test_slabs: number of test slabs (``>= 1`` when there is a test split).
        val_slabs: number of val slabs (``>= 1`` when there is a val split); default 2 with ``"alternate"``,
            ``test_slabs`` with ``"paired"`` (which needs one val slab per test slab).
        layout: ``"alternate"`` or ``"paired"`` (see above).

    Returns:
        Array of shape ``(num_slices,)`` of strings among :data:`SPLIT_ROLES`.

    Raises:
        ValueError: a fraction outside ``[0, 1)``, a negative gap or slab count, an unknown layout, a
            ``"paired"`` layout whose val and test slab counts differ, or slabs and gaps that do not fit in
            ``num_slices`` (they would overlap or leave no training slice).

    Example:
        >>> roles = brain_slab_split(24, holdout_fraction=0.25, val_fraction=0.125, gap=1)
        >>> "".join({"train": ".", "val": "V", "test": "T", "gap": "-"}[r] for r in roles)
        '-TT-.-VV-.-TT-.-V-..-TT-'
        >>> roles = brain_slab_split(30, holdout_fraction=0.2, val_fraction=0.1, gap=1, test_slabs=3, layout="paired")
        >>> "".join({"train": ".", "val": "V", "test": "T", "gap": "-"}[r] for r in roles)
        '..-V-TT-....-V-TT-....-V-TT-..'
    """
    if num_slices < 0:
        raise ValueError(f"num_slices must be >= 0, got {num_slices}")
    for name, value in (("holdout_fraction", holdout_fraction), ("val_fraction", val_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    if layout not in SLAB_LAYOUTS:
        raise ValueError(f"layout must be one of {SLAB_LAYOUTS}, got {layout!r}")
    if val_slabs is None:
        val_slabs = test_slabs if layout == "paired" else 2
    if layout == "paired" and val_slabs != test_slabs:
        raise ValueError(f"layout 'paired' puts one val slab beside each test slab: val_slabs ({val_slabs}) must "
                         f"equal test_slabs ({test_slabs})")
    if gap < 0 or test_slabs < 0 or val_slabs < 0:
        raise ValueError(f"gap, test_slabs and val_slabs must be >= 0, got {gap}, {test_slabs}, {val_slabs}")
    n_test, n_val = int(round(num_slices * holdout_fraction)), int(round(num_slices * val_fraction))
    # no more slabs than slices (a slab holds at least one)
    test_slabs, val_slabs = min(test_slabs, n_test), min(val_slabs, n_val)
    if (n_test and not test_slabs) or (n_val and not val_slabs):  # asked for zero slabs
        raise ValueError("a non-empty test or val split needs at least one slab")
    roles = np.full(num_slices, "train", dtype=object)
    if not (n_test or n_val):
        return roles.astype(str)
    slabs = _paired_slabs(num_slices, n_test, n_val, max(test_slabs, val_slabs), gap) if layout == "paired" else \
        _alternate_slabs(num_slices, n_test, n_val, test_slabs, val_slabs)
    for (_, _, end), (_, start, _) in zip(slabs, slabs[1:]):
        if start - end < gap:
            raise ValueError(
                f"{num_slices} slices cannot hold {len(slabs)} slabs of {n_test} test and {n_val} val slices "
                f"separated by gaps of {gap}; lower the fractions or the gap"
            )
    for kind, start, end in slabs:
        lo, hi = max(0, start - gap), min(num_slices, end + gap)
        roles[lo:hi] = np.where(roles[lo:hi] == "train", "gap", roles[lo:hi])
        roles[start:end] = kind
    if not (roles == "train").any():
        raise ValueError(
            f"{num_slices} slices leave no training slice after {n_test} test and {n_val} val slices with gaps of "
            f"{gap}; lower the fractions or the gap"
        )
    return roles.astype(str)


def _alternate_slabs(num_slices: int, n_test: int, n_val: int, test_slabs: int, val_slabs: int) -> list[tuple]:
    """``(kind, start, end)`` of test and val slabs alternating (test first) at evenly spaced centres."""
    # alternate test and val slabs (test first) while both remain, then the rest of the more numerous kind
    kinds: list[str] = []
    t, v = test_slabs, val_slabs
    while t or v:
        if t and (not kinds or kinds[-1] == "val" or not v):
            kinds.append("test")
            t -= 1
        else:
            kinds.append("val")
            v -= 1
    sizes = {"test": _even_parts(n_test, test_slabs), "val": _even_parts(n_val, val_slabs)}
    slabs = []
    for j, kind in enumerate(kinds):
        size = sizes[kind].pop(0)
        centre = (j + 0.5) * num_slices / len(kinds)
        start = int(np.clip(round(centre - size / 2), 0, num_slices - size))
        slabs.append((kind, start, start + size))
    return slabs


def _paired_slabs(num_slices: int, n_test: int, n_val: int, blocks: int, gap: int) -> list[tuple]:
    """``(kind, start, end)`` of ``blocks`` evenly spaced held-out blocks, each a val slab, ``gap``, a test slab."""
    slabs = []
    for j, (v, t) in enumerate(zip(_even_parts(n_val, blocks), _even_parts(n_test, blocks))):
        inner = gap if v and t else 0
        size = v + inner + t
        centre = (j + 0.5) * num_slices / blocks
        start = int(np.clip(round(centre - size / 2), 0, num_slices - size))
        slabs += [("val", start, start + v)] if v else []
        slabs += [("test", start + v + inner, start + size)] if t else []
    return slabs


def _even_parts(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` integers differing by at most one (larger first)."""
    return [total // parts + (i < total % parts) for i in range(parts)] if parts else []


def load_brain_slices(
    split: str = "all",
    holdout_fraction: float = 0.25,
    data_file: str | Path | None = None,
    val_fraction: float = 0.15,
    gap: int = 3,
    layout: str = "alternate",
) -> list[dict[str, Any]]:
    """Load the embedded axial brain slices with their 4-class labels.

    Args:
        split: ``"all"``, ``"train"``, ``"val"`` or ``"test"``: contiguous slabs with gaps between the splits
            (see :func:`brain_slab_split`); ``"all"`` is every slice, the gap slices included.
        holdout_fraction: fraction of slices in the ``"test"`` split, in ``[0, 1)``.
        data_file: an ``.npz`` file with ``image`` and ``label`` arrays ``(N, H, W)`` (uint8 0..255
            images) and optionally ``slice_index`` ``(N,)``; defaults to the shipped
            :data:`DEFAULT_BRAIN_SLICES_FILE`.
        val_fraction: fraction of slices in the ``"val"`` split, in ``[0, 1)``.
        gap: unused slices between a held-out slab and any other split.
        layout: ``"alternate"`` (val and test slabs at different levels) or ``"paired"`` (a val slab beside each
            test slab), see :func:`brain_slab_split`.

    Returns:
        List of dictionaries ordered from inferior to superior, each with ``"image"`` (float32
        ``(1, H, W)`` in ``[0, 1]``), ``"label"`` (int64 ``(1, H, W)``, values 0..3, see
        :data:`BRAIN_CLASS_NAMES`) and ``"slice_index"`` (``int``, the axial index in the 1 mm
        template; MNI z in mm is ``slice_index - 71``).

    Raises:
        FileNotFoundError: if ``data_file`` (or the shipped file) does not exist; the message names it.
        ValueError: if ``split``, a fraction or the gap is invalid, or the file is malformed.

    Example:
        >>> train = load_brain_slices("train")
        >>> len(train), train[0]["image"].shape, train[0]["label"].dtype
        (43, (1, 64, 64), dtype('int64'))
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    arrays = _read_npz(data_file, DEFAULT_BRAIN_SLICES_FILE, ndim=3)
    n = arrays["image"].shape[0]
    slice_index = arrays.get("slice_index", np.arange(n))  # shape and dtype checked by _read_npz
    # "all" needs no split (a small custom file may hold too few slices for the slabs and gaps)
    keep = (np.ones(n, dtype=bool) if split == "all"
            else brain_slab_split(n, holdout_fraction, val_fraction, gap, layout=layout) == split)
    images = _to_unit_float(arrays["image"])
    labels = arrays["label"].astype(np.int64)
    return [
        {"image": images[i][None].copy(), "label": labels[i][None].copy(), "slice_index": int(slice_index[i])}
        for i in np.flatnonzero(keep)
    ]


def load_brain_volume(data_file: str | Path | None = None) -> dict[str, Any]:
    """Load the embedded 3D brain volume and its 4-class label map.

    The arrays are in RAS voxel order (axis 0 towards the patient's right, 1 anterior, 2 superior),
    as produced by MONAI's ``Orientation(axcodes="RAS")``; ``image[0, ::-1, ::-1, k].T`` is the
    radiological axial view of slice ``k``.

    Args:
        data_file: an ``.npz`` file with 3D ``image`` and ``label`` arrays (uint8 0..255 images) and
            optionally ``affine``; defaults to the shipped :data:`DEFAULT_BRAIN_VOLUME_FILE`.

    Returns:
        Dictionary with ``"image"`` (float32 ``(1, 64, 64, 64)`` in ``[0, 1]``), ``"label"`` (int64
        ``(1, 64, 64, 64)``, values 0..3) and ``"affine"`` (float64 ``(4, 4)`` voxel -> MNI mm, the
        identity when the file has none).

    Raises:
        FileNotFoundError: if the file does not exist; the message names it.
        ValueError: if the file is malformed.

    Example:
        >>> vol = load_brain_volume()
        >>> vol["image"].shape
        (1, 64, 64, 64)
    """
    arrays = _read_npz(data_file, DEFAULT_BRAIN_VOLUME_FILE, ndim=3)
    affine = np.asarray(arrays.get("affine", np.eye(4)), dtype=np.float64)  # checked by _read_npz
    return {
        "image": _to_unit_float(arrays["image"])[None],
        "label": arrays["label"].astype(np.int64)[None],
        "affine": affine,
    }


class BrainSliceDataset(Dataset):
    """MONAI ``Dataset`` over the embedded brain slices (see :func:`load_brain_slices`).

    Args:
        split: ``"all"``, ``"train"``, ``"val"`` or ``"test"`` (see :func:`load_brain_slices`).
        transform: optional callable (e.g. a MONAI ``Compose`` of dictionary transforms) applied to
            each item dictionary.
        data_file: optional ``.npz`` file replacing the shipped slices.
        holdout_fraction: fraction of slices in the ``"test"`` split.
        val_fraction: fraction of slices in the ``"val"`` split.
        gap: unused slices between a held-out slab and any other split.
        layout: ``"alternate"`` (val and test slabs at different levels) or ``"paired"`` (a val slab beside each
            test slab), see :func:`brain_slab_split`.

    Raises:
        FileNotFoundError: if the data file does not exist.
        ValueError: for an invalid split, fraction or file.

    Example:
        >>> ds = BrainSliceDataset(split="train")
        >>> sorted(ds[0])
        ['image', 'label', 'slice_index']
    """

    def __init__(
        self,
        split: str = "train",
        transform: Callable[..., Any] | Sequence[Callable[..., Any]] | None = None,
        data_file: str | Path | None = None,
        holdout_fraction: float = 0.25,
        val_fraction: float = 0.15,
        gap: int = 3,
    ) -> None:
        self.split = split
        super().__init__(
            data=load_brain_slices(split, holdout_fraction, data_file, val_fraction, gap),
            transform=transform,
        )


def synthetic_slices(
    num_samples: int,
    image_size: int = 64,
    num_seg_classes: int = 3,
    seed: int = 0,
    noise_max: float = 0.0,
) -> list[dict[str, Any]]:
    """Data-free image/label pairs (random discs) in the same format as :func:`load_brain_slices`.

    Built with ``monai.data.synthetic.create_test_image_2d`` from one ``numpy.random.RandomState(seed)``,
    so the same arguments always give the same samples.

    Args:
        num_samples: number of samples, ``>= 0``.
        image_size: edge length in pixels, ``>= 8``.
        num_seg_classes: number of foreground classes; labels take values ``0..num_seg_classes``
            (the default 3 gives 4 classes like the brain data).
        seed: random seed.
        noise_max: uniform noise amplitude passed to ``create_test_image_2d`` (0 = clean).

    Returns:
        List of dictionaries with ``"image"`` (float32 ``(1, S, S)`` rescaled to ``[0, 1]``),
        ``"label"`` (int64 ``(1, S, S)``) and ``"slice_index"`` (the sample's position).

    Raises:
        ValueError: for a negative ``num_samples``, ``image_size < 8``, ``num_seg_classes < 1`` or a
            negative ``noise_max``.

    Example:
        >>> items = synthetic_slices(2, image_size=32, seed=1)
        >>> items[0]["image"].shape, int(items[0]["label"].max()) <= 3
        ((1, 32, 32), True)
    """
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    if num_seg_classes < 1:
        raise ValueError(f"num_seg_classes must be >= 1, got {num_seg_classes}")
    if noise_max < 0:
        raise ValueError(f"noise_max must be >= 0, got {noise_max}")
    rs = np.random.RandomState(seed)
    rad_max = max(2, image_size // 5)
    rad_min = max(1, image_size // 16)
    items = []
    for i in range(num_samples):
        image, label = create_test_image_2d(
            image_size,
            image_size,
            num_objs=12,
            rad_max=rad_max,
            rad_min=rad_min,
            noise_max=noise_max,
            num_seg_classes=num_seg_classes,
            random_state=rs,
        )
        image = np.asarray(image, dtype=np.float32)
        lo, hi = float(image.min()), float(image.max())
        image = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
        items.append(
            {
                "image": np.clip(image, 0.0, 1.0).astype(np.float32)[None],
                "label": np.asarray(label, dtype=np.int64)[None],
                "slice_index": i,
            }
        )
    return items
