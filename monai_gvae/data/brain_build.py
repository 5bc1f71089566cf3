"""Build the embedded brain MRI data set from the Debian ``mricron-data`` templates (``examples/build_brain_data.py``
is the command line).

The package ships two small arrays derived from the MRIcron templates (Debian package
``mricron-data``):

* ``brain2d_64.npz`` -- axial slices of the brain-extracted Colin27 T1 (``ch2bet.nii.gz``) with a
  4-class label map merged from the AAL atlas (``aal.nii.gz``), 64x64 pixels each.
* ``brain3d_64.npz`` -- the whole brain volume and label map resampled to 64x64x64.

The build is deterministic: running it again on the same input files reproduces the shipped
arrays bit for bit (``tests/test_data_brain.py`` checks this when the templates are installed).

Processing
----------
1. ``ch2bet`` and ``aal`` are read with nibabel and reoriented to RAS voxel order (both are on the
   same 181x217x181, 1 mm MNI grid; if the grids ever differ the atlas is resampled onto the
   image grid with nearest neighbour).
2. The brain mask is ``ch2bet > 0``. Atlas labels outside the mask are set to background so that
   image and label agree.
3. Intensities are normalised to [0, 1] with the 0.5 / 99.5 percentiles of the brain voxels and
   clipped; after resampling they are stored as ``uint8`` 0..255 (background is exactly 0).
4. The 116 AAL regions are merged into 4 classes (see ``CLASS_GROUPS`` below):
   0 background (everything unlabelled, i.e. white matter, CSF, outside the brain),
   1 cortex (all AAL cerebral cortical regions, incl. insula, cingulate, parahippocampal and
   olfactory cortex), 2 deep grey matter (caudate, putamen, pallidum, thalamus, hippocampus,
   amygdala), 3 cerebellum (hemispheres and vermis).
5. Downsampling uses exact area averaging (separable overlap weights). For the label map the
   one-hot channels are area-averaged and the arg-max taken (a majority vote per output pixel),
   which keeps thin structures better than nearest neighbour at a ~2.9x reduction.
6. 2D: a single square in-plane crop around the brain's bounding box (plus a small margin,
   zero-padded where it leaves the volume) is used for every slice. Axial slices whose brain
   coverage of that square exceeds ``--min-coverage`` are kept, every ``--slice-step``-th of them.
   Slices are oriented as radiological axial views: anterior at the top, the patient's right on
   the image's left (``plt.imshow(image)`` shows the usual picture). ``slice_index`` is the axial
   voxel index in the 1 mm template (MNI z in mm = ``slice_index - 71``).
7. 3D: a cube around the 3D brain bounding box (plus margin) is resampled to 64^3 and kept in RAS
   voxel order (MONAI's ``Orientation("RAS")`` convention); ``affine`` maps the 64^3 voxels to MNI
   mm. ``image[::-1, ::-1, k].T`` gives the radiological view of axial slice ``k``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from monai_gvae.data.brain import BRAIN_CLASS_NAMES

__all__ = [
    "CLASS_GROUPS",
    "DEFAULT_OUT",
    "TEMPLATE_FILES",
    "read_aal_names",
    "check_class_groups",
    "load_templates",
    "merge_labels",
    "area_weights",
    "area_resize",
    "label_resize",
    "build",
    "write_arrays",
]

CLASS_NAMES = BRAIN_CLASS_NAMES

# AAL (116-region version shipped with MRIcron, aal.nii.txt) index -> merged class.
_DEEP_GREY = (37, 38, 41, 42, 71, 72, 73, 74, 75, 76, 77, 78)  # hippocampus, amygdala, basal ganglia, thalamus
_CORTEX = tuple(i for i in range(1, 91) if i not in _DEEP_GREY)  # 1-70 and 79-90 minus the above
_CEREBELLUM = tuple(range(91, 117))  # cerebellar hemispheres 91-108, vermis 109-116
CLASS_GROUPS = {1: _CORTEX, 2: _DEEP_GREY, 3: _CEREBELLUM}

# name prefixes expected for each class in aal.nii.txt; used to check the label file has not changed
_EXPECTED_PREFIXES = {
    2: ("Hippocampus", "Amygdala", "Caudate", "Putamen", "Pallidum", "Thalamus"),
    3: ("Cerebelum", "Vermis"),
}

IMAGE_FILE = "ch2bet.nii.gz"
ATLAS_FILE = "aal.nii.gz"
ATLAS_NAMES_FILE = "aal.nii.txt"
TEMPLATE_FILES = (IMAGE_FILE, ATLAS_FILE, ATLAS_NAMES_FILE)
DEFAULT_OUT = Path(__file__).resolve().parent / "resources"
"""The package's resources folder, where the shipped arrays live."""
SOURCE = (
    "Debian package mricron-data: templates/ch2bet.nii.gz (Colin27 brain-extracted T1, 1 mm MNI) and "
    "templates/aal.nii.gz (AAL atlas); see BRAIN_DATA_NOTICE.txt"
)


def read_aal_names(path: Path) -> dict[int, str]:
    """Read ``aal.nii.txt`` (lines ``index name code``) into ``{index: name}``."""
    names = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            names[int(parts[0])] = parts[1]
    return names


def check_class_groups(names: dict[int, str]) -> None:
    """Fail loudly if the AAL index -> name table does not match the grouping above."""
    if sorted(names) != list(range(1, 117)):
        raise ValueError(f"expected AAL indices 1..116, got {len(names)} entries")
    for cls, prefixes in _EXPECTED_PREFIXES.items():
        for idx in CLASS_GROUPS[cls]:
            if not names[idx].startswith(prefixes):
                raise ValueError(f"AAL region {idx} ({names[idx]}) not expected in class {CLASS_NAMES[cls]}")
    for idx in CLASS_GROUPS[1]:
        if names[idx].startswith(_EXPECTED_PREFIXES[2] + _EXPECTED_PREFIXES[3]):
            raise ValueError(f"AAL region {idx} ({names[idx]}) is not cortical")


def load_templates(templates_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load image and atlas in RAS voxel order on the image grid.

    Returns:
        ``(image float64, atlas int16, affine)`` where ``affine`` is the RAS voxel->mm affine.
    """
    import nibabel as nib
    from nibabel.processing import resample_from_to

    img = nib.as_closest_canonical(nib.load(str(templates_dir / IMAGE_FILE)))
    atl = nib.as_closest_canonical(nib.load(str(templates_dir / ATLAS_FILE)))
    if atl.shape != img.shape or not np.allclose(atl.affine, img.affine):
        atl = resample_from_to(atl, img, order=0)  # nearest neighbour for labels
    image = np.asarray(img.dataobj, dtype=np.float64)
    atlas = np.rint(np.asarray(atl.dataobj, dtype=np.float64)).astype(np.int16)
    return image, atlas, np.asarray(img.affine, dtype=np.float64)


def merge_labels(atlas: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Map AAL indices to the 4 merged classes; voxels outside ``brain`` become background."""
    lut = np.zeros(max(int(atlas.max()), 116) + 1, dtype=np.uint8)
    for cls, idxs in CLASS_GROUPS.items():
        lut[list(idxs)] = cls
    out = lut[np.clip(atlas, 0, None)]
    out[~brain] = 0
    return out


def square_window(lo: int, hi: int, side: int) -> tuple[int, int]:
    """Window ``[start, start + side)`` centred on ``[lo, hi)`` (may extend outside the array)."""
    start = (lo + hi - side) // 2
    return start, start + side


def crop_pad(arr: np.ndarray, windows: list[tuple[int, int]]) -> np.ndarray:
    """Crop ``arr`` to the given per-axis windows, zero-padding parts outside the array."""
    pads, slices = [], []
    for (a, b), n in zip(windows, arr.shape):
        pads.append((max(0, -a), max(0, b - n)))
        slices.append(slice(max(0, a), min(n, b)))
    return np.pad(arr[tuple(slices)], pads)


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix averaging input cells by their exact overlap with each output cell."""
    edges_in = np.arange(n_in + 1, dtype=np.float64)
    edges_out = np.linspace(0.0, n_in, n_out + 1)
    lo = np.maximum(edges_out[:-1, None], edges_in[None, :-1])
    hi = np.minimum(edges_out[1:, None], edges_in[None, 1:])
    w = np.clip(hi - lo, 0.0, None)
    return w / w.sum(axis=1, keepdims=True)


def area_resize(arr: np.ndarray, out_shape: tuple[int, ...], axes: tuple[int, ...]) -> np.ndarray:
    """Area-average ``arr`` along ``axes`` to the sizes in ``out_shape``."""
    out = np.asarray(arr, dtype=np.float64)
    for ax, n in zip(axes, out_shape):
        w = area_weights(out.shape[ax], n)
        out = np.moveaxis(np.tensordot(w, np.moveaxis(out, ax, 0), axes=(1, 0)), 0, ax)
    return out


def label_resize(label: np.ndarray, out_shape: tuple[int, ...], axes: tuple[int, ...]) -> np.ndarray:
    """Majority-vote resize: area-average each class's one-hot map, then arg-max (ties -> lower class)."""
    votes = np.stack([area_resize(label == c, out_shape, axes) for c in range(len(CLASS_NAMES))])
    return np.argmax(np.round(votes, 9), axis=0).astype(np.uint8)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 0..255 (rounded)."""
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def radiological(x: np.ndarray) -> np.ndarray:
    """RAS (x, y, ...) in-plane array -> radiological view (rows: anterior->posterior, cols: right->left)."""
    return np.swapaxes(x[::-1, ::-1], 0, 1)


def build(
    templates_dir: Path,
    size: int = 64,
    min_coverage: float = 0.12,
    slice_step: int = 1,
    margin: int = 2,
    percentiles: tuple[float, float] = (0.5, 99.5),
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Compute the 2D and 3D arrays (see the module docstring)."""
    check_class_groups(read_aal_names(templates_dir / ATLAS_NAMES_FILE))
    image, atlas, affine = load_templates(templates_dir)
    brain = image > 0
    label = merge_labels(atlas, brain)
    lo, hi = np.percentile(image[brain], percentiles)
    norm = np.clip((image - lo) / (hi - lo), 0.0, 1.0)
    norm[~brain] = 0.0

    coords = np.argwhere(brain)
    bb_lo, bb_hi = coords.min(axis=0), coords.max(axis=0) + 1
    names = np.array(CLASS_NAMES)
    meta = {
        "class_names": names,
        "source": np.array(SOURCE),
        "intensity_percentiles": np.array([lo, hi], dtype=np.float64),
    }

    # ---- 2D axial slices
    side2 = int((bb_hi[:2] - bb_lo[:2]).max()) + 2 * margin
    win2 = [square_window(int(bb_lo[a]), int(bb_hi[a]), side2) for a in range(2)]
    coverage = crop_pad(brain, win2 + [(0, brain.shape[2])]).sum(axis=(0, 1)) / float(side2 * side2)
    candidates = np.flatnonzero(coverage > min_coverage)
    keep = candidates[::slice_step]
    images, labels = [], []
    for z in keep:
        sl = (slice(None), slice(None), int(z))
        img2 = area_resize(crop_pad(norm[sl], win2), (size, size), (0, 1))
        lab2 = label_resize(crop_pad(label[sl], win2), (size, size), (0, 1))
        images.append(radiological(to_uint8(img2)))
        labels.append(radiological(lab2))
    data2d = {
        "image": np.ascontiguousarray(np.stack(images)),
        "label": np.ascontiguousarray(np.stack(labels)),
        "slice_index": keep.astype(np.int64),
        "pixel_spacing_mm": np.array(side2 / size, dtype=np.float64),
        "crop_window_ras": np.array(win2, dtype=np.int64),
        **meta,
    }

    # ---- 3D volume (RAS voxel order)
    side3 = int((bb_hi - bb_lo).max()) + 2 * margin
    win3 = [square_window(int(bb_lo[a]), int(bb_hi[a]), side3) for a in range(3)]
    axes3 = (0, 1, 2)
    img3 = to_uint8(area_resize(crop_pad(norm, win3), (size,) * 3, axes3))
    lab3 = label_resize(crop_pad(label, win3), (size,) * 3, axes3)
    scale = side3 / size
    start = np.array([w[0] for w in win3], dtype=np.float64)
    # centre of output voxel i lies at input voxel coordinate start + (i + 0.5) * scale - 0.5
    vox = np.diag([scale, scale, scale, 1.0])
    vox[:3, 3] = start + 0.5 * scale - 0.5
    data3d = {
        "image": img3,
        "label": lab3,
        "affine": affine @ vox,
        "voxel_spacing_mm": np.array(scale, dtype=np.float64),
        "crop_window_ras": np.array(win3, dtype=np.int64),
        **meta,
    }
    return data2d, data3d


def write_arrays(
    templates_dir: Path, out: Path, size: int = 64, min_coverage: float = 0.12, slice_step: int = 1, margin: int = 2
) -> list[str]:
    """:func:`build` the arrays and write ``brain2d_<size>.npz`` and ``brain3d_<size>.npz`` into ``out``.

    Returns:
        one summary line per file (path, shape, size and class fractions).

    Raises:
        FileNotFoundError: a template file is missing (install the Debian package ``mricron-data``).
    """
    missing = [str(templates_dir / f) for f in TEMPLATE_FILES if not (templates_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} not found (install the Debian package mricron-data)")
    data2d, data3d = build(templates_dir, size, min_coverage, slice_step, margin)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, data in ((f"brain2d_{size}.npz", data2d), (f"brain3d_{size}.npz", data3d)):
        path = out / name
        np.savez_compressed(path, **data)
        fractions = np.bincount(data["label"].ravel(), minlength=len(CLASS_NAMES)) / data["label"].size
        frac = ", ".join(f"{n}={f:.3f}" for n, f in zip(CLASS_NAMES, fractions))
        lines.append(f"{path}: image {data['image'].shape}, {path.stat().st_size / 1024:.1f} KiB; {frac}")
    return lines
