"""Labels for the unlabelled pool (the train slices outside the k): the k-trained segmenter's pseudo-labels
(self-training), label maps registered from the k slices, the two fused, and the guards and rankings that keep a
share of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from monai_gvae.benchmarks.segmentation import NUM_CLASSES
from monai_gvae.transforms import class_dice, fuse_label_maps, implausible_class_areas, propagate_label_map
from monai_gvae.utils import module_device

from .splits import _stack, _volume_of, _volume_slices

__all__ = ["pseudo_labelled_pool", "cotraining_pairs", "atlas_labelled_pool", "registered_synthesis_pairs",
           "area_guarded_pool",
           "fused_labelled_pool", "pseudo_label_quality"]


@torch.no_grad()
def _pool_logits(segmenter: torch.nn.Module, pool: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images (N, 1, S, S), logits (N, C, S, S))`` of the pool, in batches of 32."""
    segmenter.eval()
    images = _stack(pool, "image").float()
    device = module_device(segmenter)
    return images, torch.cat([segmenter(images[i:i + 32].to(device)).cpu() for i in range(0, len(images), 32)])


def _pseudo_labels(segmenter: torch.nn.Module, pool: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """``(images, argmax labels (N, 1, S, S), confidence per slice)`` of the pool (see :func:`pseudo_labelled_pool`)."""
    images, logits = _pool_logits(segmenter, pool)
    labels = logits.argmax(1, keepdim=True)  # from the logits: the labels of keep=1 stay those of earlier runs
    foreground = labels > 0
    top = logits.softmax(1).amax(1, keepdim=True)
    confidence = (top * foreground).flatten(1).sum(1) / foreground.flatten(1).sum(1).clamp(min=1)
    return images, labels, [float(c) for c in confidence]


def _most_confident(confidence: Sequence[float], keep: float) -> set[int]:
    if not 0 < keep <= 1:
        raise ValueError(f"keep (the share of the pool kept for pseudo-labels) must be in (0, 1], got {keep}.")
    return set(sorted(range(len(confidence)), key=lambda i: -confidence[i])[:max(1, round(keep * len(confidence)))])


def _best_fitting(pairs: Sequence[dict], keep: float) -> list[dict]:
    """The share ``keep`` of labelled pool pairs with the highest ``"fit"``, in their order."""
    kept = _most_confident([p["fit"] for p in pairs], keep)
    return [p for i, p in enumerate(pairs) if i in kept]


def pseudo_labelled_pool(segmenter: torch.nn.Module, pool: Sequence[dict], keep: float = 1.0) -> list[dict]:
    """The pool's images with the segmenter's predictions as labels (what self-training adds), optionally only the
    ones it is most confident about.

    The confidence of a slice is the mean softmax probability of the predicted class over the pixels predicted as
    foreground (0 where none is): the background around the head is trivially certain and would hide the slices
    whose anatomy the k slices did not show (e.g. the cerebellum of inferior slices, which a segmenter trained on
    few such slices labels in fragments).

    Args:
        segmenter: maps images ``(N, 1, S, S)`` to logits (the ``classical`` arm's UNet, trained on the k pairs).
        pool: the unlabelled items (their ``label``, if any, is not read).
        keep: share of the pool kept, most confident first, in (0, 1]; 1 keeps every slice (at least one is kept).

    Returns:
        ``[{"image": the pool image, "label": argmax prediction (1, S, S) int64, "slice_index", "pseudo_label": True}]``
        for the kept slices, in the pool's order.

    Raises:
        ValueError: ``keep`` outside (0, 1].

    Example::

        pairs = pseudo_labelled_pool(unet, pool, keep=0.5)  # the confident half of the pool, pseudo-labelled
    """
    images, labels, confidence = _pseudo_labels(segmenter, pool)
    kept = _most_confident(confidence, keep)
    return [{"image": image, "label": label.long(), "slice_index": item.get("slice_index"), "pseudo_label": True}
            for i, (image, label, item) in enumerate(zip(images, labels, pool)) if i in kept]


def cotraining_pairs(items: Sequence[dict], pseudo: Sequence[dict]) -> list[dict]:
    """The training set of a co-trained conditional GVAE (:data:`COTRAINED_ARMS`): the k labelled pairs, repeated so
    that they make about half of it, and the pool's pseudo-labelled pairs.

    Why half: the k pairs are the only image-label correspondences known to be right; the pool's pairs bring the
    anatomy of the levels the k slices do not show, with the segmenter's labels (wrong where it is wrong).

    Args:
        items: the k labelled pairs.
        pseudo: :func:`pseudo_labelled_pool`'s pairs (the pool's images with their pseudo-labels).

    Returns:
        ``items`` repeated ``max(1, round(len(pseudo) / len(items)))`` times, then ``pseudo``, each as
        ``{"image", "label", "pseudo_label": bool}`` (one set of keys, so that batches of both collate).

    Raises:
        ValueError: no labelled pairs, or no pseudo-labelled pairs.

    Example::

        data = cotraining_pairs(k_items, pseudo_labelled_pool(unet, pool))  # 5 items x 8 + 41 pool pairs
    """
    if not items or not pseudo:
        raise ValueError(f"co-training needs labelled and pseudo-labelled pairs, got {len(items)} and {len(pseudo)}.")
    repeats = max(1, round(len(pseudo) / len(items)))
    real = [{"image": i["image"], "label": i["label"], "pseudo_label": False} for i in items]
    return real * repeats + [{"image": p["image"], "label": p["label"], "pseudo_label": True} for p in pseudo]


def atlas_labelled_pool(
    items: Sequence[dict], pool: Sequence[dict], keep: float = 1.0, demons_iterations: int = 100,
    per_volume: bool = False,
) -> list[dict]:
    """The pool's images with label maps registered from the k labelled slices (what the :data:`ATLAS_ARMS` add).

    Every labelled slice is registered to each pool image (affine, then demons) and the label map of the one whose
    warped image correlates best with the pool image is kept (:func:`~monai_gvae.transforms.propagate_label_map`).
    Why: the pool's value lies in the slices the k-trained segmenter labels worst (with the pool's true labels the
    self-training control gains about +7 Dice points at k = 5 and 10 on validation, with the segmenter's about +1 to
    +3; docs/fewlabels.md section 6), the levels the k slices barely show; a registered map copies the nearest
    labelled anatomy and only deforms it. The ranking for ``keep`` is that correlation.

    Args:
        items: the k labelled pairs (the atlases).
        pool: the unlabelled items (their ``label``, if any, is not read).
        keep: share of the pool kept, best-fitting first, in (0, 1]; 1 keeps every slice.
        demons_iterations: iterations of the demons field (:func:`~monai_gvae.transforms.register_label_map`).
        per_volume: the labelled items are whole volumes (k labelled scans): each pool slice is registered from one
            slice per labelled volume, the one at the nearest relative level (position between its volume's first
            and last slice), not from every labelled slice (k x hundreds of registrations per pool slice, most of
            them of other anatomy).

    Returns:
        ``[{"image", "label" (1, S, S) int64, "slice_index", "pseudo_label": True, "fit": correlation, "atlas_image":
        the best atlas's image warped onto the pool image}]`` for the kept slices, in the pool's order.

    Raises:
        ValueError: ``keep`` outside (0, 1], no labelled items, or images of other shapes than the atlases'.

    Example::

        pairs = atlas_labelled_pool(k_items, pool)  # every pool image with its best atlas's registered labels
    """
    labelled = [{"image": torch.as_tensor(i["image"]).float(), "label": torch.as_tensor(i["label"])} for i in items]
    images = [torch.as_tensor(p["image"]).float() for p in pool]
    if per_volume:
        atlases = _nearest_level_atlases(items, pool, labelled)
    else:
        atlases = [labelled] * len(pool)
    maps = [propagate_label_map(image, candidates, demons_iterations, return_image=True)
            for image, candidates in zip(images, atlases)]
    return _best_fitting([{"image": image, "label": label, "slice_index": p.get("slice_index"), "pseudo_label": True,
                           "fit": fit, "atlas_image": warped}
                          for p, image, (label, fit, warped) in zip(pool, images, maps)], keep)


def registered_synthesis_pairs(registered: Sequence[dict]) -> list[dict]:
    """The registered pool's exact pairs: each pool slice's best atlas image warped onto it, with the atlas's label
    map warped by the same transform (what ``atlas_synth`` adds; registered synthesis, the spatial part of Zhao et al.
    2019, "Data augmentation using learned transformations for one-shot medical image segmentation").

    Why: a pool image with a registered label (``selftrain_atlas``) is real texture with a label that is wrong where
    the registration is; a GVAE render of that label is an exact pair with blurred texture. The warped atlas is both
    exact (one transform moved image and label) and real-textured (deformed), with the pool slice's shape.

    Args:
        registered: :func:`atlas_labelled_pool`'s pairs (each with its ``"atlas_image"``), after any guard or keep.

    Returns:
        ``[{"image": the warped atlas image, "label", "slice_index", "pseudo_label": True, "fit"}]`` in their order.

    Raises:
        KeyError: pairs without ``"atlas_image"`` (not made by :func:`atlas_labelled_pool`).

    Example::

        pairs = registered_synthesis_pairs(atlas_labelled_pool(k_items, pool))
    """
    return [{"image": p["atlas_image"], "label": p["label"], "slice_index": p.get("slice_index"), "pseudo_label": True,
             "fit": p["fit"]} for p in registered]


def _relative_levels(items: Sequence[dict]) -> list[float]:
    """Each item's position between the first (0) and last (1) slice of its volume among ``items``."""
    levels = [float(i.get("level", i.get("slice_index", 0))) for i in items]
    extent: dict[str, tuple[float, float]] = {}
    for item, level in zip(items, levels):
        low, high = extent.get(_volume_of(item), (level, level))
        extent[_volume_of(item)] = (min(low, level), max(high, level))
    return [(level - extent[_volume_of(i)][0]) / max(extent[_volume_of(i)][1] - extent[_volume_of(i)][0], 1.0)
            for i, level in zip(items, levels)]


def _nearest_level_atlases(items: Sequence[dict], pool: Sequence[dict], labelled: Sequence[dict]) -> list[list[dict]]:
    """For each pool slice, one of ``labelled`` per labelled volume: the one nearest in relative level."""
    item_levels, pool_levels = _relative_levels(items), _relative_levels(pool)
    volumes = _volume_slices(items)
    return [[labelled[min(members, key=lambda m: abs(item_levels[m] - level))] for members in volumes.values()]
            for level in pool_levels]


def area_guarded_pool(registered: Sequence[dict], pool: Sequence[dict], num_classes: int = NUM_CLASSES) -> list[dict]:
    """The registered pool without the slices whose map holds a class area out of line with its neighbours' maps
    (:func:`~monai_gvae.transforms.implausible_class_areas` with its defaults: the median over at least 3 pool slices
    within 3 levels, a tolerance of ``max(0.75 x median, 100 px)``): what ``--area-guard`` gives the :data:`ATLAS_ARMS`.

    Why: registration failed on the pool of one test draw (seed 5, k = 10) by dropping the cerebellum from two slices
    whose neighbours show it, and training on those maps lost 31 cerebellum Dice points; ranking the slices by their
    registration's fit (``--pseudo-keep``) also drops hard slices whose maps are right (docs/fewlabels.md section 6,
    "What went wrong on test seed 5"). The anatomy's continuity along the axis judges a map by what it claims.
    The constants were fixed from that one train-split diagnostic before any benchmark run with the guard.

    Args:
        registered: :func:`atlas_labelled_pool`'s pairs, in ``pool``'s order.
        pool: the pool items they label: with ``volume`` and ``level`` (``--data-dir``:
            :func:`~monai_gvae.data.load_labelled_slices`), slices are neighbours within one volume by their level
            (2D slice files, each its own volume unless grouped by subject, are never judged); without them, one
            volume, levels ``slice_index``.
        num_classes: classes, background included.

    Returns:
        the pairs of ``registered`` whose maps are plausible, in their order.

    Raises:
        ValueError: ``registered`` and ``pool`` of different lengths, or as
            :func:`~monai_gvae.transforms.implausible_class_areas`.

    Example::

        pairs = area_guarded_pool(atlas_labelled_pool(k_items, pool), pool)
    """
    if len(registered) != len(pool):
        raise ValueError(f"the registered pool ({len(registered)} pairs) must label the whole pool "
                         f"({len(pool)} items).")
    if not registered:
        return []
    # --data-dir items name their volume and level (slice_index counts the kept slices of all volumes); the
    # embedded slices are one volume, slice_index their level
    flags = implausible_class_areas([p["label"] for p in registered],
                                    [int(p.get("level", p["slice_index"])) for p in pool], num_classes,
                                    [_volume_of(p) for p in pool])
    return [p for p, implausible in zip(registered, flags) if not implausible]


def fused_labelled_pool(
    segmenter: torch.nn.Module,
    registered: Sequence[dict],
    keep: float = 1.0,
    atlas_weight: float = 0.5,
    num_classes: int = NUM_CLASSES,
) -> list[dict]:
    """The pool's images with the segmenter's probabilities and their registered label maps fused per pixel (what
    the :data:`FUSED_ARMS` add): :func:`~monai_gvae.transforms.fuse_label_maps`.

    Why: neither pool labeller is better everywhere. On the draws of the validation seeds (a train-split diagnostic)
    the registered maps labelled the pool better at k = 5 and the segmenter on some k = 10 draws, and on one test
    draw (k = 10, seed 5) training on the registered maps lost 31 Dice points in the cerebellum against classical
    augmentation (docs/fewlabels.md section 6, "Pool labels by registration"). The fusion keeps the segmenter's class
    where it is sure and the registered class where it is not. The ranking for ``keep`` is the two labellers'
    agreement on the slice (the mean foreground Dice between the segmenter's argmax and the registered map): a slice
    both label alike is more likely labelled right. Measured (validation, 10 seeds, weight 0.5): the fused labels
    trained as the segmenter's did (+0.3 / -0.0 Dice points against self-training at k = 5 / 10) and 2.2 points
    below the registered maps at k = 10: a UNet trained on a few slices is sure of its classes nearly everywhere,
    wrong ones included, so its softmax leaves registration few pixels (docs/fewlabels.md section 6, "Fused pool
    labels").

    Args:
        segmenter: maps images ``(N, 1, S, S)`` to logits (the ``classical`` arm's UNet, trained on the k pairs).
        registered: :func:`atlas_labelled_pool`'s pairs of the pool (every slice: ``keep=1``).
        keep: share of the pool kept, most agreed first, in (0, 1]; 1 keeps every slice.
        atlas_weight: the probability margin the registered class is given (0: the segmenter's argmax).
        num_classes: classes, background included (the agreement's Dice).

    Returns:
        ``[{"image", "label" (1, S, S) int64, "slice_index", "pseudo_label": True, "fit": agreement}]`` for the kept
        slices, in ``registered``'s order.

    Raises:
        ValueError: ``keep`` outside (0, 1], no registered pairs, or as :func:`~monai_gvae.transforms.fuse_label_maps`.

    Example::

        registered = atlas_labelled_pool(k_items, pool)
        pairs = fused_labelled_pool(unet, registered)  # the segmenter where it is sure, the registration elsewhere
    """
    if not registered:
        raise ValueError("fused pool labels need the registered pool (atlas_labelled_pool's pairs), got none.")
    images, logits = _pool_logits(segmenter, registered)
    probabilities = logits.softmax(1)
    atlas = torch.stack([torch.as_tensor(p["label"]).long() for p in registered])
    fused = [fuse_label_maps(prob, label, atlas_weight) for prob, label in zip(probabilities, atlas)]
    # agreement of the two labellers per slice: mean foreground Dice over the classes either holds (1: none holds any)
    agreement = class_dice(logits.argmax(1, keepdim=True), atlas, num_classes).nanmean(1).nan_to_num(1.0).tolist()
    return _best_fitting([{"image": image, "label": label, "slice_index": p.get("slice_index"), "pseudo_label": True,
                           "fit": fit} for p, image, label, fit in zip(registered, images, fused, agreement)], keep)


def pseudo_label_quality(
    segmenter: torch.nn.Module, pool: Sequence[dict], keep: float, num_classes: int
) -> list[dict[str, Any]]:
    """A diagnostic that reads the pool's hidden labels (never use it to choose a setting): per pool slice, the
    confidence :func:`pseudo_labelled_pool` ranks by, whether ``keep`` keeps it, and the Dice of its pseudo-label.

    Args:
        segmenter: as in :func:`pseudo_labelled_pool`.
        pool: items with their true ``label`` (index map ``(1, S, S)``).
        keep: as in :func:`pseudo_labelled_pool`.
        num_classes: label classes, background included.

    Returns:
        One dict per slice, in the pool's order: ``slice_index``, ``confidence``, ``kept``, ``dice`` (mean over the
        foreground classes present in the true label; NaN where none is) and ``pixels`` (true pixels per foreground
        class).
    """
    _, labels, confidence = _pseudo_labels(segmenter, pool)
    kept = _most_confident(confidence, keep)
    rows = []
    for i, (item, predicted) in enumerate(zip(pool, labels)):
        truth = torch.as_tensor(item["label"]).reshape(predicted.shape)
        dice = class_dice(predicted[None], truth[None], num_classes, min_pixels=1)[0]  # the classes truth holds
        dice = dice[~dice.isnan()]
        rows.append({"slice_index": item.get("slice_index"), "confidence": confidence[i], "kept": i in kept,
                     "dice": float(dice.mean()) if len(dice) else float("nan"),
                     "pixels": [int((truth == c).sum()) for c in range(1, num_classes)]})
    return rows
