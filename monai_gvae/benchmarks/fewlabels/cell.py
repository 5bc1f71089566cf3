"""One (k, seed) cell of the few-label benchmark: every arm trained from the same k labelled slices and the
same initial weights, and scored (:func:`run_cell`)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.networks.nets import UNet

from monai_gvae.benchmarks.segmentation import dice_scores, intensity_randomisation, train_segmenter
from monai_gvae.data import BRAIN_CLASS_NAMES
from monai_gvae.networks import GVAE, GVAECritic

from .arms import (
    ARMS,
    ATLAS_ARMS,
    CONDITIONAL_ARMS,
    COTRAINED_ARMS,
    FUSED_ARMS,
    LABEL_MAP_SOURCES,
    POOL_ARMS,
    PSEUDO_LABEL_ARMS,
)
from .pool_labels import (
    _best_fitting,
    area_guarded_pool,
    atlas_labelled_pool,
    cotraining_pairs,
    fused_labelled_pool,
    pseudo_labelled_pool,
    registered_synthesis_pairs,
)
from .settings import SEG_REPEAT_SEED_STRIDE, FewLabelSettings
from .splits import labelled_and_pool
from .synthesis import (
    _train_conditional,
    conditional_synthesis,
    deformed_pairs,
    interpolated_pairs,
    joint_pool_synthesis,
    label_maps_for,
    save_pairs,
)

__all__ = ["run_cell"]


def run_cell(
    k: int,
    seed: int,
    train: Sequence[dict],
    evaluation: Sequence[dict] | None,
    arms: Sequence[str],
    settings: FewLabelSettings,
    pretrained: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = print,
    samples_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    class_names: Sequence[str] = tuple(BRAIN_CLASS_NAMES[1:]),
) -> list[dict]:
    """Every arm of one (k, seed) cell: the same k labelled slices, segmenters from the same initial weights.

    Args:
        k: labelled slices (or volumes, ``settings.k_unit``), drawn from ``train`` by
            :func:`labelled_and_pool`; the other train slices are the unlabelled pool of the :data:`PSEUDO_LABEL_ARMS`,
            :data:`ATLAS_ARMS` and :data:`FUSED_ARMS`.
        seed: the cell's seed.
        train: the train split.
        evaluation: the items scored (the val or test split); ``None``: the train slices outside the k.
        arms: among :data:`ARMS`; ``classical`` comes first (its segmenter pseudo-labels the pool, filters
            ``joint_pool``'s pairs, checks ``cond_pseudo_checked``'s renders and, with ``settings.seg_weight``,
            drives the conditional GVAEs).
        settings: the benchmark's settings.
        pretrained: :func:`pretrain`'s output, needed by the :data:`POOL_ARMS`.
        log: progress messages.
        samples_dir: where to write ``samples_k{k}_{arm}.png`` grids of the synthetic pairs (``None``: nowhere).
        overwrite: replace existing grids.
        class_names: names of the foreground classes (per-class Dice).

    Returns:
        one record per arm: ``k``, ``seed``, ``arm``, ``dice``, ``dice_<class>``, ``seg_seconds``,
        ``num_synthetic`` and the arm's extras (``gvae_seconds``, ``acceptance``, ``sigma``, ``sigma_table``).

    Raises:
        ValueError: an unknown arm, arms that need the classical segmenter without ``classical`` first,
            ``selftrain_cond`` with a synthetic share of 0.5 or more (it uses two), or a pool
            arm without ``pretrained``.
    """
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; choose from {ARMS}.")
    if pretrained is None and any(a in POOL_ARMS for a in arms):
        raise ValueError(f"the arms {[a for a in arms if a in POOL_ARMS]} need the pool pre-training (pretrained=).")
    needs_segmenter = [a for a in arms if a in PSEUDO_LABEL_ARMS + FUSED_ARMS + ("joint_pool",)
                       or (a in CONDITIONAL_ARMS and settings.seg_weight > 0)]
    if needs_segmenter and (not arms or arms[0] != "classical"):
        raise ValueError(f"the arms {needs_segmenter} use the classical arm's segmenter: put 'classical' first.")
    if "selftrain_cond" in arms and not 2 * settings.synthetic_fraction < 1:
        raise ValueError(f"selftrain_cond mixes two synthetic shares of {settings.synthetic_fraction}: their sum must "
                         "be below 1.")
    items, pool = labelled_and_pool(train, k, seed, settings.k_unit)  # the pool's labels are hidden: never read
    if evaluation is None:  # the train slices outside the k labelled ones
        evaluation = pool
    runs: list[dict] = []
    segmenter: UNet | None = None
    pseudo: list[dict] | None = None
    registered: list[dict] | None = None  # the whole pool labelled by registration, made once per cell
    atlas: list[dict] | None = None  # its kept share (ATLAS_ARMS)
    fused: list[dict] | None = None  # the segmenter and the registration fused (FUSED_ARMS)
    atlas_seconds = 0.0
    atlas_extra: dict[str, Any] = {}  # what --area-guard left out, recorded with the ATLAS_ARMS
    conditional_models: dict[str, tuple[GVAE, GVAECritic, float]] = {}
    rendered: dict[str, tuple[list[dict], float | None]] = {}

    def record(arm: str, synthetic: list[dict] | None, fraction: float | None = None, **extra: Any) -> None:
        nonlocal segmenter
        finetune = settings.finetune_iterations if settings.schedule == "finetune" and synthetic else 0
        fraction = settings.synthetic_fraction if fraction is None else fraction
        repeats, seconds = [], 0.0
        # repeat r trains from other initial weights and batches (the same in every arm): the mean over repeats damps
        # the segmenter's chaotic training, whose last-bit swings are as large as the spread across seeds
        for repeat in range(settings.seg_repeats):
            repeat_seed = seed + SEG_REPEAT_SEED_STRIDE * repeat
            net, repeat_seconds = train_segmenter(
                items, iterations=settings.seg_iterations, batch_size=settings.batch_size, seed=repeat_seed,
                synthetic=synthetic, synthetic_fraction=fraction, shuffle_seed=repeat_seed,
                num_classes=settings.num_classes, finetune_iterations=finetune,
                left_right_flip=settings.left_right_flip, lr_schedule=settings.seg_lr_schedule, device=settings.device,
                synthetic_transform=intensity_randomisation(settings.synthetic_intensity))
            if arm == "classical" and repeat == 0:
                segmenter = net  # the pool's labeller and the GVAEs' judge: the same with or without repeats
            repeats.append(dice_scores(net, evaluation, settings.num_classes, class_names))
            seconds += repeat_seconds
        scores = {key: float(np.nanmean([r[key] for r in repeats])) for key in repeats[0]}
        if settings.seg_repeats > 1:  # "repeat_dice", not "dice_...": keys "dice_<class>" are per-class scores
            extra = {**extra, "repeat_dice": [r["dice"] for r in repeats]}
        runs.append({"k": k, "seed": seed, "arm": arm, **scores, "seg_seconds": seconds,
                     "num_synthetic": len(synthetic) if synthetic else 0, **extra})
        log(f"k={k} seed={seed} {arm:11s} dice={scores['dice']:.4f} (seg {seconds:.0f} s) {extra}")
        if samples_dir is not None and synthetic:
            save_pairs(synthetic, os.path.join(samples_dir, f"samples_k{k}_{arm}.png"), overwrite, settings.num_classes)

    for arm in arms:
        if arm in PSEUDO_LABEL_ARMS and pseudo is None:
            pseudo = pseudo_labelled_pool(segmenter, pool, settings.pseudo_keep)
        if arm in ATLAS_ARMS + FUSED_ARMS and registered is None:
            started = time.perf_counter()
            registered = atlas_labelled_pool(items, pool, per_volume=settings.k_unit == "volume")
            atlas_seconds = round(time.perf_counter() - started, 1)
        if arm in ATLAS_ARMS and atlas is None:  # the same slices atlas_labelled_pool(items, pool, keep) returns
            guarded = area_guarded_pool(registered, pool, settings.num_classes) if settings.area_guard else registered
            atlas = _best_fitting(guarded, settings.pseudo_keep)
            if settings.area_guard:
                guarded_levels = {p["slice_index"] for p in guarded}
                atlas_extra["guard_left_out"] = [p["slice_index"] for p in registered
                                                 if p["slice_index"] not in guarded_levels]
        if arm in FUSED_ARMS and fused is None:
            fused = fused_labelled_pool(segmenter, registered, settings.pseudo_keep, settings.atlas_weight,
                                        settings.num_classes)
        if arm == "classical":
            record(arm, None)
        elif arm == "selftrain_atlas":
            record(arm, atlas, label_seconds=atlas_seconds, **atlas_extra)
        elif arm == "atlas_synth":
            record(arm, registered_synthesis_pairs(atlas), label_seconds=atlas_seconds, **atlas_extra)
        elif arm == "selftrain_fused":
            record(arm, fused, label_seconds=atlas_seconds)
        elif arm == "elastic":
            record(arm, deformed_pairs(items, settings.num_synthetic, seed * 1000, settings.left_right_flip))
        elif arm == "selftrain":
            record(arm, pseudo)
        elif arm == "interp":
            record(arm, interpolated_pairs(items, settings.num_synthetic, seed * 1000, settings.num_classes,
                                           settings.left_right_flip))
        elif arm in CONDITIONAL_ARMS:
            source = "pool" if arm in POOL_ARMS else "cotrained" if arm in COTRAINED_ARMS else "k"
            if source not in conditional_models:  # arms of one source share its GVAE (the same training)
                conditional_models[source] = _train_conditional(
                    cotraining_pairs(items, pseudo) if source == "cotrained" else items, source, pretrained,
                    settings, seed, segmenter)
            gvae, critic, seconds = conditional_models[source]
            # arms of one GVAE and label-map source render the same pairs, whichever of them comes first
            # (selftrain_cond: cond_pseudo's); cond_pseudo_post re-renders them from their posterior latents;
            # cond_pseudo_checked keeps the candidates that pass its per-class segmenter check
            posterior = arm == "cond_pseudo_post"
            checked = arm == "cond_pseudo_checked"
            maps = (source, LABEL_MAP_SOURCES[arm], posterior, checked)
            if maps not in rendered:
                pool_maps = {"atlas": atlas, "fused": fused}.get(LABEL_MAP_SOURCES[arm][1], pseudo)
                rendered[maps] = conditional_synthesis(gvae, critic, items, settings, seed,
                                                       label_maps_for(arm, pool_maps, settings.num_classes,
                                                                      settings.left_right_flip),
                                                       posterior=posterior, segmenter=segmenter if checked else None)
            pairs, acceptance = rendered[maps]
            if arm == "selftrain_cond":
                # the pool's own images and the GVAE's images of the pool's maps, each at the synthetic share:
                # the pseudo-labelled slices are cycled to as many items as there are GVAE pairs
                record(arm, [pseudo[i % len(pseudo)] for i in range(len(pairs))] + pairs,
                       fraction=2 * settings.synthetic_fraction, gvae_seconds=seconds, acceptance=acceptance)
            else:
                extra = {"label_seconds": atlas_seconds} if arm in ATLAS_ARMS + FUSED_ARMS else {}
                extra.update(atlas_extra if arm in ATLAS_ARMS else {})
                record(arm, pairs, gvae_seconds=seconds, acceptance=acceptance, **extra)
        elif arm == "joint_pool":
            pairs, extra = joint_pool_synthesis(items, pretrained, segmenter, settings, seed)
            record(arm, pairs, **extra)
    return runs
