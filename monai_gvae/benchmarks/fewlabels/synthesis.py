"""Synthetic pairs for the few-label arms: the deformations that make new label maps, GVAE training
(image-only, label-conditioned, joint), label-conditioned and joint synthesis, and the label maps each
conditional arm renders."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.networks.nets import UNet
from monai.transforms import Compose, EnsureTyped, Rand2DElasticd
from monai.utils import set_determinism

from monai_gvae.benchmarks.segmentation import IMAGE_SIZE, KEYS, NUM_CLASSES, classical_transform
from monai_gvae.bundle import save_sample_grid
from monai_gvae.data import unlabelled_pool
from monai_gvae.engines import GVAETrainer
from monai_gvae.losses import CriticLoss, EncoderGeneratorLoss
from monai_gvae.networks import GVAE, GVAECritic, load_pretrained_weights
from monai_gvae.transforms import (
    PackImageLabeld,
    SyntheticPairFilter,
    calibrate_posterior_sigma,
    encode_pairs,
    interpolate_label_maps,
    label_to_condition,
    nearest_label_maps,
    posterior_variants,
    synthesize_for_labels,
)

from .arms import CONDITIONAL_ARMS, LABEL_MAP_SOURCES
from .settings import FewLabelSettings
from .splits import _stack

__all__ = ["deformation", "packer", "gvae_parts", "train_gvae", "pretrain", "deformed_pairs", "interpolated_pairs",
           "conditional_synthesis", "joint_pool_synthesis", "save_pairs", "label_maps_for"]


# --- deformations and GVAE inputs
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
    checkpoints: Sequence[int] = (),
    on_checkpoint: Callable[[int], None] | None = None,
) -> float:
    """``iterations`` GVAE iterations on ``items`` (drawn with replacement, batch ``settings.gvae_batch``).

    Args:
        params: the parameters the encoder-generator optimiser updates (default: all of ``gvae``'s).
        segmenter: with ``settings.seg_weight > 0`` and a label-conditioned ``gvae``: the frozen segmenter of the
            segmentation-consistency term (``GVAETrainer(segmenter=...)``).
        checkpoints, on_checkpoint: ``on_checkpoint(i)`` is called after iteration ``i`` for each ``i`` in
            ``checkpoints`` (a budget curve from one training: e.g. scoring renders at 500, 1000, 2000 iterations);
            the networks are put back in train mode and the global random states (torch, numpy, ``random``)
            restored after it, so that the training goes on exactly as without it.

    Returns:
        the seconds taken; ``gvae`` and ``critic`` are left in eval mode.
    """
    set_determinism(seed)
    gvae.to(settings.device)
    critic.to(settings.device)
    data = Dataset([dict(i) for i in items], transform)
    sampler = torch.utils.data.RandomSampler(data, replacement=True, num_samples=iterations * settings.gvae_batch,
                                             generator=torch.Generator().manual_seed(seed))
    trainer = GVAETrainer(
        device=settings.device, max_epochs=1,
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
    if on_checkpoint is not None and checkpoints:
        wanted = set(checkpoints)

        @trainer.on(Events.ITERATION_COMPLETED(event_filter=lambda _, i: i in wanted))
        def _checkpoint(engine: Any) -> None:
            states = random.getstate(), np.random.get_state()
            with torch.random.fork_rng(devices=[]):
                gvae.eval()
                critic.eval()
                on_checkpoint(engine.state.iteration)
                gvae.train()
                critic.train()
            random.setstate(states[0])
            np.random.set_state(states[1])

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


# --- what each conditional arm renders, and its GVAE
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
