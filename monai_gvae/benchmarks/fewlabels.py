"""The few-label benchmark's arms: label-conditioned GVAE synthesis added to classical augmentation for a MONAI
UNet trained on k labelled slices, against classical augmentation alone and against the cheapest use of the same
unlabelled pool (self-training); docs/fewlabels.md.

It shares the segmentation benchmark's segmenter, classical augmentation and metric
(:mod:`monai_gvae.benchmarks.segmentation`). :func:`fewlabel_splits` gives the train / val / test slabs of the
embedded slices or of a user's NIfTI folders; :func:`run_cell` runs every arm of one (k, seed) cell;
:func:`write_fewlabels_outputs` writes the tables (paired differences with 95 % intervals) and plot;
:func:`merge_runs` combines runs split by seed over processes.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.networks.nets import UNet
from monai.transforms import Compose, EnsureTyped, Rand2DElasticd
from monai.utils import set_determinism

from monai_gvae.benchmarks.plots import PLOT_COLOURS, plot_dice_against_k
from monai_gvae.benchmarks.report import markdown_table, prepare_output_dir, read_json, write_json, write_text
from monai_gvae.benchmarks.segmentation import (
    IMAGE_SIZE,
    KEYS,
    NUM_CLASSES,
    classical_transform,
    dice_scores,
    train_segmenter,
)
from monai_gvae.benchmarks.stats import Verdict, mean_std, paired_difference, paired_differences_by_seed
from monai_gvae.bundle import save_sample_grid
from monai_gvae.data import (
    BRAIN_CLASS_NAMES,
    brain_slab_split,
    labelled_subset,
    load_brain_slices,
    load_labelled_slices,
    unlabelled_pool,
)
from monai_gvae.engines import GVAETrainer
from monai_gvae.engines.gvae_trainer import SEG_OBJECTIVES
from monai_gvae.losses import CriticLoss, EncoderGeneratorLoss
from monai_gvae.networks import GVAE, GVAECritic, load_pretrained_weights
from monai_gvae.networks.blocks.trunks import CONDITION_MODES, UPSAMPLE_MODES
from monai_gvae.networks.nets.gvae_critic import CRITIC_HEADS
from monai_gvae.transforms import (
    PackImageLabeld,
    SyntheticPairFilter,
    calibrate_posterior_sigma,
    class_dice,
    encode_pairs,
    fuse_label_maps,
    implausible_class_areas,
    interpolate_label_maps,
    label_to_condition,
    nearest_label_maps,
    posterior_variants,
    propagate_label_map,
    synthesize_for_labels,
)

__all__ = [
    "ARMS",
    "ARM_NAMES",
    "ARM_SHORT",
    "POOL_ARMS",
    "PSEUDO_LABEL_ARMS",
    "LABEL_MAP_SOURCES",
    "label_maps_for",
    "CONDITIONAL_ARMS",
    "CONDITION_MODES",
    "CRITIC_HEADS",
    "SCHEDULES",
    "SEG_OBJECTIVES",
    "CONFIDENCE_FORMAT",
    "FewLabelSettings",
    "FewLabelData",
    "fewlabel_splits",
    "pseudo_label_quality",
    "pseudo_labelled_pool",
    "cotraining_pairs",
    "COTRAINED_ARMS",
    "atlas_labelled_pool",
    "area_guarded_pool",
    "ATLAS_ARMS",
    "fused_labelled_pool",
    "FUSED_ARMS",
    "worst_class_losses",
    "deformation",
    "packer",
    "gvae_parts",
    "train_gvae",
    "pretrain",
    "deformed_pairs",
    "interpolated_pairs",
    "conditional_synthesis",
    "joint_pool_synthesis",
    "save_pairs",
    "run_cell",
    "mean_gvae_seconds",
    "fewlabels_report",
    "write_fewlabels_outputs",
    "render_run",
    "merge_runs",
]

ARMS = ("classical", "elastic", "selftrain", "cond", "cond_pseudo", "cond_pool", "joint_pool", "interp", "cond_interp",
        "cond_pool_interp", "selftrain_cond", "cond_pseudo_post", "cond_pseudo_interp", "cond_pseudo_checked",
        "cond_pseudo_cotrained", "selftrain_atlas", "cond_pseudo_atlas", "selftrain_fused", "cond_pseudo_fused")
ARM_NAMES = {
    "classical": "classical (flip + affine)",
    "elastic": "classical + elastic-warped real pairs (control, no GVAE)",
    "selftrain": "classical + pseudo-labelled pool images (self-training control, no GVAE)",
    "cond_pseudo": "classical + label-conditioned GVAE (k slices) rendering the pool's pseudo-label maps",
    "cond": "classical + label-conditioned GVAE (k slices only)",
    "cond_pool": "classical + label-conditioned GVAE pre-trained on the unlabelled pool",
    "joint_pool": "classical + joint GVAE variants of the unlabelled pool, segmenter-filtered",
    "interp": "classical + interpolated pairs (control, no GVAE: blended images)",
    "cond_interp": "classical + label-conditioned GVAE (k slices only) on interpolated label maps",
    "cond_pool_interp": "classical + label-conditioned GVAE pre-trained on the unlabelled pool, on interpolated "
                        "label maps",
    "selftrain_cond": "classical + pseudo-labelled pool images and cond_pseudo's GVAE images of the pool's maps "
                      "(each at the synthetic share)",
    "cond_pseudo_post": "classical + label-conditioned GVAE (k slices) re-rendering the pool's images at their "
                        "pseudo-label maps (posterior latents)",
    "cond_pseudo_interp": "classical + label-conditioned GVAE (k slices) rendering maps interpolated between two "
                          "similar pseudo-label maps of the pool",
    "cond_pseudo_checked": "classical + label-conditioned GVAE (k slices) rendering the pool's pseudo-label maps, "
                           "kept where the segmenter finds every class",
    "cond_pseudo_cotrained": "classical + label-conditioned GVAE trained on the k slices and the pseudo-labelled pool, "
                             "rendering the pool's pseudo-label maps",
    "selftrain_atlas": "classical + pool images with the k slices' labels registered to them (atlas control, no GVAE)",
    "cond_pseudo_atlas": "classical + label-conditioned GVAE (k slices) rendering the pool's registered label maps",
    "selftrain_fused": "classical + pool images with the segmenter's and the registered labels fused (control, no "
                       "GVAE)",
    "cond_pseudo_fused": "classical + label-conditioned GVAE (k slices) rendering the pool's fused label maps",
}
ARM_SHORT = {
    "classical": "classical",
    "elastic": "+ elastic control (no GVAE)",
    "selftrain": "+ self-training control (no GVAE)",
    "cond_pseudo": "+ cond. GVAE, pool pseudo-label maps",
    "cond": "+ cond. GVAE (k slices)",
    "cond_pool": "+ cond. GVAE (pool pre-trained)",
    "joint_pool": "+ joint GVAE pool variants",
    "interp": "+ interpolation control (no GVAE)",
    "cond_interp": "+ cond. GVAE (k), interpolated maps",
    "cond_pool_interp": "+ cond. GVAE (pool), interpolated maps",
    "selftrain_cond": "+ self-training + cond. GVAE, pool maps",
    "cond_pseudo_post": "+ cond. GVAE, pool images re-rendered at pool maps",
    "cond_pseudo_interp": "+ cond. GVAE, interpolated pool maps",
    "cond_pseudo_checked": "+ cond. GVAE, pool maps, per-class check",
    "cond_pseudo_cotrained": "+ cond. GVAE (k + pool), pool maps",
    "selftrain_atlas": "+ atlas-labelled pool (no GVAE)",
    "cond_pseudo_atlas": "+ cond. GVAE, atlas-labelled pool maps",
    "selftrain_fused": "+ fused-labelled pool (no GVAE)",
    "cond_pseudo_fused": "+ cond. GVAE, fused pool maps",
}
POOL_ARMS = ("cond_pool", "joint_pool", "cond_pool_interp")
"""Arms that pre-train a GVAE on the unlabelled pool (the train split's images, labels hidden)."""
LABEL_MAP_SOURCES = {
    "cond": ("deformed", "k"),
    "cond_pool": ("deformed", "k"),
    "cond_interp": ("interpolated", "k"),
    "cond_pool_interp": ("interpolated", "k"),
    "cond_pseudo": ("deformed", "pool"),
    "selftrain_cond": ("deformed", "pool"),
    "cond_pseudo_post": ("deformed", "pool"),
    "cond_pseudo_interp": ("interpolated", "pool"),
    "cond_pseudo_checked": ("deformed", "pool"),
    "cond_pseudo_cotrained": ("deformed", "pool"),
    "cond_pseudo_atlas": ("deformed", "atlas"),
    "cond_pseudo_fused": ("deformed", "fused"),
}
"""Where each conditional arm's label maps come from, ``(how, whose)``: deformed or interpolated copies of the k
slices' maps, of the pool's pseudo-label maps (``"pool"``), of the pool's registered maps (``"atlas"``, see
:func:`atlas_labelled_pool`) or of both fused (``"fused"``, see :func:`fused_labelled_pool`; see
:func:`label_maps_for`); the arms of one source and GVAE render
the same maps (``cond_pseudo_post`` from posterior latents; ``cond_pseudo_checked`` keeps those of the same candidates
that pass its per-class segmenter check, drawing more candidates to replace the rejected)."""
COTRAINED_ARMS = ("cond_pseudo_cotrained",)
"""Conditional arms whose GVAE trains on the k pairs **and** the pool's pseudo-labelled pairs
(:func:`cotraining_pairs`), not on the k pairs alone: the pool's images show the generator the anatomy of every level
of the train split (a GVAE trained on five slices draws a structure they barely show, e.g. the cerebellum, as a flat
blob; docs/fewlabels.md section 6, k = 20)."""
CONDITIONAL_ARMS = tuple(LABEL_MAP_SOURCES)
PSEUDO_LABEL_ARMS = ("selftrain",) + tuple(arm for arm, (_, whose) in LABEL_MAP_SOURCES.items() if whose == "pool")
"""Arms that use the k-trained segmenter's pseudo-labels of the pool (the train images outside the k): the
self-training control and the conditional arms that render the pool's maps."""
ATLAS_ARMS = ("selftrain_atlas",) + tuple(arm for arm, (_, whose) in LABEL_MAP_SOURCES.items() if whose == "atlas")
"""Arms that label the pool by registration instead (:func:`atlas_labelled_pool`): the atlas control (the pool's
own images with those labels) and the conditional arm that renders those maps."""
FUSED_ARMS = ("selftrain_fused",) + tuple(arm for arm, (_, whose) in LABEL_MAP_SOURCES.items() if whose == "fused")
"""Arms that label the pool with the classical segmenter's probabilities and the registered maps fused per pixel
(:func:`fused_labelled_pool`): the fused control and the conditional arm that renders those maps."""
SCHEDULES = ("mix", "finetune")


@dataclass(frozen=True)
class FewLabelSettings:
    """Training settings of the few-label benchmark (the command line's, typed; defaults chosen on the
    validation split, see docs/fewlabels.md).

    Attributes:
        seg_iterations: segmenter iterations per arm.
        batch_size: segmenter batch.
        synthetic_fraction: share of synthetic items per segmenter epoch, in [0, 1).
        num_synthetic: synthetic pairs generated per (k, seed, arm).
        gvae_iterations: conditional GVAE iterations on the k slices (the arms whose GVAE sees only them: ``cond``,
            ``cond_pseudo``, ``cond_interp``) and of the co-trained GVAE (:data:`COTRAINED_ARMS`: the same budget).
        pretrain_iterations: image-only pre-training iterations on the unlabelled pool.
        adapt_iterations: adaptation iterations on the k slices (pool arms).
        gvae_batch: GVAE batch.
        latent_size: GVAE latent size.
        base_channels: GVAE (conv architecture) base channels.
        upsample: generator upsampling, ``"nearest"``, ``"linear"`` or ``"transposed"`` (``UPSAMPLE_MODES``).
        kl_weight: KL weight of the GVAE objective.
        adv_weight: adversarial weight of the GVAE objective.
        critic_quantile: conditional arms keep pairs the critic scores at least as high as this quantile of the
            real pairs' scores (negative: no filter).
        min_dice: ``joint_pool``'s segmenter-agreement threshold.
        render_min_dice: ``cond_pseudo_checked``: a rendered pair is kept only if the classical segmenter's
            prediction for its image reaches this Dice in every foreground class of its map
            (``SyntheticPairFilter(reduction="min")``): a guard against renders that lose one structure.
        render_min_pixels: ``cond_pseudo_checked``: classes of which a map holds fewer pixels are not checked
            (fragments of a pseudo-label, whose Dice is noise).
        sigma_min_dice: ``joint_pool``: largest sigma whose variants of the k slices keep this label Dice.
        seg_weight: segmentation consistency of the conditional GVAEs (``GVAETrainer(segmenter=, seg_weight=)``
            with the ``classical`` arm's segmenter); 0: none.
        seg_objective: the segmentation term, ``"consistency"`` or ``"gradient_matching"``
            (``GVAETrainer(seg_objective=...)``).
        seg_lr: ``"gradient_matching"``: learning rate of the segmenter copy that keeps training.
        condition_mode: the conditional generator's use of the label map, ``"concat"`` or ``"spade"``.
        critic_head: the critic's head, ``"linear"`` or ``"patch"``.
        schedule: the segmenter's schedule in the synthetic arms: ``"mix"`` (synthetic pairs mixed in throughout) or
            ``"finetune"`` (the last ``finetune_iterations`` iterations on the real pairs only).
        finetune_iterations: real-only iterations at the end with ``schedule="finetune"``.
        pseudo_keep: share of the pool the pseudo-label arms (``selftrain``, ``cond_pseudo``) use, the slices the
            classical segmenter is most confident about (:func:`pseudo_labelled_pool`), and the :data:`ATLAS_ARMS`,
            the slices whose registered atlas fits best (:func:`atlas_labelled_pool`), and the :data:`FUSED_ARMS`, the
            slices where the segmenter and the registration agree most (:func:`fused_labelled_pool`); 1: the whole
            pool.
        atlas_weight: the :data:`FUSED_ARMS`' probability margin given to the registered class
            (:func:`~monai_gvae.transforms.fuse_label_maps`): it wins where the segmenter's top class beats it by less.
        area_guard: the :data:`ATLAS_ARMS` leave out the pool slices whose registered map holds a class area out of
            line with the maps of the neighbouring pool slices (:func:`area_guarded_pool`; needs the slices' order
            along their volume's axis, ``slice_index``).
        grad_weight: weight of the gradient difference term of the GVAE objective
            (``EncoderGeneratorLoss(gradient_weight=...)``: edges as strong as the data's); 0: none.
        num_classes: label classes, background included.
        left_right_flip: the classical augmentation and the deformations flip the columns (the patient's
            left-right axis of axial and coronal slices); ``False`` for sagittal slices (:class:`FewLabelData`).
    """

    seg_iterations: int = 600
    batch_size: int = 16
    synthetic_fraction: float = 0.1
    num_synthetic: int = 256
    gvae_iterations: int = 500
    pretrain_iterations: int = 500
    adapt_iterations: int = 250
    gvae_batch: int = 8
    latent_size: int = 32
    base_channels: int = 16
    upsample: str = "nearest"
    kl_weight: float = 2e-2
    adv_weight: float = 1e-3
    critic_quantile: float = -1.0
    min_dice: float = 0.7
    render_min_dice: float = 0.5
    render_min_pixels: int = 32
    sigma_min_dice: float = 0.6
    seg_weight: float = 0.5
    seg_objective: str = "consistency"
    seg_lr: float = 1e-4
    condition_mode: str = "concat"
    critic_head: str = "linear"
    schedule: str = "mix"
    finetune_iterations: int = 100
    pseudo_keep: float = 1.0
    atlas_weight: float = 0.5
    area_guard: bool = False
    grad_weight: float = 0.0
    num_classes: int = NUM_CLASSES
    left_right_flip: bool = True

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}.")
        if self.schedule == "finetune" and not 0 < self.finetune_iterations < self.seg_iterations:
            raise ValueError(f"finetune_iterations must be in (0, seg_iterations={self.seg_iterations}), got "
                             f"{self.finetune_iterations}.")
        if self.seg_objective not in SEG_OBJECTIVES:
            raise ValueError(f"seg_objective must be one of {SEG_OBJECTIVES}, got {self.seg_objective!r}.")
        if self.seg_weight < 0:
            raise ValueError(f"seg_weight must be >= 0, got {self.seg_weight}.")
        if self.grad_weight < 0:
            raise ValueError(f"grad_weight must be >= 0, got {self.grad_weight}.")
        if not 0 <= self.render_min_dice <= 1:
            raise ValueError(f"render_min_dice must be in [0, 1], got {self.render_min_dice}.")
        if self.render_min_pixels < 0:
            raise ValueError(f"render_min_pixels must be >= 0, got {self.render_min_pixels}.")
        if not 0 < self.pseudo_keep <= 1:
            raise ValueError(f"pseudo_keep must be in (0, 1], got {self.pseudo_keep}.")
        if self.atlas_weight < 0:
            raise ValueError(f"atlas_weight must be >= 0, got {self.atlas_weight}.")

    @classmethod
    def from_namespace(cls, args: argparse.Namespace | Mapping[str, Any]) -> FewLabelSettings:
        """The settings of parsed command-line arguments or of a saved ``settings`` dict (other keys ignored)."""
        values = dict(vars(args) if isinstance(args, argparse.Namespace) else args)
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})


# --- data
@dataclass
class FewLabelData:
    """The benchmark's data: ``train`` (the k labelled items are drawn from it; the rest is the unlabelled pool),
    ``val`` (for choosing settings), ``test`` (held out: reported once per setting), all contiguous slabs of one
    ordered series of slices separated by gaps (:func:`~monai_gvae.data.brain_slab_split`).

    Attributes:
        train, val, test: the splits' items (``image`` ``(1, S, S)`` in [0, 1], ``label`` ``(1, S, S)`` in
            ``0..num_classes-1``, ``slice_index``).
        num_classes: label classes, background included.
        class_names: names of the foreground classes 1.. (for per-class Dice).
        description: where the slices come from, for the report's header.
        left_right_flip: whether the slices' columns run left-right, so that the augmentation may flip them
            (:attr:`FewLabelSettings.left_right_flip`): true for the embedded axial slices and ``data_dir``'s axial
            and coronal slices (and 2D files), false for sagittal slices (``axis=0``).
    """

    train: list[dict]
    val: list[dict]
    test: list[dict]
    num_classes: int
    class_names: tuple[str, ...]
    description: str
    left_right_flip: bool = True


def fewlabel_splits(
    data_dir: str | os.PathLike | None = None,
    axis: int = 2,
    num_classes: int | None = None,
    holdout_fraction: float = 0.25,
    val_fraction: float = 0.15,
    gap: int = 3,
    split_layout: str = "alternate",
) -> FewLabelData:
    """Train / val / test slabs of the embedded brain slices, or of a user's ``images/`` + ``labels/`` NIfTI folders.

    Args:
        data_dir: ``None`` for the embedded slices (:func:`~monai_gvae.data.load_brain_slices`); else a folder read
            by :func:`~monai_gvae.data.load_labelled_slices` (2D slices, or 3D volumes sliced along ``axis``,
            resized to 64 x 64, labels remapped to ``0..C-1``); the slices are split in their file and slice order.
        axis: the anatomical axis along which 3D volumes are sliced, after RAS reorientation: 0 sagittal,
            1 coronal, 2 axial (``data_dir`` only).
        num_classes: classes declared for ``data_dir`` (an error when the labels hold more); ``None``: as found.
        holdout_fraction, val_fraction, gap: the slab split (:func:`~monai_gvae.data.brain_slab_split`).
        split_layout: ``"alternate"`` (val and test slabs at different levels, the recorded runs) or ``"paired"``
            (a val slab beside each test slab, so that validation sees the levels the test slabs score).

    Returns:
        :class:`FewLabelData`.

    Raises:
        FileNotFoundError, InputImageError, ValueError: as the loaders (each names the file or setting).

    Example::

        data = fewlabel_splits("my_scans", axis=2, num_classes=3)
        len(data.train), len(data.val), len(data.test)
    """
    if data_dir is None:
        splits = {s: load_brain_slices(s, holdout_fraction, None, val_fraction, gap, split_layout)
                  for s in ("train", "val", "test")}
        return FewLabelData(**splits, num_classes=NUM_CLASSES, class_names=tuple(BRAIN_CLASS_NAMES[1:]),
                            description="embedded Colin27/AAL axial brain slices (4 classes)")
    items = load_labelled_slices(data_dir, image_size=IMAGE_SIZE, num_classes=num_classes, axis=axis)
    values = items[0]["label_values"]
    classes = num_classes if num_classes is not None else len(values)
    roles = brain_slab_split(len(items), holdout_fraction, val_fraction, gap, layout=split_layout)
    splits = {s: [i for i, role in zip(items, roles) if role == s] for s in ("train", "val", "test")}
    names = tuple(f"class_{v}" for v in values[1:]) + tuple(f"class_{c}" for c in range(len(values), classes))
    return FewLabelData(**splits, num_classes=classes, class_names=names,
                        description=f"{os.fspath(data_dir)} ({len(items)} slices along axis {axis}, label values "
                                    f"{values} as classes 0..{classes - 1})",
                        left_right_flip=axis != 0)  # a sagittal slice's columns run anterior-posterior


@torch.no_grad()
def _pool_logits(segmenter: torch.nn.Module, pool: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images (N, 1, S, S), logits (N, C, S, S))`` of the pool, in batches of 32."""
    segmenter.eval()
    images = _stack(pool, "image").float()
    return images, torch.cat([segmenter(images[i:i + 32]) for i in range(0, len(images), 32)])


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
    items: Sequence[dict], pool: Sequence[dict], keep: float = 1.0, demons_iterations: int = 100
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

    Returns:
        ``[{"image", "label" (1, S, S) int64, "slice_index", "pseudo_label": True, "fit": correlation}]`` for the kept
        slices, in the pool's order.

    Raises:
        ValueError: ``keep`` outside (0, 1], no labelled items, or images of other shapes than the atlases'.

    Example::

        pairs = atlas_labelled_pool(k_items, pool)  # every pool image with its best atlas's registered labels
    """
    labelled = [{"image": torch.as_tensor(i["image"]).float(), "label": torch.as_tensor(i["label"])} for i in items]
    images = [torch.as_tensor(p["image"]).float() for p in pool]
    maps = [propagate_label_map(image, labelled, demons_iterations) for image in images]
    return _best_fitting([{"image": image, "label": label, "slice_index": p.get("slice_index"), "pseudo_label": True,
                           "fit": fit} for p, image, (label, fit) in zip(pool, images, maps)], keep)


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
        pool: the pool items they label: with ``source`` ``"volume:slice"`` (``--data-dir``:
            :func:`~monai_gvae.data.load_labelled_slices`), slices are neighbours within one volume by their slice
            number (2D slice files, each its own volume, are never judged); without it, one volume, levels
            ``slice_index``.
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
    # --data-dir items name their volume and slice ("volume:slice"; slice_index counts the kept slices of all
    # volumes); the embedded slices are one volume, slice_index their level
    sources = [str(p["source"]).rsplit(":", 1) if "source" in p else ("", p["slice_index"]) for p in pool]
    flags = implausible_class_areas([p["label"] for p in registered], [int(level) for _, level in sources],
                                    num_classes, [volume for volume, _ in sources])
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


# --- transforms
def deformation(left_right_flip: bool = True) -> Compose:
    """New label maps for synthesis (and the elastic control): the classical augmentation's flip and affine
    (:func:`~monai_gvae.benchmarks.segmentation.classical_transform`), then an elastic warp, of real pairs.

    Args:
        left_right_flip: include the left-right flip; ``False`` for sagittal slices.
    """
    # its steps, not the Compose itself: a nested Compose would draw other seeds for them
    return Compose([
        *classical_transform(left_right_flip).transforms,
        Rand2DElasticd(keys=KEYS, prob=1.0, spacing=16, magnitude_range=(0, 2), mode=("bilinear", "nearest"),
                       padding_mode="zeros"),
    ])


def packer(with_label: bool, augment: bool, num_classes: int = NUM_CLASSES, left_right_flip: bool = True) -> Compose:
    """Items to GVAE inputs: the image alone, or image + one-hot label (optionally after :func:`deformation`)."""
    steps = [deformation(left_right_flip)] if augment else []
    steps += [PackImageLabeld("image", "label" if with_label else None,
                              num_classes=num_classes if with_label else None),
              EnsureTyped(keys="image", track_meta=False)]
    return Compose(steps)


def _stack(items: Sequence[Mapping[str, Any]], key: str) -> torch.Tensor:
    return torch.stack([torch.as_tensor(i[key]) for i in items])


# --- GVAE training
def gvae_parts(settings: FewLabelSettings, kind: str, seed: int) -> tuple[GVAE, GVAECritic]:
    """GVAE and critic of one ``kind``: ``"image"`` (image-only), ``"conditional"`` (image given a one-hot
    label) or ``"joint"`` (image + label).

    The initial weights are drawn after seeding with ``seed``, so they do not depend on what ran before.

    Raises:
        ValueError: an unknown kind.
    """
    if kind not in ("image", "conditional", "joint"):
        raise ValueError(f"kind must be 'image', 'conditional' or 'joint', got {kind!r}.")
    set_determinism(seed)
    net = {"latent_size": settings.latent_size, "architecture": "conv", "base_channels": settings.base_channels,
           "max_channels": 128, "upsample": settings.upsample}
    crit = {"architecture": "conv", "base_channels": settings.base_channels, "max_channels": 128}
    classes = settings.num_classes
    if kind == "image":
        return GVAE(2, 1, IMAGE_SIZE, **net), GVAECritic(2, 1, IMAGE_SIZE, **crit)
    if kind == "conditional":  # the levers of the conditional arms: SPADE, a patch critic
        return (GVAE(2, 1, IMAGE_SIZE, num_classes=classes, condition_channels=classes,
                     condition_mode=settings.condition_mode, **net),
                GVAECritic(2, 1, IMAGE_SIZE, condition_channels=classes, head=settings.critic_head, **crit))
    return (GVAE(2, 1 + classes, IMAGE_SIZE, image_channels=1, num_classes=classes, **net),
            GVAECritic(2, 1 + classes, IMAGE_SIZE, **crit))


def train_gvae(
    gvae: GVAE,
    critic: GVAECritic,
    items: Sequence[dict],
    transform: Compose,
    iterations: int,
    settings: FewLabelSettings,
    seed: int,
    params: Iterator[torch.nn.Parameter] | None = None,
    segmenter: torch.nn.Module | None = None,
) -> float:
    """``iterations`` GVAE iterations on ``items`` (drawn with replacement, batch ``settings.gvae_batch``).

    Args:
        params: the parameters the encoder-generator optimiser updates (default: all of ``gvae``'s).
        segmenter: with ``settings.seg_weight > 0`` and a label-conditioned ``gvae``: the frozen segmenter of the
            segmentation-consistency term (``GVAETrainer(segmenter=...)``).

    Returns:
        the seconds taken; ``gvae`` and ``critic`` are left in eval mode.
    """
    set_determinism(seed)
    data = Dataset([dict(i) for i in items], transform)
    sampler = torch.utils.data.RandomSampler(data, replacement=True, num_samples=iterations * settings.gvae_batch,
                                             generator=torch.Generator().manual_seed(seed))
    trainer = GVAETrainer(
        device="cpu", max_epochs=1,
        train_data_loader=DataLoader(data, batch_size=settings.gvae_batch, sampler=sampler),
        network=gvae, critic=critic,
        optimizer=torch.optim.Adam(gvae.parameters() if params is None else params, 1e-3, betas=(0.5, 0.9)),
        critic_optimizer=torch.optim.Adam(critic.parameters(), 1e-4, betas=(0.5, 0.9)),
        loss_function=EncoderGeneratorLoss(rec_weight=1.0, kl_weight=settings.kl_weight,
                                           adv_weight=settings.adv_weight, kl_warmup_iterations=min(50, iterations),
                                           gradient_weight=settings.grad_weight),
        critic_loss_function=CriticLoss(gp_weight=10.0), seed=seed,
        segmenter=segmenter if settings.seg_weight > 0 else None,
        seg_weight=settings.seg_weight if segmenter is not None else 0.0,
        seg_objective=settings.seg_objective, seg_lr=settings.seg_lr,
    )
    start = time.perf_counter()
    trainer.run()
    gvae.eval()
    critic.eval()
    return time.perf_counter() - start


def pretrain(train: Sequence[dict], settings: FewLabelSettings, seed: int) -> dict[str, Any]:
    """Image-only GVAE on the unlabelled pool (the train split's images, labels hidden).

    Returns:
        ``{"gvae": state dict, "critic": state dict, "seconds": ..., "pool": the pool's items}``.
    """
    pool = unlabelled_pool(train)
    gvae, critic = gvae_parts(settings, "image", seed)
    seconds = train_gvae(gvae, critic, pool, packer(False, augment=False), settings.pretrain_iterations, settings, seed)
    return {"gvae": gvae.state_dict(), "critic": critic.state_dict(), "seconds": seconds, "pool": pool}


# --- synthetic pairs
def deformed_pairs(items: Sequence[dict], n: int, seed: int, left_right_flip: bool = True) -> list[dict]:
    """``n`` real pairs warped by :func:`deformation` (image and label together), seeded."""
    warp = deformation(left_right_flip)
    warp.set_random_state(seed=seed)
    rng = np.random.default_rng(seed)
    out = []
    for j in rng.integers(0, len(items), size=n):
        d = warp({"image": items[j]["image"], "label": items[j]["label"]})
        out.append({"image": torch.as_tensor(d["image"]).float(), "label": torch.as_tensor(d["label"]).long()})
    return out


def interpolated_pairs(
    items: Sequence[dict], n: int, seed: int, num_classes: int = NUM_CLASSES, left_right_flip: bool = True
) -> list[dict]:
    """``n`` pairs between two similar labelled items, then warped by :func:`deformation`, seeded.

    Each pair takes an item, one of its two most similar others (label Dice: ``nearest_label_maps``) and a
    weight ``w`` in [0.25, 0.75]: the label is the shape-based interpolation of the two label maps
    (``interpolate_label_maps``), the image the pixel blend ``(1 - w) a + w b``. The conditional arms keep only
    the label and render its image; the ``interp`` control trains on the blend (what interpolation gives without
    a generator).
    """
    labels = _stack(items, "label").long()
    neighbours = nearest_label_maps(labels, num_classes, neighbours=min(2, len(items) - 1))
    warp = deformation(left_right_flip)
    warp.set_random_state(seed=seed)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        i = int(rng.integers(len(items)))
        j = int(neighbours[i, rng.integers(neighbours.shape[1])])
        w = float(rng.uniform(0.25, 0.75))
        image = (1 - w) * torch.as_tensor(items[i]["image"]).float() + w * torch.as_tensor(items[j]["image"]).float()
        label = interpolate_label_maps(labels[i], labels[j], w, num_classes)
        d = warp({"image": image, "label": label})
        out.append({"image": torch.as_tensor(d["image"]).float(), "label": torch.as_tensor(d["label"]).long()})
    return out


def conditional_synthesis(
    gvae: GVAE,
    critic: GVAECritic,
    items: Sequence[dict],
    settings: FewLabelSettings,
    seed: int,
    label_maps: Callable[[Sequence[dict], int, int], list[dict]] | None = None,
    posterior: bool = False,
    segmenter: torch.nn.Module | None = None,
) -> tuple[list[dict], float | None]:
    """Images generated by a label-conditioned GVAE for new label maps, critic- and/or segmenter-filtered.

    Args:
        label_maps: ``label_maps(items, n, seed)`` makes the pairs whose labels are rendered (default
            :func:`deformed_pairs`); up to four rounds of ``settings.num_synthetic`` candidates are drawn.
        posterior: render each map with a draw from the posterior of the pair it came from (its image and map
            encoded: :func:`encode_pairs`) instead of the prior, so the image is re-rendered at its map. It
            needs a latent that carries something: with the default ``kl_weight`` the posterior has collapsed to
            the prior (sigma 0.99; docs/fewlabels.md section 6, "The latent carries nothing"), at 1e-4 it has not.
        segmenter: keep only pairs where this segmenter (images in [0, 1] to logits) finds every foreground class
            of the map with Dice at least ``settings.render_min_dice`` (``SyntheticPairFilter(reduction="min")``);
            ``None``: no such check. The candidates are those drawn without it, so the kept pairs are a subset of
            the unchecked stream.

    Returns:
        ``(pairs with images in [0, 1], the filter's acceptance rate or None without a filter)``.
    """
    label_maps = deformed_pairs if label_maps is None else label_maps
    keep = None
    critic_filter = settings.critic_quantile >= 0
    if critic_filter or segmenter is not None:
        keep = SyntheticPairFilter(settings.num_classes, critic=critic if critic_filter else None, segmenter=segmenter,
                                   min_dice=settings.render_min_dice if segmenter is not None else None,
                                   reduction="min", min_class_pixels=settings.render_min_pixels)
    if critic_filter:
        keep.fit_critic_threshold(_stack(items, "image").float() * 2 - 1, _stack(items, "label").long(),
                                  settings.critic_quantile)
    rng = torch.Generator().manual_seed(seed)
    pairs: list[dict] = []
    for attempt in range(4):  # at most 4 x num_synthetic candidates
        warped = label_maps(items, settings.num_synthetic, seed * 1000 + attempt)
        labels = _stack(warped, "label")
        latents = None
        if posterior:
            mu, logvar = encode_pairs(gvae, _stack(warped, "image").float() * 2 - 1, labels)
            latents = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=rng)
        images = synthesize_for_labels(gvae, labels, rng, latents=latents)
        accepted = keep(images, labels) if keep is not None else torch.ones(len(images), dtype=torch.bool)
        pairs += [{"image": (im + 1) / 2, "label": lab} for im, lab, ok in zip(images, labels, accepted) if ok]
        if len(pairs) >= settings.num_synthetic:
            break
    return pairs[: settings.num_synthetic], (keep.acceptance_rate if keep is not None else None)


def joint_pool_synthesis(
    items: Sequence[dict], pretrained: Mapping[str, Any], segmenter: UNet | None, settings: FewLabelSettings,
    seed: int,
) -> tuple[list[dict], dict[str, Any]]:
    """The ``joint_pool`` arm's pairs: posterior variants of the unlabelled pool's images.

    The image-only pre-trained GVAE is adapted to joint image+label generation on the k slices (encoder frozen);
    ``sigma`` is calibrated on the k slices (``calibrate_posterior_sigma``); variants whose generated label
    disagrees with ``segmenter`` (Dice below ``settings.min_dice``) are dropped.

    Returns:
        ``(pairs with images in [0, 1], {"gvae_seconds", "acceptance", "sigma", "sigma_table"})``.
    """
    gvae, critic = gvae_parts(settings, "joint", seed)
    load_pretrained_weights(gvae, pretrained["gvae"], key=None)
    load_pretrained_weights(critic, pretrained["critic"], key=None)
    gvae.encoder.requires_grad_(False)  # latents of unlabelled images stay those of the pre-trained encoder
    seconds = train_gvae(gvae, critic, items, packer(True, augment=True, num_classes=settings.num_classes,
                                                     left_right_flip=settings.left_right_flip),
                         settings.adapt_iterations, settings, seed,
                         params=gvae.generator.parameters())
    real_images, real_labels = _stack(items, "image").float() * 2 - 1, _stack(items, "label").long()
    sigma, table = calibrate_posterior_sigma(gvae, real_images, real_labels, min_dice=settings.sigma_min_dice,
                                             generator=torch.Generator().manual_seed(seed))
    pool = _stack(pretrained["pool"], "image").float() * 2 - 1
    rng = torch.Generator().manual_seed(seed)
    draws = max(1, int(np.ceil(settings.num_synthetic / len(pool))))
    variants = [posterior_variants(gvae, pool, None, sigma=sigma, generator=rng) for _ in range(draws)]
    images = torch.cat([v[0] for v in variants])
    labels = torch.cat([v[1] for v in variants])
    keep = SyntheticPairFilter(settings.num_classes, segmenter=segmenter, min_dice=settings.min_dice)
    accepted = keep(images, labels)
    pairs = [{"image": (im + 1) / 2, "label": lab} for im, lab, ok in zip(images, labels, accepted) if ok]
    return pairs, {"gvae_seconds": seconds, "acceptance": keep.acceptance_rate, "sigma": sigma,
                   "sigma_table": {str(s): d for s, d in table.items()}}


def save_pairs(pairs: Sequence[dict], path: str | os.PathLike, overwrite: bool, num_classes: int = NUM_CLASSES) -> None:
    """A grid of the first 16 pairs (image, then the one-hot label channels); nothing for no pairs.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    pairs = pairs[:16]
    if not pairs:
        return
    images = _stack(pairs, "image").float() * 2 - 1
    grid = torch.cat([images, label_to_condition(_stack(pairs, "label"), num_classes)], 1)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(path)
    save_sample_grid(grid, path, 1, num_classes)


# --- one (k, seed) cell
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
        k: labelled slices, drawn from ``train`` by ``labelled_subset(train, k, seed)``; the other train slices are
            the unlabelled pool of the :data:`PSEUDO_LABEL_ARMS`, :data:`ATLAS_ARMS` and :data:`FUSED_ARMS`.
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
    items = labelled_subset(train, k, seed)
    chosen = {i["slice_index"] for i in items}
    pool = [i for i in train if i["slice_index"] not in chosen]  # labels hidden: only pseudo-labels are used
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
        net, seconds = train_segmenter(items, iterations=settings.seg_iterations, batch_size=settings.batch_size,
                                       seed=seed, synthetic=synthetic, synthetic_fraction=fraction,
                                       shuffle_seed=seed, num_classes=settings.num_classes,
                                       finetune_iterations=finetune, left_right_flip=settings.left_right_flip)
        if arm == "classical":
            segmenter = net
        scores = dice_scores(net, evaluation, settings.num_classes, class_names)
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
            registered = atlas_labelled_pool(items, pool)
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


def label_maps_for(
    arm: str, pseudo: Sequence[dict] | None, num_classes: int = NUM_CLASSES, left_right_flip: bool = True
) -> Callable[[Sequence[dict], int, int], list[dict]]:
    """How a conditional arm makes the label maps it renders (:data:`LABEL_MAP_SOURCES`): deformed or interpolated
    copies of the k maps, or of the pool's pseudo-label maps (each deformed with its pool image).

    Args:
        arm: one of :data:`CONDITIONAL_ARMS`.
        pseudo: the pool's labelled pairs the pool-map arms render: :func:`pseudo_labelled_pool`'s,
            :func:`atlas_labelled_pool`'s for the ``"atlas"`` arms, :func:`fused_labelled_pool`'s for the ``"fused"``
            arms (needed by all).
        num_classes: classes, background included (for the shape-based interpolation).
        left_right_flip: the deformation's left-right flip (:func:`deformation`).

    Returns:
        ``label_maps(items, n, seed)``, as :func:`conditional_synthesis` takes it.

    Raises:
        ValueError: an arm that is not conditional, or a pool-map arm without ``pseudo``.

    Example::

        maps = label_maps_for("cond_pseudo_interp", pseudo_labelled_pool(unet, pool, 0.5))
        pairs = maps(k_items, 256, seed=0)
    """
    if arm not in LABEL_MAP_SOURCES:
        raise ValueError(f"{arm!r} is not a conditional arm (one of {CONDITIONAL_ARMS}).")
    how, whose = LABEL_MAP_SOURCES[arm]
    if whose != "k" and not pseudo:
        raise ValueError(f"the arm {arm!r} renders the pool's label maps: pass them (pseudo=).")

    def label_maps(items: Sequence[dict], n: int, seed: int) -> list[dict]:
        source = pseudo if whose != "k" else items
        if how == "interpolated":
            return interpolated_pairs(source, n, seed, num_classes, left_right_flip)
        return deformed_pairs(source, n, seed, left_right_flip)

    return label_maps


def _train_conditional(
    items: Sequence[dict],
    source: str,
    pretrained: Mapping[str, Any] | None,
    settings: FewLabelSettings,
    seed: int,
    segmenter: torch.nn.Module | None,
) -> tuple[GVAE, GVAECritic, float]:
    """A label-conditioned GVAE on ``items`` (the k slices; ``source="cotrained"``: :func:`cotraining_pairs`), with
    segmentation consistency with ``segmenter`` when ``settings.seg_weight > 0``; ``source="pool"`` starts from the
    pool pre-training. Every source trains ``settings.gvae_iterations`` (pool: ``adapt_iterations``) iterations."""
    gvae, critic = gvae_parts(settings, "conditional", seed)
    if source == "pool":
        load_pretrained_weights(gvae, pretrained["gvae"], key=None)
        load_pretrained_weights(critic, pretrained["critic"], key=None)
    iterations = settings.adapt_iterations if source == "pool" else settings.gvae_iterations
    seconds = train_gvae(gvae, critic, items, packer(True, augment=True, num_classes=settings.num_classes,
                                                     left_right_flip=settings.left_right_flip),
                         iterations, settings, seed, segmenter=segmenter)
    return gvae, critic, seconds


# --- outputs
def mean_gvae_seconds(runs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Mean GVAE training seconds per arm (arms that trained a GVAE), rounded to 0.1 s."""
    arms = dict.fromkeys(r["arm"] for r in runs if "gvae_seconds" in r)
    return {arm: round(float(np.mean([r["gvae_seconds"] for r in runs if r["arm"] == arm])), 1) for arm in arms}


_SPREAD_VERDICTS = {Verdict.NO_SPREAD: "", Verdict.GAIN: " (gain outside spread)",
                    Verdict.LOSS: " (loss outside spread)"}
_INTERVAL_VERDICTS = {Verdict.NO_SPREAD: " (1 seed)", Verdict.GAIN: " **gain**", Verdict.LOSS: " loss",
                      Verdict.WITHIN: "", Verdict.UNDECIDED: ""}
CONFIDENCE_FORMAT = 2
"""Version of the paired-difference tables: 2 reports 95 % intervals (results without ``"table_format"`` keep the
seed-spread tables they were written with, so that re-rendering an earlier run reproduces its ``results.md``)."""


def _ks_and_arms(results: Mapping[str, Any]) -> tuple[list[int], list[str]]:
    ks = [int(k) for k in results["settings"]["ks"].split(",") if k.strip()]
    return ks, list(dict.fromkeys(r["arm"] for r in results["runs"]))


def _paired_rows(
    by_seed: Mapping[tuple[int, str], dict[int, float]], ks: Sequence[int], arms: Sequence[str], baseline: str,
    store: dict[str, Any], with_interval: bool,
) -> list[list[str]]:
    """One row per arm other than ``baseline``: the paired difference per k (stored in ``store[f"{arm}@{k}"]``)."""
    rows = []
    for arm in arms:
        if arm == baseline:
            continue
        cells = []
        for k in ks:
            diff = paired_difference(by_seed.get((k, arm), {}), by_seed.get((k, baseline), {}))
            store[f"{arm}@{k}"] = {"mean": diff.mean, "std": diff.std, "n": diff.n}
            if diff.n == 0:  # merged runs: an arm not run at this k, or on other seeds than the baseline
                cells.append("-")
                continue
            if with_interval:
                store[f"{arm}@{k}"].update(ci_low=diff.ci_low, ci_high=diff.ci_high,
                                           verdict=diff.interval_verdict.value)
                interval = f" [{diff.ci_low:+.3f}, {diff.ci_high:+.3f}]" if diff.n > 1 else ""
                cells.append(f"{diff.mean:+.3f}{interval}{_INTERVAL_VERDICTS[diff.interval_verdict]}")
            else:
                verdict = _SPREAD_VERDICTS.get(diff.spread_verdict, " (within spread)")
                cells.append(f"{diff.mean:+.3f} ± {diff.std:.3f}{verdict}")
        rows.append([ARM_NAMES[arm]] + cells)
    return rows


def _seeds_of_arm(runs: Sequence[dict[str, Any]], arms: Sequence[str]) -> dict[str, list[int]]:
    """The sorted seeds each arm's runs used (merged runs may give arms different seeds)."""
    return {arm: sorted({r["seed"] for r in runs if r["arm"] == arm}) for arm in arms}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _class_dice_by_seed(runs: Sequence[dict[str, Any]], arm: str, k: int, key: str) -> dict[int, float]:
    """``{seed: the arm's Dice of a class}`` over the seeds where it is finite (a class absent from the scored slices
    has NaN Dice)."""
    return {r["seed"]: r[key] for r in runs if r["arm"] == arm and r["k"] == k and _finite(r.get(key))}


def _paired_class_means(runs: Sequence[dict[str, Any]], arm: str, k: int, class_keys: Sequence[str]) -> dict[str, float]:
    """Mean over the seeds both ``arm`` and classical have of the per class Dice difference (a class's key is left
    out where a seed's Dice of it is NaN in either run, e.g. a class absent from the scored slices)."""
    means = {}
    for c in class_keys:
        diff = paired_difference(_class_dice_by_seed(runs, arm, k, c), _class_dice_by_seed(runs, "classical", k, c))
        if diff.n:
            means[c] = float(diff.mean)
    return means


def worst_class_losses(
    runs: Sequence[dict[str, Any]], arm: str, k: int, class_keys: Sequence[str]
) -> dict[str, tuple[float, int]]:
    """Per class, the seed on which ``arm`` fell furthest below classical: ``{class key: (difference, seed)}``.

    A mean over seeds hides a class that one seed's synthetic pairs ruin (e.g. a structure the generator renders
    as flat grey: docs/fewlabels.md, "Twenty labelled slices"); this is the figure that shows it.

    Args:
        runs: :func:`run_cell` records (``seed``, ``arm``, ``k`` and ``dice_<class>`` keys).
        arm: the arm compared with ``classical``.
        k: labelled slices.
        class_keys: the per-class keys (``dice_<class>``).

    Returns:
        For each class with at least one seed where both arms scored it: the smallest per-seed difference and its
        seed (the earliest seed on a tie).

    Example::

        worst_class_losses(results["runs"], "cond_pseudo", 20, ["dice_cerebellum"])  # {"dice_cerebellum": (-0.57, 7)}
    """
    worst = {}
    for c in class_keys:
        differences = paired_differences_by_seed(_class_dice_by_seed(runs, arm, k, c),
                                                 _class_dice_by_seed(runs, "classical", k, c))
        if differences:
            seed = min(differences, key=lambda s: (differences[s], s))
            worst[c] = (float(differences[seed]), seed)
    return worst


def _tables(results: dict[str, Any]) -> list[str]:
    """Dice per arm and k; paired differences to classical (and, with the self-training control, to it), stored in
    ``results["paired"]`` (``results["paired_selftrain"]``); per class Dice, its paired mean and its worst seed
    (``results["worst_class_loss"]``); filter acceptance."""
    runs = results["runs"]
    ks, arms = _ks_and_arms(results)
    header = ["arm"] + [f"k = {k}" for k in ks]
    table: dict[tuple[int, str], list[float]] = {}
    by_seed: dict[tuple[int, str], dict[int, float]] = {}
    for r in runs:
        table.setdefault((r["k"], r["arm"]), []).append(r["dice"])
        by_seed.setdefault((r["k"], r["arm"]), {})[r["seed"]] = r["dice"]
    seeds_of_arm = _seeds_of_arm(runs, arms)
    seeds_differ = len({tuple(v) for v in seeds_of_arm.values()}) > 1
    # where arms have other seeds, each row says how many: absolute means over other seeds are not comparable
    dice_rows = ([ARM_NAMES[arm] + (f" ({len(seeds_of_arm[arm])} seeds)" if seeds_differ else "")]
                 + ["{:.3f} ± {:.3f}".format(*mean_std(table[k, arm])) if (k, arm) in table else "-" for k in ks]
                 for arm in arms)
    lines = markdown_table(header, dice_rows)
    if seeds_differ:
        lines += ["", "Seeds per arm differ (merged runs with other arms): "
                  + "; ".join(f"{ARM_SHORT.get(arm, arm)}: {len(v)} seeds ({','.join(map(str, v))})"
                              for arm, v in seeds_of_arm.items())
                  + ". Paired differences use the seeds both arms have (n in results.json)."]
    with_interval = results.get("table_format", 1) >= CONFIDENCE_FORMAT
    if with_interval:
        intro = ("Paired difference to classical (same seed, same k slices, same initial weights): mean over seeds "
                 "[95 % Student-t interval]; **gain** only when the whole interval lies above zero, loss when below:")
    else:
        intro = ("Paired difference to classical (same seed, same k slices), mean ± std over seeds; a gain counts "
                 "only when mean − std > 0 (outside the seed spread):")
    lines += ["", intro, ""]
    results["paired"] = {}
    lines += markdown_table(["arm − classical"] + header[1:],
                            _paired_rows(by_seed, ks, arms, "classical", results["paired"], with_interval))
    gvae_arms = [a for a in arms if a in CONDITIONAL_ARMS + ("joint_pool",)]
    if with_interval and "selftrain" in arms and gvae_arms:
        results["paired_selftrain"] = {}
        lines += ["", "Paired difference to the self-training control (the cheapest use of the same unlabelled "
                  "pool), as above:", ""]
        lines += markdown_table(["arm − self-training"] + header[1:],
                                _paired_rows(by_seed, ks, ["selftrain"] + gvae_arms, "selftrain",
                                             results["paired_selftrain"], True))
    class_keys = [key for key in runs[0] if key.startswith("dice_")] if runs else []
    if with_interval and class_keys:
        rows = []
        for arm in arms:
            cells = []
            for k in ks:
                of_cell = [r for r in runs if r["arm"] == arm and r["k"] == k]
                cells.append(" / ".join(f"{np.nanmean([r[c] for r in of_cell]):.2f}" for c in class_keys)
                             if of_cell else "-")
            rows.append([ARM_NAMES[arm]] + cells)
        names = " / ".join(c[len("dice_"):] for c in class_keys)
        lines += ["", f"Dice per class (mean over seeds; {names}):", ""] + markdown_table(header, rows)
        # which class an arm's gain or loss comes from (e.g. a class that few of the k slices show)
        results["paired_per_class"] = {}

        def mean_cell(arm: str, k: int) -> str:
            means = results["paired_per_class"][f"{arm}@{k}"] = _paired_class_means(runs, arm, k, class_keys)
            return " / ".join(f"{100 * means[c]:+.1f}" if c in means else "-" for c in class_keys)

        rows = [[ARM_NAMES[arm]] + [mean_cell(arm, k) for k in ks] for arm in arms if arm != "classical"]
        if rows:
            lines += ["", f"Paired difference to classical per class, Dice points (mean over the seeds both arms "
                      f"have; {names}):", ""] + markdown_table(["arm − classical"] + header[1:], rows)
        # the mean hides a class that one seed's synthetic pairs ruin: the worst seed of each class
        results["worst_class_loss"] = {}

        def worst_cell(arm: str, k: int) -> str:
            worst = worst_class_losses(runs, arm, k, class_keys)
            results["worst_class_loss"][f"{arm}@{k}"] = {c: {"difference": d, "seed": seed}
                                                         for c, (d, seed) in worst.items()}
            return " / ".join(f"{100 * worst[c][0]:+.1f} (s{worst[c][1]})" if c in worst else "-" for c in class_keys)

        rows = [[ARM_NAMES[arm]] + [worst_cell(arm, k) for k in ks] for arm in arms if arm != "classical"]
        if rows:
            lines += ["", f"Worst seed per class: the largest per-seed drop against classical, Dice points (seed; "
                      f"{names}):", ""] + markdown_table(["arm − classical, worst seed"] + header[1:], rows)
    acc = [r for r in runs if r.get("acceptance") is not None]
    if acc:
        rows = []
        for arm in arms:
            of_arm = [r for r in acc if r["arm"] == arm]
            if of_arm:
                rows.append([ARM_NAMES[arm]] + [f"{np.mean([r['acceptance'] for r in of_arm if r['k'] == k]):.2f}"
                                                if any(r["k"] == k for r in of_arm) else "-" for k in ks])
        lines += ["", "Filter acceptance rate (mean over seeds):", ""] + markdown_table(header, rows)
    return lines


def _protocol(results: Mapping[str, Any]) -> list[str]:
    """The header's protocol lines (data, splits, segmenter, GVAE, levers)."""
    s = results["settings"]
    if results.get("table_format", 1) < CONFIDENCE_FORMAT:  # a run of the earlier 61-slice protocol
        held_out = ("15 held-out slices, never seen by a generator or segmenter" if s["eval_split"] == "test"
                    else "train slices outside the k: tuning only")
        data = (f"- Data: embedded Colin27/AAL axial brain slices, {IMAGE_SIZE}x{IMAGE_SIZE}, 4 classes; k labelled "
                f"slices per seed from split `train` ({results['n_train']}); evaluated on split `{s['eval_split']}` "
                f"({held_out}). Unlabelled pool (pool arms only): the {results['n_train']} train images, labels hidden.")
    else:
        scored = ("test: held out, scored once per reported setting" if s["eval_split"] == "test"
                  else "val: for choosing settings")
        layout = ("; val and test slabs alternate (different levels)" if s.get("split_layout", "alternate") ==
                  "alternate" else "; a val slab beside each test slab (the same levels)")
        data = (f"- Data: {results['data']}, {IMAGE_SIZE}x{IMAGE_SIZE}; contiguous slabs with gaps of "
                f"{results.get('gap', 3)} slices between splits{layout}: train {results['n_train']}, val {results['n_val']}, "
                f"test {results['n_test']} slices. Per seed k labelled slices are drawn from train; the other train "
                f"slices are the unlabelled pool (labels hidden). Scored on `{s['eval_split']}` ({scored}).")
    schedule = ""
    if s.get("schedule") == "finetune":
        schedule = f"; synthetic arms end with {s['finetune_iterations']} real-only iterations"
    levers = ""
    pseudo = ""
    arm_notes = ""
    gradient = f", gradient difference weight {s['grad_weight']}" if s.get("grad_weight", 0) else ""
    if "selftrain_cond" in str(s.get("arms", "")):
        arm_notes = (f"; `selftrain_cond`: {s['synthetic_fraction']:.0%} pseudo-labelled pool images and "
                     f"{s['synthetic_fraction']:.0%} GVAE pairs")
    if "cond_pseudo_post" in str(s.get("arms", "")):
        arm_notes += "; `cond_pseudo_post`: each pool pair rendered from a draw of its own posterior"
    if "cond_pseudo_checked" in str(s.get("arms", "")):
        arm_notes += (f"; `cond_pseudo_checked`: renders kept where the classical segmenter finds every class of the "
                      f"map with Dice >= {s['render_min_dice']} (classes of {s['render_min_pixels']}+ "
                      "pixels)")
    if any(arm in str(s.get("arms", "")) for arm in ATLAS_ARMS):
        arm_notes += ("; `*_atlas`: the pool labelled by registering each of the k slices to each pool image (affine, "
                      "then demons; SimpleITK) and keeping the best-correlated one's map")
    if any(arm in str(s.get("arms", "")) for arm in FUSED_ARMS):
        arm_notes += (f"; `*_fused`: the classical segmenter's softmax and that registered map fused per pixel, "
                      f"argmax(p + {s.get('atlas_weight', 0.5)} onehot)")
    if s.get("area_guard") and any(arm in str(s.get("arms", "")) for arm in ATLAS_ARMS):
        arm_notes += ("; `--area-guard`: pool slices whose registered map holds a class area more than max(75 %, "
                      "100 px) off the median of the pool maps within 3 slices (at least 3 of them) left out")
    if s.get("pseudo_keep", 1.0) < 1:
        pseudo = (f"; pseudo-label arms: the {s['pseudo_keep']:.0%} of the pool the classical segmenter is most "
                  "confident about")
    if "seg_weight" in s:
        term = ("segmentation consistency" if s.get("seg_objective", "consistency") == "consistency"
                else f"segmentation gradient matching (segmenter copy trained at {s['seg_lr']})")
        levers = (f" Conditional GVAEs: `{s['condition_mode']}` conditioning, `{s['critic_head']}` critic, "
                  f"{term} weight {s['seg_weight']} (the classical arm's segmenter).")
    classical = "flip + affine" if s.get("left_right_flip", True) else "affine (no flip: sagittal slices)"
    return [
        data,
        f"- Segmenter: MONAI UNet (8, 16, 32, 64), DiceCE, Adam 1e-3, {s['seg_iterations']} iterations x batch "
        f"{s['batch_size']} in every arm (same initial weights per seed); classical {classical} on every item; "
        f"synthetic arms: {s['synthetic_fraction']:.0%} of the items from {s['num_synthetic']} pre-generated "
        f"pairs{schedule}{pseudo}{arm_notes}.",
        f"- GVAE: conv ({s.get('upsample', 'transposed')} upsampling), latent {s['latent_size']}, base channels "
        f"{s['base_channels']}, batch {s['gvae_batch']}, "
        f"w_kl {s['kl_weight']}, w_adv {s['adv_weight']}, w_gp 10{gradient}; GVAEs of the k slices (every conditional "
        f"arm but `cond_pool`, `cond_pool_interp`): {s['gvae_iterations']} iterations on the k slices; pool arms: "
        f"{s['pretrain_iterations']} image-only iterations on the pool (per seed) then "
        f"{s['adapt_iterations']} on the k slices (budgets differ: see docs/fewlabels.md). Critic filter quantile "
        f"{s['critic_quantile']}; joint_pool: sigma calibrated to label Dice >= {s['sigma_min_dice']} on the k "
        f"slices, segmenter-agreement Dice >= {s['min_dice']}." + levers,
    ]


def fewlabels_report(results: dict[str, Any]) -> str:
    """The few-label benchmark's ``results.md``: protocol header and :func:`_tables` (which also stores the paired
    differences in ``results["paired"]``).

    Args:
        results: what the benchmark writes to ``results.json`` (``runs``, ``settings``, ``command``, ``n_train``,
            ``gvae_seconds``, ``seg_seconds_mean``, ``pretrain_seconds``, ``hardware``, ``wall_seconds``; from
            ``table_format`` 2 on also ``data``, ``n_val``, ``n_test``, ``gap``; after a merge ``merged_from``).
    """
    header = [
        "# Few-label benchmark: label-conditioned GVAE synthesis vs classical augmentation",
        "",
        f"Command: `{results['command']}`",
        "",
        *_protocol(results),
        f"- Mean GVAE seconds: {results['gvae_seconds']}; mean segmenter seconds per arm "
        f"{results['seg_seconds_mean']:.0f}; pre-training {results['pretrain_seconds']}.",
        f"- Hardware: {results['hardware']}; total wall time {results['wall_seconds'] / 60:.1f} min"
        + (f" (summed over {len(results['merged_from'])} merged runs)." if results.get("merged_from") else "."),
        "",
    ]
    return "\n".join(header + _tables(results) + [""])


def _legend_name(arm: str, settings: dict[str, Any], seed_count: int | None) -> str:
    """The plot's name of ``arm``: its short name, the segmentation term of a label-conditioned GVAE arm when that
    is not the default consistency term (so a plot read alone says which objective trained the generator), and the
    number of seeds when arms differ in it."""
    name = ARM_SHORT[arm]
    if arm in CONDITIONAL_ARMS and settings.get("seg_objective", "consistency") != "consistency":
        name += f", {settings['seg_objective'].replace('_', ' ')}"
    return name if seed_count is None else f"{name} ({seed_count} seeds)"


def write_fewlabels_outputs(results: dict[str, Any], output_dir: str | os.PathLike, overwrite: bool) -> str:
    """Write ``results.md`` (:func:`fewlabels_report`), ``results.json`` and ``dice.png`` into ``output_dir``.

    Returns:
        the text of ``results.md``.

    Raises:
        FileExistsError: an output exists and ``overwrite`` is false.
    """
    text = fewlabels_report(results)
    write_text(os.path.join(output_dir, "results.md"), text, overwrite)
    write_json(os.path.join(output_dir, "results.json"), results, overwrite, default=str)
    ks, arms = _ks_and_arms(results)
    stats = {}
    for arm in arms:
        for k in ks:
            vals = [r["dice"] for r in results["runs"] if r["arm"] == arm and r["k"] == k]
            if vals:
                stats[(k, arm)] = mean_std(vals)
    colours = {arm: PLOT_COLOURS[ARMS.index(arm) % len(PLOT_COLOURS)] for arm in arms}
    seed_counts = {arm: len(seeds) for arm, seeds in _seeds_of_arm(results["runs"], arms).items()}
    counts_differ = len(set(seed_counts.values())) > 1
    names = {arm: _legend_name(arm, results["settings"], seed_counts[arm] if counts_differ else None) for arm in arms}
    plot_dice_against_k(stats, ks, {k: f"k={k}" for k in ks}, arms, names, colours,
                        f"{results['settings']['eval_split']} foreground Dice (mean ± std over seeds)",
                        os.path.join(output_dir, "dice.png"), overwrite,
                        legend_width=330 + max(len(name) - len(ARM_SHORT[arm]) for arm, name in names.items()) * 7)
    return text


def render_run(output_dir: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """Rewrite the table and plot of an earlier run from its ``results.json`` (e.g. after a change of layout).

    Returns:
        ``(results, text of results.md)``.

    Raises:
        FileNotFoundError: ``output_dir`` has no ``results.json``.
    """
    results = read_json(os.path.join(output_dir, "results.json"))
    return results, write_fewlabels_outputs(results, output_dir, overwrite=True)


# settings that may differ between merged runs: the seeds, the ks (one process per k, or a k added later), where the
# outputs went, and the arms (a run may add arms on some seeds only, e.g. to give the arms of the goal more seeds in
# a fixed compute budget; paired differences use the seeds both arms have, and the table says how many seeds each
# arm has)
_MERGE_FREE_SETTINGS = {"seeds", "ks", "output_dir", "overwrite", "render", "merge", "arms"}
GVAE_ARMS = CONDITIONAL_ARMS + ("joint_pool",)
"""Arms that train a GVAE (what the :data:`GVAE_SETTINGS` change)."""
GVAE_SETTINGS = {"gvae_iterations", "pretrain_iterations", "adapt_iterations", "gvae_batch", "latent_size",
                 "base_channels", "upsample", "kl_weight", "adv_weight", "critic_quantile", "min_dice", "sigma_min_dice",
                 "render_min_dice", "render_min_pixels", "seg_weight", "seg_objective", "seg_lr", "condition_mode",
                 "critic_head"}
"""Settings that change only the GVAE arms: a run without GVAE arms merges with runs that set them otherwise."""


SETTINGS_BEFORE_ADDED = {"pseudo_keep": 1.0, "split_layout": "alternate", "grad_weight": 0.0, "atlas_weight": 0.5,
                         "area_guard": False, "left_right_flip": True,
                         "render_min_dice": FewLabelSettings.render_min_dice,
                         "render_min_pixels": FewLabelSettings.render_min_pixels}
"""Settings added after runs were recorded, with the value that earlier runs (whose ``results.json`` lacks them)
behaved as: a run from before merges with one that states the value."""


def merge_runs(
    folders: Sequence[str], output_dir: str, overwrite: bool, merge_command: str
) -> tuple[dict[str, Any], str]:
    """Combine finished runs that differ only in their seeds (one process per seed), ks or arms into one table.

    A run without GVAE arms (e.g. ``classical,selftrain``) also merges with runs whose GVAE settings differ, and an
    arm without a GVAE found in two runs with the same Dice (a deterministic baseline both ran) is kept once, so
    that a new GVAE setting is compared with controls run on the same machine without training them again. The
    merged settings are those of the first run with GVAE arms.

    Args:
        folders: the runs' output folders, each with a ``results.json``.
        output_dir: where the merged ``results.md``, ``results.json`` and ``dice.png`` go.
        overwrite: replace earlier outputs in ``output_dir``.
        merge_command: the merging command line, appended to the runs' commands in the header.

    Returns:
        ``(merged results, text of results.md)``.

    Raises:
        FileNotFoundError: a folder without results.json.
        ValueError: runs made with other settings, the same (k, seed, GVAE arm) twice, or the same (k, seed, arm)
            twice with different Dice.
        FileExistsError: ``output_dir`` holds earlier outputs and ``overwrite`` is false.
    """
    parts = []
    for folder in folders:
        path = os.path.join(folder, "results.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"--merge: {path} does not exist (run the benchmark there first)")
        parts.append(read_json(path))

    def with_gvae(results: dict) -> bool:
        return any(r["arm"] in GVAE_ARMS for r in results["runs"])

    def fixed(results: dict, gvae: bool) -> dict:
        free = _MERGE_FREE_SETTINGS | (set() if gvae else GVAE_SETTINGS)
        settings = {**SETTINGS_BEFORE_ADDED, **results["settings"]}
        return {k: v for k, v in settings.items() if k not in free}

    # the settings of the merged table: those of the first run that trained a GVAE (else of the first run)
    first = next((i for i, part in enumerate(parts) if with_gvae(part)), 0)
    parts.insert(0, parts.pop(first))
    folders = [folders[first]] + [f for i, f in enumerate(folders) if i != first]
    for folder, part in zip(folders[1:], parts[1:]):
        gvae = with_gvae(part)
        reference, other = fixed(parts[0], gvae), fixed(part, gvae)
        differ = sorted(k for k in set(reference) | set(other) if reference.get(k) != other.get(k))
        if differ:
            raise ValueError(f"--merge: {folder} was run with other settings than {folders[0]} ({differ}); "
                             "only runs that differ in --seeds or --arms (and, without GVAE arms, in GVAE settings) "
                             "can be merged")
    runs: list[dict] = []
    seen: dict[tuple, float] = {}
    for folder, part in zip(folders, parts):
        for r in part["runs"]:
            key = (r["k"], r["seed"], r["arm"])
            if key in seen:
                if r["arm"] in GVAE_ARMS or r["dice"] != seen[key]:
                    raise ValueError(f"--merge: k={key[0]} seed={key[1]} arm={key[2]} appears twice (again in "
                                     f"{folder}){'' if r['arm'] in GVAE_ARMS else ' with another Dice'}")
                continue  # the same deterministic run of an arm without a GVAE (a shared baseline): kept once
            seen[key] = r["dice"]
            runs.append(r)
    prepare_output_dir(output_dir, overwrite)
    seeds = sorted({r["seed"] for r in runs})
    ks = sorted({r["k"] for r in runs})
    pretrain = [(p["pretrain_seconds"], len(p["settings"]["seeds"].split(","))) for p in parts if p["pretrain_seconds"]]
    results = dict(parts[0])
    results.update({
        "runs": runs,
        "command": " ; ".join(p["command"] for p in parts) + " ; " + merge_command,
        "gvae_seconds": mean_gvae_seconds(runs),
        # the runs' mean pre-training seconds, weighted by their seeds
        "pretrain_seconds": (round(sum(s * n for s, n in pretrain) / sum(n for _, n in pretrain), 1) if pretrain
                             else None),
        "seg_seconds_mean": float(np.mean([r["seg_seconds"] for r in runs])),
        "wall_seconds": sum(p["wall_seconds"] for p in parts),  # compute time, summed over the merged processes
        "settings": {**parts[0]["settings"], "seeds": ",".join(str(s) for s in seeds),
                     "ks": ",".join(str(k) for k in ks), "output_dir": output_dir,
                     "arms": ",".join(dict.fromkeys(r["arm"] for r in runs))},
        "merged_from": list(folders),
    })
    return results, write_fewlabels_outputs(results, output_dir, overwrite=True)
