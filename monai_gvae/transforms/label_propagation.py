"""Label maps for unlabelled images by registration: the classical few-label segmentation (atlas propagation).

With a handful of labelled images and a pool of unlabelled ones of the same anatomy, each labelled image can be
registered to a pool image and its label map warped along: the pool image gets a label map whose shapes follow its
own anatomy. A segmenter trained on the few labelled images labels the levels they do not show poorly (e.g. the
cerebellum of inferior brain slices when one of five labelled slices shows it); registration copies the nearest
labelled anatomy and only has to deform it, so it degrades more gracefully there. The few-label benchmark uses these
maps as the pool's labels (arms ``selftrain_atlas`` and ``cond_pseudo_atlas``), both for a self-training control and
for the label maps a conditional GVAE renders (docs/fewlabels.md, "Pool labels by registration").

Registration is SimpleITK's: an affine transform fitted by mean squares (the images share a modality), then a
fast symmetric-forces demons displacement field; labels are resampled by nearest neighbour. Both run on one
thread: a multi-threaded metric sums in an order that depends on the thread count, and the few-label benchmark
promises the same figures to the last digit for the same command (the images are small; one thread costs little).

:func:`fuse_label_maps` guards a registered map with a segmenter's probabilities: neither labeller is better
everywhere (on the embedded slices registration labels the pool better at k = 5 and on the levels the k slices
barely show, the k-trained segmenter better on some k = 10 draws, and a registration can fail on one image where the
segmenter does not), so each pixel keeps the segmenter's class where it is sure and the registered class elsewhere.

:func:`implausible_class_areas` guards registered maps by the anatomy's continuity instead: along a volume's axis a
structure's area changes little from one slice to the next, so a map in which a class holds far fewer (or more) pixels
than in the maps of the neighbouring slices lost (or invented) that structure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.utils import optional_import

from .label_maps import _check_label

# a dependency of the package, imported when first used: the package (the training engine, the bundles) imports
# where SimpleITK is not installed (a GPU machine's own Python), and registration then names the missing module
sitk, _ = optional_import("SimpleITK")

__all__ = ["register_label_map", "propagate_label_map", "fuse_label_maps", "implausible_class_areas"]


def _channel_first(x: torch.Tensor | np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(torch.as_tensor(x).detach().cpu(), dtype=np.float32)
    if array.ndim not in (3, 4) or array.shape[0] != 1:
        raise ValueError(f"{what} must be channel-first with one channel, (1, H, W) or (1, D, H, W), got "
                         f"{tuple(array.shape)}.")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} holds NaN or infinite values.")
    return array[0]


def _sitk(array: np.ndarray) -> sitk.Image:
    return sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))


def register_label_map(
    image: torch.Tensor,
    atlas_image: torch.Tensor,
    atlas_label: torch.Tensor,
    demons_iterations: int = 100,
    demons_smoothing: float = 1.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Register ``atlas_image`` to ``image`` (affine, then demons) and carry ``atlas_label`` along.

    Args:
        image: the fixed image, ``(1, H, W)`` or ``(1, D, H, W)``.
        atlas_image: the moving (labelled) image, the same shape.
        atlas_label: its class-index map, the same shape.
        demons_iterations: iterations of the demons field (0: affine only).
        demons_smoothing: standard deviation, in pixels, of the Gaussian that regularises the demons field.

    Returns:
        ``(label, warped_image)``: the atlas label map in ``image``'s space (``int64``, ``(1, *spatial)``) and the
        atlas image warped the same way (``float32``), whose similarity to ``image`` says how well it fits.

    Raises:
        ValueError: shapes that are not channel-first single-channel 2D/3D, differ between the three inputs,
            values that are not finite, or an ``atlas_label`` that is not a map of class indices (integers >= 0).

    Example::

        label, warped = register_label_map(pool_image, labelled["image"], labelled["label"])
    """
    fixed_np = _channel_first(image, "image")
    moving_np = _channel_first(atlas_image, "atlas_image")
    label_np = _channel_first(atlas_label, "atlas_label")
    if not fixed_np.shape == moving_np.shape == label_np.shape:
        raise ValueError(f"image, atlas_image and atlas_label must have one shape, got {fixed_np.shape}, "
                         f"{moving_np.shape} and {label_np.shape}.")
    if (label_np != np.round(label_np)).any() or (label_np < 0).any():
        # nearest-neighbour resampling would round a soft or negative map into classes it never held
        raise ValueError("atlas_label must hold class indices (integers >= 0), got fractional or negative values.")
    fixed, moving, label = _sitk(fixed_np), _sitk(moving_np), _sitk(label_np)
    registration = sitk.ImageRegistrationMethod()
    registration.SetNumberOfThreads(1)
    registration.SetMetricAsMeanSquares()
    registration.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4, numberOfIterations=200)
    registration.SetOptimizerScalesFromPhysicalShift()
    start = sitk.CenteredTransformInitializer(fixed, moving, sitk.AffineTransform(fixed.GetDimension()),
                                              sitk.CenteredTransformInitializerFilter.MOMENTS)
    registration.SetInitialTransform(start, inPlace=False)
    registration.SetInterpolator(sitk.sitkLinear)
    registration.SetShrinkFactorsPerLevel([2, 1])
    registration.SetSmoothingSigmasPerLevel([1, 0])
    affine = registration.Execute(fixed, moving)
    moved = sitk.Resample(moving, fixed, affine, sitk.sitkLinear, 0.0)
    moved_label = sitk.Resample(label, fixed, affine, sitk.sitkNearestNeighbor, 0.0)
    if demons_iterations > 0:
        demons = sitk.FastSymmetricForcesDemonsRegistrationFilter()
        demons.SetNumberOfThreads(1)
        demons.SetNumberOfIterations(int(demons_iterations))
        demons.SetStandardDeviations(float(demons_smoothing))
        field = demons.Execute(fixed, moved)
        warp = sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))
        moved = sitk.Resample(moved, fixed, warp, sitk.sitkLinear, 0.0)
        moved_label = sitk.Resample(moved_label, fixed, warp, sitk.sitkNearestNeighbor, 0.0)
    warped_label = torch.from_numpy(sitk.GetArrayFromImage(moved_label).round().astype(np.int64))[None]
    warped_image = torch.from_numpy(sitk.GetArrayFromImage(moved).astype(np.float32))[None]
    return warped_label, warped_image


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    denominator = float(a.norm() * b.norm())
    return float((a * b).sum()) / denominator if denominator > 0 else 0.0


def propagate_label_map(
    image: torch.Tensor,
    atlases: Sequence[dict],
    demons_iterations: int = 100,
    demons_smoothing: float = 1.5,
    return_image: bool = False,
) -> tuple[torch.Tensor, float] | tuple[torch.Tensor, float, torch.Tensor]:
    """A label map for ``image``: every labelled atlas registered to it, the label of the best fitting one kept.

    Why the best single atlas and not a vote: with a few labelled slices at different levels of the anatomy, most
    atlases show other structures than ``image`` and a vote of them outvotes the one nearest in level (on the
    embedded brain slices, k = 5, seed 101: majority vote of the 3 best 0.63 mean Dice on the pool, best atlas 0.87).

    Args:
        image: ``(1, H, W)`` or ``(1, D, H, W)``.
        atlases: the labelled items, ``{"image", "label"}`` of ``image``'s shape.
        demons_iterations, demons_smoothing: as :func:`register_label_map`.
        return_image: also return the best atlas's warped image: with the warped label it is an exact pair (one
            transform moved both) in ``image``'s shape, with the atlas's real texture (registered synthesis).

    Returns:
        ``(label, correlation)``: the best atlas's warped label map ``(1, *spatial)`` int64 and the Pearson
        correlation between its warped image and ``image`` (in [-1, 1]; the higher, the more the label is trusted);
        with ``return_image``, ``(label, correlation, warped_image)``.

    Raises:
        ValueError: no atlases, or as :func:`register_label_map`.

    Example::

        label, fit = propagate_label_map(pool_item["image"], labelled_items)
    """
    if not atlases:
        raise ValueError("label propagation needs at least one labelled atlas.")
    target = torch.as_tensor(image).float()
    best: tuple[torch.Tensor, float, torch.Tensor] | None = None
    for atlas in atlases:
        label, warped = register_label_map(target, atlas["image"], atlas["label"], demons_iterations, demons_smoothing)
        fit = _correlation(warped, target)
        if best is None or fit > best[1]:
            best = (label, fit, warped)
    return best if return_image else best[:2]


def fuse_label_maps(probabilities: torch.Tensor, label: torch.Tensor, atlas_weight: float = 0.5) -> torch.Tensor:
    """A segmenter's class probabilities and a registered label map fused per pixel:
    ``argmax(probabilities + atlas_weight * onehot(label))``.

    The registered class wins wherever the segmenter's top class beats it by less than ``atlas_weight`` in
    probability; where the segmenter is surer than that it keeps its own class. ``atlas_weight`` 0 gives the
    segmenter's argmax, 1 or more the registered map. Why a margin and not a vote: the two labellers fail in different
    places (a segmenter trained on a few slices is unsure on the levels they do not show, where registration copies
    the nearest labelled anatomy; a failed registration misplaces whole structures the segmenter finds with
    confidence), and the segmenter's probability says which of the two places a pixel is in, as far as it is
    calibrated: a segmenter trained on five or ten slices is sure of its classes nearly everywhere, wrong ones
    included, and then the fusion follows it (on the few-label benchmark at 0.5 it trained as the segmenter's labels
    did; docs/fewlabels.md section 6, "Fused pool labels").

    Args:
        probabilities: class probabilities ``(C, *spatial)`` (a softmax: values in [0, 1], summing to 1 over ``C``).
        label: the registered class-index map ``(1, *spatial)``, values in ``0..C-1``
            (e.g. :func:`propagate_label_map`'s).
        atlas_weight: the probability margin the registered class is given, >= 0.

    Returns:
        the fused class-index map ``(1, *spatial)``, ``int64``.

    Raises:
        ValueError: shapes that do not match, probabilities that are not finite, outside [0, 1] or do not sum to 1,
            label values that are not integers in ``0..C-1``, or a negative ``atlas_weight``.

    Example::

        label, fit = propagate_label_map(image, labelled_items)
        fused = fuse_label_maps(segmenter(image[None]).softmax(1)[0], label)
    """
    probabilities = torch.as_tensor(probabilities).detach().float()
    label = torch.as_tensor(label).detach()
    if atlas_weight < 0:
        raise ValueError(f"atlas_weight must be >= 0, got {atlas_weight}.")
    if probabilities.ndim not in (3, 4):
        raise ValueError(f"probabilities must be (C, H, W) or (C, D, H, W), got {tuple(probabilities.shape)}.")
    if label.shape != (1, *probabilities.shape[1:]):
        raise ValueError(f"label must be (1, *spatial) with the probabilities' spatial shape "
                         f"{tuple(probabilities.shape[1:])}, got {tuple(label.shape)}.")
    if not torch.isfinite(probabilities).all():
        raise ValueError("probabilities hold NaN or infinite values.")
    if probabilities.min() < 0 or probabilities.max() > 1 or not torch.allclose(
            probabilities.sum(0), torch.ones(()), atol=1e-3):
        raise ValueError("probabilities must lie in [0, 1] and sum to 1 over the class axis (a softmax, not logits).")
    label = _check_label(label, probabilities.shape[0], "label")
    onehot = torch.zeros_like(probabilities).scatter_(0, label, 1.0)
    return (probabilities + atlas_weight * onehot).argmax(0, keepdim=True)


def implausible_class_areas(
    labels: Sequence[torch.Tensor],
    levels: Sequence[int],
    num_classes: int,
    groups: Sequence[object] | None = None,
    window: int = 3,
    tolerance: float = 0.75,
    min_pixels: int = 100,
    min_neighbours: int = 3,
) -> list[bool]:
    """Which label maps of slices along an axis hold a class area out of line with their neighbours' maps.

    For every map and foreground class, the reference is the median pixel count of that class over the other maps of
    the same group (volume) whose level lies within ``window`` of this map's; the map is implausible if some class's
    count differs from its reference by more than ``max(tolerance * reference, min_pixels)``. A map with fewer than
    ``min_neighbours`` such neighbours is not judged: the median of two is their mean, which one failed neighbour
    drags as far as the failure itself. Why: a registration that fails on one slice drops or misplaces a whole structure
    (on the few-label benchmark's test seed 5 two pool slices' maps held 21 and 16 cerebellum pixels where the
    neighbouring slices' maps held 538 to 601; docs/fewlabels.md section 6), while anatomy changes little over a few
    millimetres; the median of several neighbours is not moved by one failed one. ``min_pixels`` keeps small
    structures, whose area varies more in relative terms, from being judged by their noise.

    Args:
        labels: class-index maps ``(1, *spatial)`` of one spatial shape, one per slice.
        levels: each slice's position along the axis (e.g. ``slice_index``), in slices.
        num_classes: classes, background included (class 0 is not judged).
        groups: each slice's volume (maps of different groups are never neighbours); ``None``: one volume.
        window: the largest level distance of a neighbour, > 0.
        tolerance: the relative departure from the neighbours' median allowed, > 0.
        min_pixels: the absolute departure always allowed, >= 0.
        min_neighbours: the fewest neighbours a map is judged by, >= 1.

    Returns:
        one flag per map, ``True`` where it is implausible.

    Raises:
        ValueError: lengths that differ, no maps, maps of different shapes, a ``window`` or ``tolerance`` <= 0, a
            negative ``min_pixels``, a ``min_neighbours`` < 1, or label values outside ``0..num_classes-1``.

    Example::

        flags = implausible_class_areas([p["label"] for p in registered], [p["slice_index"] for p in registered], 4)
        kept = [p for p, bad in zip(registered, flags) if not bad]
    """
    if not labels:
        raise ValueError("implausible_class_areas needs at least one label map.")
    groups = [None] * len(labels) if groups is None else list(groups)
    if not len(labels) == len(levels) == len(groups):
        raise ValueError(f"labels, levels and groups must have one length, got {len(labels)}, {len(levels)} and "
                         f"{len(groups)}.")
    if window <= 0 or tolerance <= 0 or min_pixels < 0 or min_neighbours < 1:
        raise ValueError(f"window and tolerance must be > 0, min_pixels >= 0 and min_neighbours >= 1, got {window}, "
                         f"{tolerance}, {min_pixels} and {min_neighbours}.")
    maps = [torch.as_tensor(label) for label in labels]
    if any(m.shape != maps[0].shape for m in maps):
        raise ValueError(f"label maps must share one shape, got {sorted({tuple(m.shape) for m in maps})}.")
    maps = [_check_label(m, num_classes, "labels") for m in maps]
    counts = np.stack([np.bincount(m.flatten().numpy(), minlength=num_classes)[1:] for m in maps]).astype(float)
    flags = []
    for i in range(len(maps)):
        near = [j for j in range(len(maps))
                if j != i and groups[j] == groups[i] and abs(int(levels[j]) - int(levels[i])) <= window]
        if len(near) < min_neighbours:
            flags.append(False)
            continue
        reference = np.median(counts[near], axis=0)
        allowed = np.maximum(tolerance * reference, min_pixels)
        flags.append(bool((np.abs(counts[i] - reference) > allowed).any()))
    return flags
