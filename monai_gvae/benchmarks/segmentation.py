"""Downstream segmentation with synthetic mixing: the pieces of the segmentation and few-label benchmarks.

The protocol (docs/segmentation_benchmark.md): k labelled slices of the embedded 64x64 brain data drawn per
seed (:func:`labelled_items`); a MONAI ``UNet`` trained by MONAI's ``SupervisedTrainer`` with ``DiceCELoss`` on
those slices, optionally mixed with synthetic pairs through ``SyntheticMixDataset`` and augmented by
:func:`classical_transform` (:func:`train_segmenter`); foreground Dice on held-out slices
(:func:`dice_scores`). The segmentation benchmark's generator is a joint image+label GVAE trained on the same
k slices only (:func:`train_joint_gvae`), whose prior samples feed the GVAE arms (:func:`train_arm_segmenter`);
:func:`segmentation_report` writes its tables.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from monai.data import DataLoader
from monai.engines import SupervisedTrainer
from monai.handlers import LrScheduleHandler
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from monai.networks.nets import UNet
from monai.networks.utils import one_hot
from monai.transforms import (
    Compose,
    EnsureTyped,
    RandAdjustContrastd,
    RandAffined,
    RandBiasFieldd,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSharpend,
    ScaleIntensityRanged,
)
from monai.utils import set_determinism

from monai_gvae.benchmarks.plots import PLOT_COLOURS, plot_dice_against_k
from monai_gvae.benchmarks.report import markdown_table, write_json, write_text
from monai_gvae.benchmarks.stats import Verdict, mean_std, paired_difference
from monai_gvae.bundle import save_sample_grid
from monai_gvae.data import SyntheticMixDataset, labelled_subset
from monai_gvae.engines import GVAETrainer
from monai_gvae.losses import CriticLoss, EncoderGeneratorLoss
from monai_gvae.networks import GVAE, GVAECritic
from monai_gvae.transforms import GVAESamplePool, GVAESynthesized, PackImageLabeld
from monai_gvae.utils import module_device

__all__ = [
    "NUM_CLASSES",
    "IMAGE_SIZE",
    "KEYS",
    "CLASS_NAMES",
    "ARMS",
    "ARM_NAMES",
    "GVAE_ARMS",
    "SegmentationSettings",
    "labelled_items",
    "classical_transform",
    "INTENSITY_RANDOMISATIONS",
    "POLY_LR_POWER",
    "SEG_LR_SCHEDULES",
    "intensity_randomisation",
    "train_segmenter",
    "dice_scores",
    "train_joint_gvae",
    "save_gvae_samples",
    "train_arm_segmenter",
    "segmentation_report",
    "write_segmentation_outputs",
]

NUM_CLASSES = 4
"""Classes of the embedded brain labels: background, cortex, deep grey matter, cerebellum."""
IMAGE_SIZE = 64
KEYS = ["image", "label"]
CLASS_NAMES = ("cortex", "deep_grey_matter", "cerebellum")  # foreground classes 1..3

ARMS = ("no_aug", "classical", "gvae", "classical_gvae")
ARM_NAMES = {
    "no_aug": "no augmentation",
    "classical": "classical (flip + affine)",
    "gvae": "GVAE prior samples",
    "classical_gvae": "classical + GVAE",
}
GVAE_ARMS = ("gvae", "classical_gvae")
"""The segmentation benchmark's arms that mix GVAE prior samples into the segmenter's epochs."""
_CLASSICAL_ARMS = ("classical", "classical_gvae")


@dataclass(frozen=True)
class SegmentationSettings:
    """Training settings of the segmentation benchmark (the command line's, typed).

    Attributes:
        gvae_iterations: GVAE training iterations per (k, seed).
        seg_iterations: segmenter training iterations per arm.
        batch_size: batch of both (the GVAE's drawn with replacement from the k slices).
        synthetic_fraction: share of GVAE samples in the GVAE arms' epochs, in [0, 1).
        latent_size: GVAE latent size.
        base_channels: GVAE (conv architecture) base channels.
        seg_channels: UNet channels per level.
        gvae_lr: GVAE learning rate (the critic's is a tenth of it).
        seg_lr: segmenter learning rate.
        pool_size: ``GVAESamplePool`` size of the GVAE arms.
        workers: DataLoader workers of the segmenter.
    """

    gvae_iterations: int = 400
    seg_iterations: int = 400
    batch_size: int = 16
    synthetic_fraction: float = 0.5
    latent_size: int = 32
    base_channels: int = 16
    seg_channels: tuple[int, ...] = (8, 16, 32, 64)
    gvae_lr: float = 1e-3
    seg_lr: float = 1e-3
    pool_size: int = 128
    workers: int = 1

    @classmethod
    def from_namespace(cls, args: argparse.Namespace | Mapping[str, Any]) -> SegmentationSettings:
        """The settings of parsed command-line arguments (or a saved ``settings`` dict); ``seg_channels`` may be
        the command line's ``"8,16,32,64"``.

        Raises:
            ValueError: a ``seg_channels`` string that is not comma-separated integers.
        """
        values = dict(vars(args) if isinstance(args, argparse.Namespace) else args)
        kwargs = {f.name: values[f.name] for f in fields(cls) if f.name in values}
        if isinstance(kwargs.get("seg_channels"), str):
            try:
                kwargs["seg_channels"] = tuple(int(c) for c in kwargs["seg_channels"].split(","))
            except ValueError as e:
                raise ValueError(
                    f"seg_channels must be comma-separated integers, got {values['seg_channels']!r}.") from e
        return cls(**kwargs)


def labelled_items(train: Sequence[dict], k: str | int, seed: int) -> list[dict]:
    """k training items drawn without replacement by ``seed`` (all of them for ``"all"``), in their order.

    The draw is :func:`monai_gvae.data.labelled_subset`'s, so a bundle run and a benchmark seed see the same items.

    Args:
        train: the labelled training items.
        k: how many, as a number or its text; ``"all"`` keeps every item.
        seed: seed of the draw.

    Raises:
        ValueError: k outside ``[1, len(train)]``.

    Example::

        items = labelled_items(load_brain_slices("train"), "5", seed=0)
    """
    if k == "all":
        return labelled_subset(train, None)
    n = int(k)
    if not 1 <= n <= len(train):
        raise ValueError(f"k={n} is outside [1, {len(train)}] (the train split has {len(train)} slices).")
    return labelled_subset(train, n, seed)


def classical_transform(left_right_flip: bool = True) -> Compose:
    """Classical augmentation of image+label pairs: left-right flip and a small affine (rotation, scale, shift).

    Args:
        left_right_flip: flip the columns (axis 1) with probability 0.5: the patient's left-right axis in the
            radiological view of axial and coronal slices (the labels are not lateralised). ``False`` for slices
            without a left-right axis (sagittal), where it would flip anterior and posterior.
    """
    flip = [RandFlipd(keys=KEYS, prob=0.5, spatial_axis=1)] if left_right_flip else []
    return Compose([
        *flip,
        RandAffined(keys=KEYS, prob=0.8, rotate_range=0.26, scale_range=0.1, translate_range=4,
                    mode=("bilinear", "nearest"), padding_mode="zeros"),
    ])


INTENSITY_RANDOMISATIONS = ("none", "noise", "bias_contrast", "sharpen", "all")
"""Names :func:`intensity_randomisation` accepts."""


def intensity_randomisation(name: str) -> Compose | None:
    """Random intensity changes of an image+label pair's image (the label is untouched), for synthetic pairs
    whose images are cleaner than real ones (a generator's renders: exact boundaries, little texture).

    ``"noise"``: Gaussian noise (std drawn up to 0.03); ``"bias_contrast"``: a smooth multiplicative bias field
    (coefficients up to 0.3) and a gamma contrast change (0.7-1.5); ``"sharpen"``: unsharp masking
    (``RandGaussianSharpen``, alpha 2-5, moderate for 64 px slices); ``"all"``: the three in that order (sharpen,
    bias and contrast, noise). Each change applies with probability 0.8; the image is clipped to [0, 1] at the end.

    Args:
        name: one of :data:`INTENSITY_RANDOMISATIONS`; ``"none"`` gives ``None``.

    Returns:
        A MONAI ``Compose`` over the ``"image"`` key, or ``None`` for ``"none"``.

    Raises:
        ValueError: an unknown name.

    Example::

        train_segmenter(items, iterations=600, batch_size=16, seed=0, synthetic=renders, synthetic_fraction=0.1,
                        synthetic_transform=intensity_randomisation("all"))
    """
    if name not in INTENSITY_RANDOMISATIONS:
        raise ValueError(f"intensity randomisation must be one of {INTENSITY_RANDOMISATIONS}, got {name!r}.")
    if name == "none":
        return None
    sharpen = [RandGaussianSharpend(keys="image", prob=0.8, sigma1_x=(0.5, 1.0), sigma1_y=(0.5, 1.0),
                                    sigma2_x=0.5, sigma2_y=0.5, alpha=(2.0, 5.0))]
    bias_contrast = [RandBiasFieldd(keys="image", prob=0.8, coeff_range=(0.0, 0.3)),
                     RandAdjustContrastd(keys="image", prob=0.8, gamma=(0.7, 1.5))]
    noise = [RandGaussianNoised(keys="image", prob=0.8, std=0.03)]
    chosen = {"noise": noise, "bias_contrast": bias_contrast, "sharpen": sharpen,
              "all": sharpen + bias_contrast + noise}[name]
    return Compose([*chosen, ScaleIntensityRanged(keys="image", a_min=0.0, a_max=1.0, b_min=0.0, b_max=1.0,
                                                  clip=True)])


def _has_synthetic(synthetic: Sequence[dict] | GVAESamplePool | None) -> bool:
    if synthetic is None:
        return False
    return len(synthetic) > 0 if isinstance(synthetic, Sequence) else True


SEG_LR_SCHEDULES = ("constant", "poly")
"""The segmenter's learning-rate schedules (:func:`train_segmenter`): ``"constant"``, or ``"poly"``: nnU-Net's
``lr * (1 - t / T) ** 0.9`` at iteration t of T, so that the scored last iterate does not hang on its last batches."""

POLY_LR_POWER = 0.9


def train_segmenter(
    items: Sequence[dict],
    *,
    iterations: int,
    batch_size: int,
    seed: int,
    synthetic: Sequence[dict] | GVAESamplePool | None = None,
    synthetic_fraction: float = 0.0,
    classical: bool = True,
    channels: Sequence[int] = (8, 16, 32, 64),
    lr: float = 1e-3,
    num_workers: int = 0,
    shuffle_seed: int | None = None,
    num_classes: int = NUM_CLASSES,
    finetune_iterations: int = 0,
    left_right_flip: bool = True,
    item_transform: Callable | None = None,
    synthetic_transform: Callable | None = None,
    lr_schedule: str = "constant",
    device: str | torch.device = "cpu",
) -> tuple[UNet, float]:
    """Train a MONAI ``UNet`` (one residual unit per level, ``DiceCELoss``, Adam) on real and synthetic pairs.

    Every epoch of ``iterations * batch_size`` items is laid out by ``SyntheticMixDataset``: a
    ``synthetic_fraction`` of them synthetic, the rest the real ``items`` cycled. The initial weights depend on
    ``seed`` only, so arms of one seed start from the same network.

    Args:
        items: the real ``{"image", "label"}`` pairs (image ``(1, H, W)`` in [0, 1], label ``(1, H, W)``).
        iterations: training iterations (one epoch).
        batch_size: items per iteration.
        seed: seed of the initial weights, the epoch layout and the augmentation.
        synthetic: pre-generated pairs (images in [0, 1]), or a ``GVAESamplePool`` of a joint image+label GVAE
            whose prior samples are drawn on the fly; ``None`` or empty: real pairs only.
        synthetic_fraction: share of synthetic items per epoch, in [0, 1) (ignored without ``synthetic``).
        classical: apply :func:`classical_transform` to every item, real or synthetic.
        channels: UNet channels per level (strides 2).
        lr: Adam learning rate.
        num_workers: DataLoader workers.
        shuffle_seed: seed of the DataLoader's shuffle (``None``: torch's global generator, seeded by ``seed``).
        num_classes: output channels, background included.
        finetune_iterations: the last this many of the ``iterations`` train on the real pairs only (same network
            and optimiser): a schedule that learns from synthetic pairs first, then adapts to real images.
        left_right_flip: ``classical``'s left-right flip (:func:`classical_transform`).
        item_transform: applied to every item, real or synthetic, before ``classical`` (e.g.
            :func:`intensity_randomisation` when the "real" items are renders).
        synthetic_transform: applied to the pre-generated synthetic pairs only, before ``classical``.
        lr_schedule: one of :data:`SEG_LR_SCHEDULES`: ``"constant"`` (``lr`` throughout) or ``"poly"`` (``lr`` decayed
            to 0 over all ``iterations``, ``finetune_iterations`` included, stepped every iteration by MONAI's
            ``LrScheduleHandler``).
        device: where the network trains (``"cpu"``, ``"cuda"``, ``"cuda:1"``); the items stay on the host and the
            trainer copies each batch.

    Returns:
        ``(network in eval mode, on device, training seconds)``.

    Raises:
        ValueError: ``lr_schedule`` not in :data:`SEG_LR_SCHEDULES`; ``finetune_iterations`` outside
            ``[0, iterations)``, or a ``synthetic_transform`` with a
            ``GVAESamplePool`` (``SyntheticMixDataset`` refuses it: no pre-generated pairs to transform).

    Example::

        net, seconds = train_segmenter(labelled_items(train, 5, 0), iterations=300, batch_size=16, seed=0)
    """
    if lr_schedule not in SEG_LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {SEG_LR_SCHEDULES}, got {lr_schedule!r}.")
    set_determinism(seed)
    # built on the host and then moved, so that a seed gives the same initial weights on every device
    net = UNet(2, 1, num_classes, channels=tuple(channels), strides=(2,) * (len(channels) - 1),
               num_res_units=1).to(device)
    source: Any = None
    fraction = 0.0
    if _has_synthetic(synthetic):
        # a pool is wrapped here, after the network is built: the transform draws its seed from MONAI's shared state
        # pre-generated pairs keep only image and label, as the real items do: batches mix the two, and items with
        # other keys (a pseudo-labelled pool item's slice_index) would not collate
        source = [{key: item[key] for key in KEYS} for item in synthetic] if isinstance(synthetic, Sequence) else (
            GVAESynthesized(KEYS, synthetic, prob=1.0, intensity_range=(0.0, 1.0)))
        fraction = synthetic_fraction
    post = [item_transform] if item_transform is not None else []
    post += [classical_transform(left_right_flip)] if classical else []
    post.append(EnsureTyped(keys=KEYS, track_meta=False))
    real = [{"image": i["image"], "label": i["label"]} for i in items]
    if not 0 <= finetune_iterations < iterations:
        raise ValueError(f"finetune_iterations must be in [0, iterations={iterations}), got {finetune_iterations}.")
    optimizer = torch.optim.Adam(net.parameters(), lr)
    handlers = []
    if lr_schedule == "poly":  # one scheduler over both phases: the decay ends with the last iteration
        handlers.append(LrScheduleHandler(torch.optim.lr_scheduler.PolynomialLR(
            optimizer, total_iters=iterations, power=POLY_LR_POWER), epoch_level=False, print_lr=False))
    # phase 1: real and synthetic pairs; phase 2 (finetune_iterations > 0): the real pairs only
    phases = [(source, fraction, iterations - finetune_iterations, seed)]
    if finetune_iterations:
        phases.append((None, 0.0, finetune_iterations, seed + 1))
    start = time.perf_counter()
    for phase_source, phase_fraction, phase_iterations, phase_seed in phases:
        data = SyntheticMixDataset(real, phase_source, synthetic_fraction=phase_fraction, transform=Compose(post),
                                   synthetic_transform=synthetic_transform,
                                   epoch_length=phase_iterations * batch_size, seed=phase_seed)
        loader_kwargs: dict[str, Any] = {}
        if shuffle_seed is not None:
            loader_kwargs["generator"] = torch.Generator().manual_seed(shuffle_seed + phase_seed - seed)
        loader = DataLoader(data, batch_size=batch_size, shuffle=True, num_workers=num_workers, drop_last=True,
                            **loader_kwargs)
        SupervisedTrainer(
            device=torch.device(device), max_epochs=1, train_data_loader=loader, network=net, optimizer=optimizer,
            loss_function=DiceCELoss(to_onehot_y=True, softmax=True), train_handlers=handlers,
        ).run()
    return net.eval(), time.perf_counter() - start


@torch.no_grad()
def dice_scores(
    net: Callable[[torch.Tensor], torch.Tensor],
    test: Sequence[dict],
    num_classes: int = NUM_CLASSES,
    class_names: Sequence[str] = CLASS_NAMES,
) -> dict[str, float]:
    """Foreground Dice of a segmenter on held-out pairs.

    ``dice`` is the mean over the (item, class) pairs where the class is present in the label
    (``DiceMetric(include_background=False, ignore_empty=True)``); ``dice_<name>`` the mean per class.

    Args:
        net: maps images ``(N, 1, H, W)`` to logits ``(N, num_classes, H, W)``; a module gets them on its device.
        test: the ``{"image", "label"}`` pairs.
        num_classes: classes, background included.
        class_names: names of the foreground classes 1.. (``num_classes - 1`` of them).

    Returns:
        ``{"dice": ..., "dice_<name>": ...}``.

    Example::

        dice_scores(net, load_brain_slices("test"))["dice"]
    """
    images = torch.stack([torch.as_tensor(i["image"]) for i in test])
    labels = torch.stack([torch.as_tensor(i["label"]) for i in test])
    pred = net(images.to(module_device(net))).argmax(1, keepdim=True).cpu()
    metric = DiceMetric(include_background=False, reduction="none", ignore_empty=True)
    scores = metric(one_hot(pred, num_classes), one_hot(labels, num_classes))  # (N, C-1), NaN where absent
    out = {"dice": float(torch.nanmean(scores))}
    for c, name in enumerate(class_names):
        out[f"dice_{name}"] = float(torch.nanmean(scores[:, c]))
    return out


def train_joint_gvae(items: Sequence[dict], settings: SegmentationSettings, seed: int) -> tuple[GVAE, float]:
    """A joint image+label GVAE (conv architecture) trained on ``items`` only: no label leakage.

    ``settings.gvae_iterations`` iterations of ``settings.batch_size`` packed pairs drawn with replacement.

    Returns:
        ``(GVAE in eval mode, training seconds)``.
    """
    set_determinism(seed)
    gvae = GVAE(2, 1 + NUM_CLASSES, IMAGE_SIZE, latent_size=settings.latent_size, architecture="conv",
                base_channels=settings.base_channels, max_channels=128, image_channels=1, num_classes=NUM_CLASSES)
    critic = GVAECritic(2, 1 + NUM_CLASSES, IMAGE_SIZE, architecture="conv", base_channels=settings.base_channels,
                        max_channels=128)
    pack = Compose([PackImageLabeld("image", "label", num_classes=NUM_CLASSES),
                    EnsureTyped(keys="image", track_meta=False)])
    packed = [{"image": pack(dict(i))["image"]} for i in items]
    sampler = torch.utils.data.RandomSampler(packed, replacement=True,
                                             num_samples=settings.gvae_iterations * settings.batch_size,
                                             generator=torch.Generator().manual_seed(seed))
    loader = DataLoader(packed, batch_size=settings.batch_size, sampler=sampler, num_workers=0)
    trainer = GVAETrainer(
        device="cpu", max_epochs=1, train_data_loader=loader, network=gvae, critic=critic,
        optimizer=torch.optim.Adam(gvae.parameters(), settings.gvae_lr, betas=(0.5, 0.9)),
        critic_optimizer=torch.optim.Adam(critic.parameters(), settings.gvae_lr / 10, betas=(0.5, 0.9)),
        loss_function=EncoderGeneratorLoss(rec_weight=1.0, kl_weight=1e-3, adv_weight=1e-2,
                                           kl_warmup_iterations=min(200, settings.gvae_iterations)),
        critic_loss_function=CriticLoss(gp_weight=10.0), objective="gvae", seed=seed,
    )
    start = time.perf_counter()
    trainer.run()
    return gvae.eval(), time.perf_counter() - start


def save_gvae_samples(gvae: GVAE, path: str | os.PathLike, num_samples: int = 16) -> None:
    """A grid of ``num_samples`` prior samples (latent seed 0) of a joint image+label GVAE."""
    with torch.no_grad():
        samples = gvae.sample(num_samples, generator=torch.Generator().manual_seed(0))
    save_sample_grid(samples, path, 1, NUM_CLASSES)


def train_arm_segmenter(
    items: Sequence[dict], arm: str, pool: GVAESamplePool | None, settings: SegmentationSettings, seed: int
) -> tuple[UNet, float]:
    """The segmenter of one arm of the segmentation benchmark (:data:`ARMS`).

    Args:
        items: the k labelled slices.
        arm: ``no_aug`` (real slices only), ``classical`` (flip + affine), ``gvae`` (GVAE prior samples mixed
            in) or ``classical_gvae`` (both).
        pool: the GVAE arms' sample pool (of a GVAE trained on ``items`` only).
        settings: the benchmark's settings.
        seed: the seed of the (k, seed) cell.

    Raises:
        ValueError: an unknown arm, or a GVAE arm without a pool.
    """
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; choose from {ARMS}.")
    if arm in GVAE_ARMS and pool is None:
        raise ValueError(f"arm {arm!r} needs a GVAESamplePool.")
    return train_segmenter(
        items, iterations=settings.seg_iterations, batch_size=settings.batch_size, seed=seed,
        synthetic=pool if arm in GVAE_ARMS else None, synthetic_fraction=settings.synthetic_fraction,
        classical=arm in _CLASSICAL_ARMS, channels=settings.seg_channels, lr=settings.seg_lr,
        num_workers=settings.workers,
    )


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def segmentation_report(results: Mapping[str, Any]) -> list[str]:
    """The lines of the segmentation benchmark's ``results.md``: protocol header, mean ± std Dice per arm and k,
    paired differences to classical augmentation, and Dice per class.

    Args:
        results: what the benchmark writes to ``results.json``: ``runs`` (one dict per k, seed and arm with
            ``dice`` and ``dice_<class>``), ``settings`` (the command line's), ``command``, ``n_train``,
            ``n_test``, ``gvae_seconds_mean``, ``seg_seconds_mean``, ``hardware``, ``wall_seconds``.
    """
    settings = results["settings"]
    ks, arms, seeds = _split(settings["ks"]), _split(settings["arms"]), [int(s) for s in _split(settings["seeds"])]
    table = _dice_by_cell(results["runs"])
    n_train = results["n_train"]
    k_label = {k: (f"all ({n_train})" if k == "all" else k) for k in ks}
    header = ["arm"] + [f"k = {k_label[k]}" for k in ks]
    lines = [
        "# Segmentation benchmark: GVAE augmentation vs classical augmentation",
        "",
        f"Command: `{results['command']}`",
        "",
        f"- Data: embedded Colin27/AAL axial brain slices, {IMAGE_SIZE}x{IMAGE_SIZE}, 4 classes; k labelled slices "
        f"drawn per seed from split `train` ({n_train} slices); held-out split `test` ({results['n_test']} slices), "
        "never seen by a generator or segmenter.",
        f"- GVAE: conv architecture, latent {settings['latent_size']}, base channels {settings['base_channels']}, "
        f"trained on the same k labelled slices only, {settings['gvae_iterations']} iterations x batch "
        f"{settings['batch_size']} (mean {results['gvae_seconds_mean']:.0f} s each).",
        f"- Segmenter: MONAI UNet channels ({settings['seg_channels']}), DiceCE, Adam lr {settings['seg_lr']}, "
        f"{settings['seg_iterations']} iterations x batch {settings['batch_size']} in every arm (mean "
        f"{results['seg_seconds_mean']:.0f} s per arm, {settings['workers']} loader worker(s)); GVAE arms: "
        f"{settings['synthetic_fraction']:.0%} of each epoch's items are GVAE prior samples (`SyntheticMixDataset` + "
        "`GVAESynthesized`).",
        "- Metric: foreground Dice (cortex, deep grey matter, cerebellum) on the held-out slices, mean over "
        f"present (slice, class) pairs; mean ± standard deviation over {len(seeds)} seed(s) "
        f"({', '.join(map(str, seeds))}).",
        f"- Hardware: {results['hardware']}; total wall time {results['wall_seconds'] / 60:.1f} min.",
        "",
    ]
    lines += markdown_table(header, ([ARM_NAMES[arm]] + ["{:.3f} ± {:.3f}".format(*mean_std(table[(k, arm)]))
                                                        for k in ks] for arm in arms))
    if "classical" in arms:
        lines += ["", "Paired difference to classical augmentation (same seed, same k subset), mean ± std over seeds:",
                  ""]
        lines += markdown_table(["arm − classical"] + header[1:],
                                ([ARM_NAMES[arm]] + [_paired_cell(results["runs"], k, arm) for k in ks]
                                 for arm in arms if arm != "classical"))
    lines += ["", "Per class (mean over seeds; cortex / deep grey matter / cerebellum):", ""]
    per_class = []
    for arm in arms:
        cells = []
        for k in ks:
            runs = [r for r in results["runs"] if r["k"] == k and r["arm"] == arm]
            cells.append(" / ".join(f"{np.mean([r[f'dice_{c}'] for r in runs]):.2f}" for c in CLASS_NAMES))
        per_class.append([ARM_NAMES[arm]] + cells)
    lines += markdown_table(header, per_class)
    lines.append("")
    return lines


def _dice_by_cell(runs: Sequence[Mapping[str, Any]]) -> dict[tuple[Any, str], list[float]]:
    table: dict[tuple[Any, str], list[float]] = {}
    for r in runs:
        table.setdefault((r["k"], r["arm"]), []).append(r["dice"])
    return table


_SEGMENTATION_VERDICTS = {Verdict.NO_SPREAD: " (1 seed: no spread)", Verdict.WITHIN: " (within spread)"}


def _paired_cell(runs: Sequence[Mapping[str, Any]], k: Any, arm: str) -> str:
    def by_seed(name: str) -> dict[int, float]:
        return {r["seed"]: r["dice"] for r in runs if r["k"] == k and r["arm"] == name}

    diff = paired_difference(by_seed(arm), by_seed("classical"))
    return f"{diff.mean:+.3f} ± {diff.std:.3f}{_SEGMENTATION_VERDICTS.get(diff.spread_verdict, '')}"


def write_segmentation_outputs(
    results: Mapping[str, Any], output_dir: str | os.PathLike, overwrite: bool, write_results_json: bool = True
) -> str:
    """Write ``results.md`` (:func:`segmentation_report`), ``results.json`` and ``dice.png`` into ``output_dir``.

    Returns:
        the text of ``results.md``.

    Raises:
        FileExistsError: an output exists and ``overwrite`` is false.
    """
    text = "\n".join(segmentation_report(results))
    write_text(os.path.join(output_dir, "results.md"), text, overwrite)
    if write_results_json:
        write_json(os.path.join(output_dir, "results.json"), results, overwrite)
    settings = results["settings"]
    ks, arms = _split(settings["ks"]), _split(settings["arms"])
    k_label = {k: (f"all ({results['n_train']})" if k == "all" else k) for k in ks}
    stats = {key: mean_std(v) for key, v in _dice_by_cell(results["runs"]).items()}
    colours = {arm: PLOT_COLOURS[[0, 3, 2, 1][ARMS.index(arm) % 4]] for arm in arms}
    plot_dice_against_k(stats, ks, {k: f"k={k_label[k]}" for k in ks}, arms, ARM_NAMES, colours,
                        "held-out foreground Dice (mean ± std over seeds)", os.path.join(output_dir, "dice.png"),
                        overwrite)
    return text
