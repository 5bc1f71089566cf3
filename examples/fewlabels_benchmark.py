#!/usr/bin/env python
"""Few-label benchmark: can label-conditioned GVAE synthesis (with or without an unlabelled pool) add to
classical augmentation for a MONAI UNet trained on k labelled brain slices?

Protocol (see docs/fewlabels.md; rules in the project's benchmark-rules.md). It extends
``examples/segmentation_benchmark.py``: same data, k-subset draw, segmenter, classical augmentation, metric and
statistics (imported from it), with the few-label arms:

* Data: the embedded 64x64 axial brain slices, 4 classes. Per seed, k slices are drawn from split ``"train"``
  (46 slices) with ``monai_gvae.data.labelled_subset`` (the draw of the segmentation benchmark). Split
  ``"test"`` (15 slices, every 4th) is held out: no generator or segmenter sees it, and no setting was tuned
  on it (``--eval-split val`` evaluates on the train slices outside the k instead, for tuning).
* The **unlabelled pool** is the 46 train-split images with their labels hidden (``unlabelled_pool``); only
  the arms whose name says "pool" use it.
* Segmenter (every arm): MONAI ``UNet`` (channels 8-16-32-64, one residual unit), ``DiceCELoss``, Adam 1e-3,
  ``--seg-iterations`` x batch ``--batch-size``, the same initial weights per seed, fed by
  ``SyntheticMixDataset``; classical augmentation (left-right flip + affine) on every item, real or synthetic.
* Arms:

  - ``classical``: the k real slices with classical augmentation (the baseline);
  - ``elastic``: control without a GVAE: ``--synthetic-fraction`` of the items are real pairs warped by the
    deformation the GVAE arms use for their label maps (flip, affine and elastic), image and label together;
  - ``cond``: a label-conditioned GVAE trained on the k labelled slices only generates the images of those
    same deformed label maps (the label of each pair is the deformed real label, exact by construction);
    pairs filtered by the conditional critic's score (threshold: ``--critic-quantile`` of the real pairs'
    scores);
  - ``cond_pool``: as ``cond``, but the GVAE is first pre-trained on the unlabelled pool's images
    (image-only), then adapted to label-conditioned synthesis on the k slices (grown channels,
    ``load_pretrained_weights``);
  - ``joint_pool``: the image-only pre-trained GVAE adapted to joint image+label generation on the k slices
    (encoder frozen), posterior variants ``G(mu(x) + sigma * eps)`` of the *pool's* images with ``sigma``
    calibrated on the k slices (``calibrate_posterior_sigma``), kept where the generated label agrees with a
    segmenter trained on the k real slices (the ``classical`` arm's UNet; ``--min-dice``).
  - ``interp``, ``cond_interp``, ``cond_pool_interp``: as ``elastic``, ``cond`` and ``cond_pool`` but on
    label maps interpolated between two of the k maps (``interpolate_label_maps``), new shapes between the
    labelled slices; tried on the validation split, not in the default arms (they scored below their
    deformation-only counterparts there).
* Defaults: the settings chosen on the validation split (docs/fewlabels.md lists those runs).
* Metric: Dice of classes 1-3 on the held-out slices, mean over present (slice, class) pairs; mean ± standard
  deviation over seeds, and the paired difference to ``classical`` (same seed, same k slices).

Writes ``results.md``, ``results.json``, ``dice.png`` and ``samples_k{k}_{arm}.png`` (seed 0) into
``--output-dir`` (refusing to overwrite without ``--overwrite``).

Usage::

    python examples/fewlabels_benchmark.py --output-dir runs/fewlabels           # ~40 min on one CPU core
    # or one process per seed (a core each), then one table:
    python examples/fewlabels_benchmark.py --seeds 0 --output-dir runs/fl_s0    # ... likewise --seeds 1, 2
    python examples/fewlabels_benchmark.py --merge runs/fl_s0 runs/fl_s1 runs/fl_s2 --output-dir runs/fewlabels
    python examples/fewlabels_benchmark.py --quick --output-dir /tmp/fewlabels_quick   # a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from typing import Any

import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedTrainer
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from monai.transforms import Compose, EnsureTyped, Rand2DElasticd, RandAffined, RandFlipd
from monai.utils import set_determinism

from monai_gvae.bundle import save_sample_grid
from monai_gvae.data import SyntheticMixDataset, labelled_subset, load_brain_slices, unlabelled_pool
from monai_gvae.engines import GVAETrainer
from monai_gvae.losses import CriticLoss, EncoderGeneratorLoss
from monai_gvae.networks import GVAE, GVAECritic, load_pretrained_weights
from monai_gvae.transforms import (
    PackImageLabeld,
    SyntheticPairFilter,
    calibrate_posterior_sigma,
    interpolate_label_maps,
    label_to_condition,
    nearest_label_maps,
    posterior_variants,
    synthesize_for_labels,
)
from monai_gvae.utils import atomic_path

# The protocol shared with the segmentation benchmark (classical augmentation, metric, statistics) is imported
# from it, so that both tables measure the same thing.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import segmentation_benchmark as base  # noqa: E402

ARMS = ("classical", "elastic", "cond", "cond_pool", "joint_pool", "interp", "cond_interp", "cond_pool_interp")
ARM_NAMES = {
    "classical": "classical (flip + affine)",
    "elastic": "classical + elastic-warped real pairs (control, no GVAE)",
    "cond": "classical + label-conditioned GVAE (k slices only)",
    "cond_pool": "classical + label-conditioned GVAE pre-trained on the unlabelled pool",
    "joint_pool": "classical + joint GVAE variants of the unlabelled pool, segmenter-filtered",
    "interp": "classical + interpolated pairs (control, no GVAE: blended images)",
    "cond_interp": "classical + label-conditioned GVAE (k slices only) on interpolated label maps",
    "cond_pool_interp": "classical + label-conditioned GVAE pre-trained on the unlabelled pool, on interpolated label maps",
}
ARM_SHORT = {
    "classical": "classical",
    "elastic": "+ elastic control (no GVAE)",
    "cond": "+ cond. GVAE (k slices)",
    "cond_pool": "+ cond. GVAE (pool pre-trained)",
    "joint_pool": "+ joint GVAE pool variants",
    "interp": "+ interpolation control (no GVAE)",
    "cond_interp": "+ cond. GVAE (k), interpolated maps",
    "cond_pool_interp": "+ cond. GVAE (pool), interpolated maps",
}
POOL_ARMS = ("cond_pool", "joint_pool", "cond_pool_interp")
NUM_CLASSES = 4
IMAGE_SIZE = 64
KEYS = ["image", "label"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--output-dir", default="runs/fewlabels", help="folder of the outputs")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--ks", default="5,10,20", help="numbers of labelled training slices")
    p.add_argument("--seeds", default="0,1,2", help="seeds (subset draw, initialisation, sampling)")
    p.add_argument("--arms", default="classical,elastic,cond,cond_pool", help=f"arms among {', '.join(ARMS)}")
    p.add_argument("--eval-split", default="test", choices=("test", "val"),
                   help="'test': the held-out slices; 'val': train slices outside the k labelled ones (tuning)")
    p.add_argument("--seg-iterations", type=int, default=300, help="segmenter iterations per arm")
    p.add_argument("--batch-size", type=int, default=16, help="segmenter batch")
    p.add_argument("--synthetic-fraction", type=float, default=0.25, help="share of synthetic items per epoch")
    p.add_argument("--num-synthetic", type=int, default=256, help="synthetic pairs generated per (k, seed, arm)")
    p.add_argument("--gvae-iterations", type=int, default=500, help="conditional GVAE iterations on the k slices")
    p.add_argument("--pretrain-iterations", type=int, default=500, help="image-only pre-training on the pool")
    p.add_argument("--adapt-iterations", type=int, default=250, help="adaptation iterations on the k slices")
    p.add_argument("--gvae-batch", type=int, default=8)
    p.add_argument("--latent-size", type=int, default=32)
    p.add_argument("--base-channels", type=int, default=16, help="GVAE (conv architecture) base channels")
    p.add_argument("--upsample", default="nearest", choices=("transposed", "nearest"),
                   help="generator upsampling (nearest: upsample then convolve, no checkerboard artefacts)")
    p.add_argument("--kl-weight", type=float, default=2e-2, help="KL weight (high: prior samples stay usable)")
    p.add_argument("--adv-weight", type=float, default=1e-3)
    p.add_argument("--critic-quantile", type=float, default=0.0,
                   help="conditional arms: keep pairs the critic scores at least as high as this quantile of the "
                        "real pairs' scores (0: the least real-looking real pair; negative: no filter)")
    p.add_argument("--min-dice", type=float, default=0.7, help="joint_pool: segmenter-agreement threshold")
    p.add_argument("--sigma-min-dice", type=float, default=0.6,
                   help="joint_pool: largest sigma whose variants of the k slices keep this label Dice")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    p.add_argument("--render", action="store_true",
                   help="only rewrite results.md and dice.png from --output-dir's results.json (no training)")
    p.add_argument("--merge", nargs="+", metavar="DIR",
                   help="combine finished runs that differ only in --seeds (e.g. seeds split over processes) into "
                        "--output-dir (no training)")
    args = p.parse_args(argv)
    if args.render or args.merge:
        return args
    if args.quick:
        args.ks = "5"
        args.seeds = "0" if args.seeds == "0,1,2" else args.seeds  # one seed unless asked for others
        args.seg_iterations, args.batch_size, args.num_synthetic = 3, 4, 8
        args.gvae_iterations = args.pretrain_iterations = args.adapt_iterations = 3
        args.gvae_batch, args.latent_size, args.base_channels = 4, 8, 4
    args.k_list = [int(k) for k in args.ks.split(",") if k.strip()]
    args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.arm_list = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in args.arm_list if a not in ARMS]
    if unknown:
        p.error(f"unknown arm(s) {unknown}; choose from {ARMS}")
    if "classical" not in args.arm_list:
        args.arm_list.insert(0, "classical")  # the baseline (and the joint_pool arm's filter segmenter)
    if not 0.0 <= args.synthetic_fraction < 1.0:
        p.error("--synthetic-fraction must be in [0, 1)")
    return args


# --- transforms
classical_transform = base.classical_transform  # left-right flip + small affine
mean_std = base.mean_std


def deformation() -> Compose:
    """New label maps for synthesis (and the elastic control): flip, affine and elastic warps of real pairs."""
    return Compose([
        RandFlipd(keys=KEYS, prob=0.5, spatial_axis=1),
        RandAffined(keys=KEYS, prob=0.8, rotate_range=0.26, scale_range=0.1, translate_range=4,
                    mode=("bilinear", "nearest"), padding_mode="zeros"),
        Rand2DElasticd(keys=KEYS, prob=1.0, spacing=16, magnitude_range=(0, 2), mode=("bilinear", "nearest"),
                       padding_mode="zeros"),
    ])


def packer(with_label: bool, augment: bool) -> Compose:
    steps = [deformation()] if augment else []
    steps += [PackImageLabeld("image", "label" if with_label else None, num_classes=NUM_CLASSES if with_label else None),
              EnsureTyped(keys="image", track_meta=False)]
    return Compose(steps)


def stack(items: list[dict], key: str) -> torch.Tensor:
    return torch.stack([torch.as_tensor(i[key]) for i in items])


# --- GVAE training
def gvae_parts(args: argparse.Namespace, kind: str, seed: int) -> tuple[GVAE, GVAECritic]:
    """``kind``: "image" (image-only), "conditional" (image given a one-hot label) or "joint" (image + label).

    The initial weights are drawn after seeding with ``seed``, so they do not depend on what ran before.
    """
    set_determinism(seed)
    net = {"latent_size": args.latent_size, "architecture": "conv", "base_channels": args.base_channels,
           "max_channels": 128, "upsample": getattr(args, "upsample", "transposed")}
    crit = {"architecture": "conv", "base_channels": args.base_channels, "max_channels": 128}
    if kind == "image":
        return GVAE(2, 1, IMAGE_SIZE, **net), GVAECritic(2, 1, IMAGE_SIZE, **crit)
    if kind == "conditional":
        return (GVAE(2, 1, IMAGE_SIZE, num_classes=NUM_CLASSES, condition_channels=NUM_CLASSES, **net),
                GVAECritic(2, 1, IMAGE_SIZE, condition_channels=NUM_CLASSES, **crit))
    return (GVAE(2, 1 + NUM_CLASSES, IMAGE_SIZE, image_channels=1, num_classes=NUM_CLASSES, **net),
            GVAECritic(2, 1 + NUM_CLASSES, IMAGE_SIZE, **crit))


def train_gvae(gvae: GVAE, critic: GVAECritic, items: list[dict], transform: Compose, iterations: int,
               args: argparse.Namespace, seed: int, params: Any = None) -> float:
    """``iterations`` GVAE iterations on ``items`` (drawn with replacement); returns the seconds taken."""
    set_determinism(seed)
    data = Dataset([dict(i) for i in items], transform)
    sampler = torch.utils.data.RandomSampler(data, replacement=True, num_samples=iterations * args.gvae_batch,
                                             generator=torch.Generator().manual_seed(seed))
    trainer = GVAETrainer(
        device="cpu", max_epochs=1, train_data_loader=DataLoader(data, batch_size=args.gvae_batch, sampler=sampler),
        network=gvae, critic=critic,
        optimizer=torch.optim.Adam(gvae.parameters() if params is None else params, 1e-3, betas=(0.5, 0.9)),
        critic_optimizer=torch.optim.Adam(critic.parameters(), 1e-4, betas=(0.5, 0.9)),
        loss_function=EncoderGeneratorLoss(rec_weight=1.0, kl_weight=args.kl_weight, adv_weight=args.adv_weight,
                                           kl_warmup_iterations=min(50, iterations)),
        critic_loss_function=CriticLoss(gp_weight=10.0), seed=seed,
    )
    start = time.perf_counter()
    trainer.run()
    gvae.eval()
    critic.eval()
    return time.perf_counter() - start


def deformed_pairs(items: list[dict], n: int, seed: int) -> list[dict]:
    """``n`` real pairs warped by :func:`deformation` (image and label together), seeded."""
    warp = deformation()
    warp.set_random_state(seed=seed)
    rng = np.random.default_rng(seed)
    out = []
    for j in rng.integers(0, len(items), size=n):
        d = warp({"image": items[j]["image"], "label": items[j]["label"]})
        out.append({"image": torch.as_tensor(d["image"]).float(), "label": torch.as_tensor(d["label"]).long()})
    return out


def interpolated_pairs(items: list[dict], n: int, seed: int) -> list[dict]:
    """``n`` pairs between two similar labelled items, then warped by :func:`deformation`, seeded.

    Each pair takes an item, one of its two most similar others (label Dice: ``nearest_label_maps``) and a
    weight ``w`` in [0.25, 0.75]: the label is the shape-based interpolation of the two label maps
    (``interpolate_label_maps``), the image the pixel blend ``(1 - w) a + w b``. The conditional arms keep only
    the label and render its image; the ``interp`` control trains on the blend (what interpolation gives without
    a generator).
    """
    labels = stack(items, "label").long()
    neighbours = nearest_label_maps(labels, NUM_CLASSES, neighbours=min(2, len(items) - 1))
    warp = deformation()
    warp.set_random_state(seed=seed)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        i = int(rng.integers(len(items)))
        j = int(neighbours[i, rng.integers(neighbours.shape[1])])
        w = float(rng.uniform(0.25, 0.75))
        image = (1 - w) * torch.as_tensor(items[i]["image"]).float() + w * torch.as_tensor(items[j]["image"]).float()
        label = interpolate_label_maps(labels[i], labels[j], w, NUM_CLASSES)
        d = warp({"image": image, "label": label})
        out.append({"image": torch.as_tensor(d["image"]).float(), "label": torch.as_tensor(d["label"]).long()})
    return out


def conditional_synthesis(gvae: GVAE, critic: GVAECritic, items: list[dict], args: argparse.Namespace,
                          seed: int, label_maps: Any = None) -> tuple[list[dict], float | None]:
    """Images generated for new label maps (``label_maps(items, n, seed)``: by default :func:`deformed_pairs`);
    critic-filtered. Returns the pairs and the acceptance rate."""
    label_maps = deformed_pairs if label_maps is None else label_maps
    keep = None
    if args.critic_quantile >= 0:
        keep = SyntheticPairFilter(NUM_CLASSES, critic=critic)
        keep.fit_critic_threshold(stack(items, "image").float() * 2 - 1, stack(items, "label").long(),
                                  args.critic_quantile)
    rng = torch.Generator().manual_seed(seed)
    pairs: list[dict] = []
    for attempt in range(4):  # at most 4 x num_synthetic candidates
        warped = label_maps(items, args.num_synthetic, seed * 1000 + attempt)
        labels = stack(warped, "label")
        images = synthesize_for_labels(gvae, labels, rng)
        accepted = keep(images, labels) if keep is not None else torch.ones(len(images), dtype=torch.bool)
        pairs += [{"image": (im + 1) / 2, "label": lab} for im, lab, ok in zip(images, labels, accepted) if ok]
        if len(pairs) >= args.num_synthetic:
            break
    return pairs[: args.num_synthetic], (keep.acceptance_rate if keep is not None else None)


# --- segmenter
def train_segmenter(items: list[dict], synthetic: list[dict] | None, args: argparse.Namespace,
                    seed: int) -> tuple[UNet, float]:
    set_determinism(seed)
    net = UNet(2, 1, NUM_CLASSES, channels=(8, 16, 32, 64), strides=(2, 2, 2), num_res_units=1)
    real = [{"image": i["image"], "label": i["label"]} for i in items]
    fraction = args.synthetic_fraction if synthetic else 0.0
    data = SyntheticMixDataset(real, synthetic if synthetic else None, synthetic_fraction=fraction,
                               transform=Compose([classical_transform(), EnsureTyped(keys=KEYS, track_meta=False)]),
                               epoch_length=args.seg_iterations * args.batch_size, seed=seed)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, num_workers=0, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    trainer = SupervisedTrainer(device=torch.device("cpu"), max_epochs=1, train_data_loader=loader, network=net,
                                optimizer=torch.optim.Adam(net.parameters(), 1e-3),
                                loss_function=DiceCELoss(to_onehot_y=True, softmax=True))
    start = time.perf_counter()
    trainer.run()
    return net.eval(), time.perf_counter() - start


def evaluate(net: UNet, test: list[dict]) -> float:
    """Foreground Dice: mean over present (slice, class) pairs (the segmentation benchmark's metric)."""
    return base.evaluate(net, test)["dice"]


def save_pairs(pairs: list[dict], path: str, overwrite: bool) -> None:
    pairs = pairs[:16]
    if not pairs:
        return
    images = stack(pairs, "image").float() * 2 - 1
    grid = torch.cat([images, label_to_condition(stack(pairs, "label"), NUM_CLASSES)], 1)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(path)
    save_sample_grid(grid, path, 1, NUM_CLASSES)


# --- one (k, seed) cell
def run_cell(k: int, seed: int, train: list[dict], evaluation: list[dict] | None, args: argparse.Namespace,
             pretrained: dict | None, log: Any) -> list[dict]:
    items = labelled_subset(train, k, seed)
    if evaluation is None:  # --eval-split val: the train slices outside the k labelled ones
        chosen = {i["slice_index"] for i in items}
        evaluation = [i for i in train if i["slice_index"] not in chosen]
    runs: list[dict] = []
    segmenter: UNet | None = None
    conditional_models: dict[str, tuple[GVAE, GVAECritic, float]] = {}

    def record(arm: str, synthetic: list[dict] | None, **extra: Any) -> None:
        nonlocal segmenter
        net, seconds = train_segmenter(items, synthetic, args, seed)
        if arm == "classical":
            segmenter = net
        dice = evaluate(net, evaluation)
        runs.append({"k": k, "seed": seed, "arm": arm, "dice": dice, "seg_seconds": seconds,
                     "num_synthetic": len(synthetic) if synthetic else 0, **extra})
        log(f"k={k} seed={seed} {arm:10s} dice={dice:.3f} (seg {seconds:.0f} s) {extra}")
        if seed == args.seed_list[0] and synthetic:
            save_pairs(synthetic, os.path.join(args.output_dir, f"samples_k{k}_{arm}.png"), args.overwrite)

    for arm in args.arm_list:
        if arm == "classical":
            record(arm, None)
        elif arm == "elastic":
            record(arm, deformed_pairs(items, args.num_synthetic, seed * 1000))
        elif arm == "interp":
            record(arm, interpolated_pairs(items, args.num_synthetic, seed * 1000))
        elif arm in ("cond", "cond_pool", "cond_interp", "cond_pool_interp"):
            source = "pool" if arm in POOL_ARMS else "k"
            if source not in conditional_models:  # the _interp arms reuse the GVAE of their arm (same training)
                gvae, critic = gvae_parts(args, "conditional", seed)
                if source == "pool":
                    load_pretrained_weights(gvae, pretrained["gvae"], key=None)
                    load_pretrained_weights(critic, pretrained["critic"], key=None)
                iterations = args.adapt_iterations if source == "pool" else args.gvae_iterations
                seconds = train_gvae(gvae, critic, items, packer(True, augment=True), iterations, args, seed)
                conditional_models[source] = (gvae, critic, seconds)
            gvae, critic, seconds = conditional_models[source]
            pairs, acceptance = conditional_synthesis(gvae, critic, items, args, seed,
                                                      interpolated_pairs if arm.endswith("_interp") else None)
            record(arm, pairs, gvae_seconds=seconds, acceptance=acceptance)
        elif arm == "joint_pool":
            gvae, critic = gvae_parts(args, "joint", seed)
            load_pretrained_weights(gvae, pretrained["gvae"], key=None)
            load_pretrained_weights(critic, pretrained["critic"], key=None)
            gvae.encoder.requires_grad_(False)  # latents of unlabelled images stay those of the pre-trained encoder
            seconds = train_gvae(gvae, critic, items, packer(True, augment=True), args.adapt_iterations, args, seed,
                                 params=gvae.generator.parameters())
            real_images, real_labels = stack(items, "image").float() * 2 - 1, stack(items, "label").long()
            sigma, table = calibrate_posterior_sigma(gvae, real_images, real_labels, min_dice=args.sigma_min_dice,
                                                     generator=torch.Generator().manual_seed(seed))
            pool = stack(pretrained["pool"], "image").float() * 2 - 1
            rng = torch.Generator().manual_seed(seed)
            draws = max(1, int(np.ceil(args.num_synthetic / len(pool))))
            variants = [posterior_variants(gvae, pool, None, sigma=sigma, generator=rng) for _ in range(draws)]
            images = torch.cat([v[0] for v in variants])
            labels = torch.cat([v[1] for v in variants])
            keep = SyntheticPairFilter(NUM_CLASSES, segmenter=segmenter, min_dice=args.min_dice)
            accepted = keep(images, labels)
            pairs = [{"image": (im + 1) / 2, "label": lab} for im, lab, ok in zip(images, labels, accepted) if ok]
            record(arm, pairs, gvae_seconds=seconds, acceptance=keep.acceptance_rate, sigma=sigma,
                   sigma_table={str(s): d for s, d in table.items()})
    return runs


def pretrain(train: list[dict], args: argparse.Namespace, seed: int) -> dict:
    """Image-only GVAE on the unlabelled pool (the train split's images, labels hidden)."""
    pool = unlabelled_pool(train)
    gvae, critic = gvae_parts(args, "image", seed)
    seconds = train_gvae(gvae, critic, pool, packer(False, augment=False), args.pretrain_iterations, args, seed)
    return {"gvae": gvae.state_dict(), "critic": critic.state_dict(), "seconds": seconds, "pool": pool}


# --- outputs
def summarise(results: dict, args: argparse.Namespace) -> list[str]:
    runs, ks, arms = results["runs"], args.k_list, args.arm_list
    table: dict[tuple[int, str], list[float]] = {}
    by_seed: dict[tuple[int, str], dict[int, float]] = {}
    for r in runs:
        table.setdefault((r["k"], r["arm"]), []).append(r["dice"])
        by_seed.setdefault((r["k"], r["arm"]), {})[r["seed"]] = r["dice"]
    lines = ["| arm | " + " | ".join(f"k = {k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for arm in arms:
        cells = []
        for k in ks:
            m, s = mean_std(table.get((k, arm), [np.nan]))
            cells.append(f"{m:.3f} ± {s:.3f}")
        lines.append(f"| {ARM_NAMES[arm]} | " + " | ".join(cells) + " |")
    lines += ["", "Paired difference to classical (same seed, same k slices), mean ± std over seeds; a gain counts "
              "only when mean − std > 0 (outside the seed spread):", "",
              "| arm − classical | " + " | ".join(f"k = {k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    results["paired"] = {}
    for arm in arms:
        if arm == "classical":
            continue
        cells = []
        for k in ks:
            a, b = by_seed.get((k, arm), {}), by_seed.get((k, "classical"), {})
            diff = [a[s] - b[s] for s in a if s in b]
            m, s = mean_std(diff) if diff else (np.nan, np.nan)
            results["paired"][f"{arm}@{k}"] = {"mean": m, "std": s, "n": len(diff)}
            verdict = "" if len(diff) < 2 else (" (gain outside spread)" if m - s > 0 else
                                                 " (loss outside spread)" if m + s < 0 else " (within spread)")
            cells.append(f"{m:+.3f} ± {s:.3f}{verdict}")
        lines.append(f"| {ARM_NAMES[arm]} | " + " | ".join(cells) + " |")
    acc = [r for r in runs if r.get("acceptance") is not None]
    if acc:
        lines += ["", "Filter acceptance rate (mean over seeds):", "",
                  "| arm | " + " | ".join(f"k = {k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
        for arm in arms:
            rows = [r for r in acc if r["arm"] == arm]
            if rows:
                cells = [f"{np.mean([r['acceptance'] for r in rows if r['k'] == k]):.2f}"
                         if any(r["k"] == k for r in rows) else "-" for k in ks]
                lines.append(f"| {ARM_NAMES[arm]} | " + " | ".join(cells) + " |")
    return lines


def write_outputs(results: dict, args: argparse.Namespace) -> str:
    header = [
        "# Few-label benchmark: label-conditioned GVAE synthesis vs classical augmentation",
        "",
        f"Command: `{results['command']}`",
        "",
        f"- Data: embedded Colin27/AAL axial brain slices, {IMAGE_SIZE}x{IMAGE_SIZE}, 4 classes; k labelled slices "
        f"per seed from split `train` ({results['n_train']}); evaluated on split `{args.eval_split}` "
        f"({'15 held-out slices, never seen by a generator or segmenter' if args.eval_split == 'test' else 'train slices outside the k: tuning only'}). "
        f"Unlabelled pool (pool arms only): the {results['n_train']} train images, labels hidden.",
        f"- Segmenter: MONAI UNet (8, 16, 32, 64), DiceCE, Adam 1e-3, {args.seg_iterations} iterations x batch "
        f"{args.batch_size} in every arm; classical flip + affine on every item; synthetic arms: "
        f"{args.synthetic_fraction:.0%} of the items from {args.num_synthetic} pre-generated pairs.",
        f"- GVAE: conv ({getattr(args, 'upsample', 'transposed')} upsampling), latent {args.latent_size}, base channels "
        f"{args.base_channels}, batch {args.gvae_batch}, "
        f"w_kl {args.kl_weight}, w_adv {args.adv_weight}, w_gp 10; `cond`: {args.gvae_iterations} iterations on the k "
        f"slices; pool arms: {args.pretrain_iterations} image-only iterations on the pool (per seed) then "
        f"{args.adapt_iterations} on the k slices (budgets differ: see docs/fewlabels.md). Critic filter quantile "
        f"{args.critic_quantile}; joint_pool: sigma calibrated to label Dice >= {args.sigma_min_dice} on the k "
        f"slices, segmenter-agreement Dice >= {args.min_dice}.",
        f"- Mean GVAE seconds: {results['gvae_seconds']}; mean segmenter seconds per arm "
        f"{results['seg_seconds_mean']:.0f}; pre-training {results['pretrain_seconds']}.",
        f"- Hardware: {results['hardware']}; total wall time {results['wall_seconds'] / 60:.1f} min"
        + (f" (summed over {len(results['merged_from'])} merged runs)." if results.get("merged_from") else "."),
        "",
    ]
    lines = header + summarise(results, args) + [""]
    text = "\n".join(lines)
    with atomic_path(os.path.join(args.output_dir, "results.md"), overwrite=args.overwrite) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
    with atomic_path(os.path.join(args.output_dir, "results.json"), overwrite=args.overwrite) as tmp:
        with open(tmp, "w") as f:
            json.dump(results, f, indent=2, default=str)
    plot(results, args, os.path.join(args.output_dir, "dice.png"))
    return text


def plot(results: dict, args: argparse.Namespace, path: str) -> None:
    """Mean Dice per arm against k with ±1 std bars (the segmentation benchmark's plot)."""
    ks, arms = args.k_list, args.arm_list
    stats = {}
    for arm in arms:
        for k in ks:
            vals = [r["dice"] for r in results["runs"] if r["arm"] == arm and r["k"] == k]
            if vals:
                stats[(k, arm)] = mean_std(vals)
    colours = {arm: base.PLOT_COLOURS[ARMS.index(arm) % len(base.PLOT_COLOURS)] for arm in arms}
    base.plot_dice_against_k(stats, ks, {k: f"k={k}" for k in ks}, arms, ARM_SHORT, colours,
                             f"{args.eval_split} foreground Dice (mean ± std over seeds)", path, args.overwrite)


def saved_settings(results: dict, output_dir: str) -> argparse.Namespace:
    """The arguments a finished run was made with, writing into ``output_dir``."""
    saved = argparse.Namespace(**results["settings"])
    saved.k_list = [int(k) for k in saved.ks.split(",") if k.strip()]
    saved.seed_list = [int(s) for s in saved.seeds.split(",") if s.strip()]
    saved.arm_list = list(dict.fromkeys(r["arm"] for r in results["runs"]))
    saved.output_dir, saved.overwrite = output_dir, True
    return saved


def mean_gvae_seconds(runs: list[dict]) -> dict[str, float]:
    arms = dict.fromkeys(r["arm"] for r in runs if "gvae_seconds" in r)
    return {arm: round(float(np.mean([r["gvae_seconds"] for r in runs if r["arm"] == arm])), 1) for arm in arms}


def render(args: argparse.Namespace) -> dict:
    """Rewrite the table and plot of an earlier run from its results.json (e.g. after a change of layout)."""
    with open(os.path.join(args.output_dir, "results.json")) as f:
        results = json.load(f)
    print(write_outputs(results, saved_settings(results, args.output_dir)))
    return results


def merge(args: argparse.Namespace) -> dict:
    """Combine finished runs that differ only in their seeds (one process per seed) into one table.

    Raises:
        FileNotFoundError: a folder without results.json.
        ValueError: runs made with other settings, or the same (k, seed, arm) twice.
    """
    parts = []
    for folder in args.merge:
        path = os.path.join(folder, "results.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"--merge: {path} does not exist (run the benchmark there first)")
        with open(path) as f:
            parts.append(json.load(f))
    free = {"seeds", "output_dir", "overwrite", "render", "merge"}  # what may differ between merged runs

    def fixed(results: dict) -> dict:
        return {k: v for k, v in results["settings"].items() if k not in free}

    reference = fixed(parts[0])
    for folder, part in zip(args.merge[1:], parts[1:]):
        other = fixed(part)
        differ = sorted(k for k in set(reference) | set(other) if reference.get(k) != other.get(k))
        if differ:
            raise ValueError(f"--merge: {folder} was run with other settings than {args.merge[0]} ({differ}); "
                             "only runs that differ in --seeds can be merged")
    runs: list[dict] = []
    seen: set[tuple] = set()
    for folder, part in zip(args.merge, parts):
        for r in part["runs"]:
            key = (r["k"], r["seed"], r["arm"])
            if key in seen:
                raise ValueError(f"--merge: k={key[0]} seed={key[1]} arm={key[2]} appears twice (again in {folder})")
            seen.add(key)
            runs.append(r)
    base.prepare_output_dir(args.output_dir, args.overwrite)
    seeds = sorted({r["seed"] for r in runs})
    pretrain = [(p["pretrain_seconds"], len(p["settings"]["seeds"].split(","))) for p in parts if p["pretrain_seconds"]]
    results = dict(parts[0])
    results.update({
        "runs": runs,
        "command": " ; ".join(p["command"] for p in parts) + " ; python examples/fewlabels_benchmark.py --merge "
                   + " ".join(shlex.quote(f) for f in args.merge) + f" --output-dir {shlex.quote(args.output_dir)}",
        "gvae_seconds": mean_gvae_seconds(runs),
        "pretrain_seconds": round(sum(s * n for s, n in pretrain) / sum(n for _, n in pretrain), 1) if pretrain else None,
        "seg_seconds_mean": float(np.mean([r["seg_seconds"] for r in runs])),
        "wall_seconds": sum(p["wall_seconds"] for p in parts),  # compute time, summed over the merged processes
        "settings": {**parts[0]["settings"], "seeds": ",".join(str(s) for s in seeds), "output_dir": args.output_dir},
        "merged_from": list(args.merge),
    })
    print(write_outputs(results, saved_settings(results, args.output_dir)))
    return results


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.render:
        return render(args)
    if args.merge:
        return merge(args)
    command = "python examples/fewlabels_benchmark.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    base.prepare_output_dir(args.output_dir, args.overwrite)
    torch.set_num_threads(args.threads)
    train = load_brain_slices("train")
    evaluation = load_brain_slices("test") if args.eval_split == "test" else None
    start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{(time.perf_counter() - start) / 60:5.1f} min] {msg}", flush=True)

    runs: list[dict] = []
    pretrain_seconds = []
    for seed in args.seed_list:
        pretrained = None
        if any(a in POOL_ARMS for a in args.arm_list):
            pretrained = pretrain(train, args, seed)
            pretrain_seconds.append(pretrained["seconds"])
            log(f"seed={seed} pre-trained on the unlabelled pool ({pretrained['seconds']:.0f} s)")
        for k in args.k_list:
            runs += run_cell(k, seed, train, evaluation, args, pretrained, log)
    results = {
        "runs": runs, "n_train": len(train), "command": command,
        "gvae_seconds": mean_gvae_seconds(runs),
        "pretrain_seconds": round(float(np.mean(pretrain_seconds)), 1) if pretrain_seconds else None,
        "seg_seconds_mean": float(np.mean([r["seg_seconds"] for r in runs])),
        "wall_seconds": time.perf_counter() - start,
        "hardware": f"{platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs, torch "
                    f"{torch.__version__} with {args.threads} thread(s)",
        "settings": {k: v for k, v in vars(args).items() if not k.endswith("_list")},
    }
    print(write_outputs(results, args))
    return results


if __name__ == "__main__":
    main()
