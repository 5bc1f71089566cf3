"""The few-label benchmark's training settings (:class:`FewLabelSettings`: the command line's, typed) and
the choices of its options."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch

from monai_gvae.benchmarks.segmentation import INTENSITY_RANDOMISATIONS, NUM_CLASSES, SEG_LR_SCHEDULES
from monai_gvae.engines.gvae_trainer import SEG_OBJECTIVES
from monai_gvae.networks.blocks.trunks import CONDITION_MODES, UPSAMPLE_MODES
from monai_gvae.networks.nets.gvae_critic import CRITIC_HEADS

from .arms import K_UNITS, SCHEDULES

__all__ = ["FewLabelSettings", "SEG_REPEAT_SEED_STRIDE", "CONDITION_MODES", "CRITIC_HEADS", "SEG_OBJECTIVES",
           "UPSAMPLE_MODES"]


SEG_REPEAT_SEED_STRIDE = 1000
"""Repeat r of an arm's segmenter (``FewLabelSettings.seg_repeats``) is seeded ``seed + r * SEG_REPEAT_SEED_STRIDE``."""


@dataclass(frozen=True)
class FewLabelSettings:
    """Training settings of the few-label benchmark (the command line's, typed; defaults chosen on the
    validation split, see docs/fewlabels.md).

    Attributes:
        seg_iterations: segmenter iterations per arm.
        seg_repeats: segmenters trained per arm, from other initial weights and batches (repeat r seeded
            ``seed + r * SEG_REPEAT_SEED_STRIDE``, the same in every arm); the arm's Dice is their mean, so that the
            segmenter's chaotic training (last-bit changes swing a seed's Dice by points) weighs less. Repeat 0 is the
            segmenter of ``seg_repeats=1``, and the classical arm's repeat 0 labels the pool.
        seg_lr_schedule: the segmenters' learning-rate schedule, ``"constant"`` or ``"poly"`` (decayed to 0 over the
            ``seg_iterations``; :data:`~monai_gvae.benchmarks.segmentation.SEG_LR_SCHEDULES`), in every arm.
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
        synthetic_intensity: random intensity changes of every synthetic pair's image before the classical
            augmentation (:func:`~monai_gvae.benchmarks.segmentation.intensity_randomisation`, one of
            ``INTENSITY_RANDOMISATIONS``): renders are cleaner than real images; ``"none"``: unchanged.
        num_classes: label classes, background included.
        left_right_flip: the classical augmentation and the deformations flip the columns (the patient's
            left-right axis of axial and coronal slices); ``False`` for sagittal slices (:class:`FewLabelData`).
        k_unit: what k counts, ``"slice"`` (labelled slices) or ``"volume"`` (labelled scans: every slice of k
            train volumes; :func:`labelled_and_pool`), :data:`K_UNITS`. With ``"volume"`` the :data:`ATLAS_ARMS`
            register, for each pool slice, one slice per labelled volume: the one at the nearest relative level.
        device: where the segmenters and GVAEs train and run (``"cpu"``, ``"cuda"``, ``"cuda:1"``); registration and
            the data stay on the host. Figures of one device do not reproduce on another (other kernels).
    """

    seg_iterations: int = 600
    seg_repeats: int = 1
    seg_lr_schedule: str = "constant"
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
    synthetic_intensity: str = "none"
    num_classes: int = NUM_CLASSES
    left_right_flip: bool = True
    k_unit: str = "slice"
    device: str = "cpu"

    def __post_init__(self) -> None:
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as error:
            raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {self.device!r}."
                             ) from error
        if self.k_unit not in K_UNITS:
            raise ValueError(f"k_unit must be one of {K_UNITS}, got {self.k_unit!r}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}.")
        if self.schedule == "finetune" and not 0 < self.finetune_iterations < self.seg_iterations:
            raise ValueError(f"finetune_iterations must be in (0, seg_iterations={self.seg_iterations}), got "
                             f"{self.finetune_iterations}.")
        if self.seg_objective not in SEG_OBJECTIVES:
            raise ValueError(f"seg_objective must be one of {SEG_OBJECTIVES}, got {self.seg_objective!r}.")
        if self.seg_lr_schedule not in SEG_LR_SCHEDULES:
            raise ValueError(f"seg_lr_schedule must be one of {SEG_LR_SCHEDULES}, got {self.seg_lr_schedule!r}.")
        if self.seg_repeats < 1:
            raise ValueError(f"seg_repeats must be >= 1, got {self.seg_repeats}.")
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
        if self.synthetic_intensity not in INTENSITY_RANDOMISATIONS:
            raise ValueError(f"synthetic_intensity must be one of {INTENSITY_RANDOMISATIONS}, got "
                             f"{self.synthetic_intensity!r}.")
        if self.atlas_weight < 0:
            raise ValueError(f"atlas_weight must be >= 0, got {self.atlas_weight}.")

    @classmethod
    def from_namespace(cls, args: argparse.Namespace | Mapping[str, Any]) -> FewLabelSettings:
        """The settings of parsed command-line arguments or of a saved ``settings`` dict (other keys ignored)."""
        values = dict(vars(args) if isinstance(args, argparse.Namespace) else args)
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})
