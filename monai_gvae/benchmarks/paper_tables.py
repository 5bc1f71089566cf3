"""The GVAE paper's Tables 4-7 on your own data: GVAE, VAE, WGAN-GP, VAE-GAN and alpha-GAN trained by the same code
and scored.

The five objectives of :class:`monai_gvae.engines.GVAETrainer` (``gvae``, ``vae``, ``wgan_gp``, ``vaegan``,
``alpha_gan``) are trained with the same networks, data, batch size and budget (:func:`train_run`; alpha-GAN adds its
code critic, :class:`~monai_gvae.networks.CodeCritic`), GVAE's latent size is swept
(:func:`plan_runs`), and every run is scored with ``monai_gvae.metrics`` (:func:`evaluate_run`) against test
images prepared once (:func:`prepare_evaluation`). :mod:`monai_gvae.benchmarks.paper_report` writes the tables.

Two budgets (``budget_iterations``: every run the same iterations; ``budget_minutes``: the same wall-clock training
time). While a model trains, :func:`make_curve_scorer` scores it every ``curve_every`` iterations on a validation
split carved from the training images (never the test split), so the tables can show where each curve flattens;
the scoring time is not counted in the budget. The Frechet distance's feature classifier is trained on the training
split until its accuracy on the validation split reaches ``classifier_target`` (its test accuracy goes in the
header). One process may run a subset of the seeds (``run_seeds``); the report merges such runs.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Events
from torch.utils.data import DataLoader, Dataset

from monai_gvae.bundle import save_sample_grid
from monai_gvae.data import ImageFolderDataset, LSUNDataset, MNISTDataset
from monai_gvae.engines import GVAETrainer
from monai_gvae.losses import CriticLoss, EncoderGeneratorLoss, FeatureMatchingLoss
from monai_gvae.metrics import (
    GVAELikelihood,
    classifier_accuracy,
    elbo,
    fit_pixel_scale,
    frechet_distance,
    gaussian_mmd,
    importance_weighted_bound,
    linear_mmd,
    median_heuristic,
    ms_ssim_pairs,
    ms_ssim_settings,
    sharpness_ratio,
    train_feature_classifier,
)
from monai_gvae.networks import GVAE, CodeCritic, GVAECritic
from monai_gvae.utils import atomic_path

__all__ = [
    "BUDGET_CLOCKS",
    "CURVE_METRICS",
    "DATASETS",
    "MODELS",
    "MODEL_NAMES",
    "NO_POSTERIOR_VARIANCE",
    "PaperTablesSettings",
    "load_dataset",
    "read_image_folder",
    "pad_to",
    "center_crop",
    "train_run",
    "generate_samples",
    "prepare_evaluation",
    "make_curve_scorer",
    "report_context",
    "plan_runs",
    "evaluate_run",
    "save_run",
]

DATASETS = ("mnist", "fashion-mnist", "lsun", "celebahq", "folder")
MODELS = ("gvae", "vae", "wgan_gp", "vaegan", "alpha_gan")
MODEL_NAMES = {"gvae": "GVAE", "vae": "VAE", "wgan_gp": "WGAN-GP", "vaegan": "VAE-GAN", "alpha_gan": "alpha-GAN"}
NO_POSTERIOR_VARIANCE = ("alpha_gan",)
"""Models with an encoder but no posterior variance (alpha-GAN's deterministic encoder): reconstruction errors are
measured, the ELBO, KL and importance-weighted bound are not defined."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
_IDX_DATASETS = ("mnist", "fashion-mnist")
_LOGGED_LOSSES = ("loss_g", "loss_d", "loss_rec", "loss_kl", "wasserstein")
BUDGET_CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "process": time.process_time}
"""The clocks ``budget_minutes`` (and the reported training seconds) can be counted on."""

CURVE_METRICS = ("mmd_gaussian", "fd", "sharpness_ratio")
"""What :func:`make_curve_scorer` measures on the validation split during training."""


@dataclass
class PaperTablesSettings:
    """Everything a paper-tables run is made with (the command line's options, in its order; written to
    ``results.json`` under ``"args"``). :func:`prepare_evaluation` returns a copy with the sizes it settled
    (``image_size``, and ``eval_samples``, ``mmd_batch``, ``iw_images`` reduced to what the data holds).

    See ``python examples/paper_tables.py --help`` for each option.
    """

    dataset: str
    data_dir: str
    budget_minutes: float | None = None
    budget_iterations: int | None = None
    # the clock of ``budget_minutes``: "wall" (time.perf_counter) or "process" (this process's CPU time: with one
    # thread, close to a dedicated core's wall clock; time-sharing the cores still makes each iteration dearer)
    budget_clock: str = "wall"
    seeds: int = 3
    run_seeds: list[int] | None = None
    sweep_seeds: int = 1
    latent_sizes: list[int] = field(default_factory=lambda: [100, 500, 1000, 2000])
    latent_size: int = 1000
    models: list[str] = field(default_factory=lambda: list(MODELS))
    output_dir: str = "runs/paper_tables"
    overwrite: bool = False
    quick: bool = False
    image_size: int | None = None
    channels: int = 1
    binarize: bool = False
    likelihood: str = "discretized_logistic"
    train_limit: int | None = None
    architecture: str = "conv"
    # the generator's upsampling; None: the architecture's own (conv: transposed convolutions)
    upsample: str | None = None
    base_channels: int = 16
    max_channels: int = 128
    batch_size: int = 64
    lr: float = 1e-3
    critic_lr: float = 1e-4
    rec_weight: float = 1.0
    kl_weight: float = 1e-3
    kl_warmup: int = 200
    adv_weight: float = 1e-2
    gp_weight: float = 10.0
    n_critic: int = 1
    eval_samples: int = 1000
    mmd_batch: int = 500
    lik_images: int = 1000
    elbo_samples: int = 4
    iw_k: int = 5000
    iw_images: int = 24
    iw_chunk: int = 64
    classifier_epochs: int = 30
    classifier_target: float = 0.91
    classifier_channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    classifier_hidden: int | None = 128
    classifier_lr_decay: float = 0.8
    val_images: int = 5000
    curve_every: int = 250
    curve_samples: int = 1000
    threads: int = 1


# ----------------------------------------------------------------------------------------------- data
def _dict_dataset_arrays(ds: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 ``(N, C, H, W)`` images (and labels) from a dataset of ``{"image", "label"}`` dicts."""
    images, labels = [], []
    for i in range(len(ds)):
        item = ds[i]
        img = np.asarray(item["image"])
        if img.dtype != np.uint8:
            img = np.asarray(img, dtype=np.float32)
            img = np.rint(img * 255.0 if img.max() <= 1.0 else img).clip(0, 255).astype(np.uint8)
        images.append(img if img.ndim == 3 else img[None])
        if item.get("label") is not None:
            labels.append(int(np.asarray(item["label"]).reshape(-1)[0]))
    return np.stack(images), (np.asarray(labels, dtype=np.int64) if len(labels) == len(images) else None)


def read_image_folder(data_dir: Path, image_size: int, channels: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Images of a folder (recursively, sorted numerically), resized and centre-cropped; class folders -> labels.

    Returns:
        uint8 ``(N, channels, image_size, image_size)`` images and int64 labels (``None`` for one folder).

    Raises:
        FileNotFoundError: no images under ``data_dir``.
        ValueError: an unreadable image (the message names it).
    """
    from PIL import Image

    files = [p for p in data_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {data_dir}.")
    files.sort(key=lambda p: (str(p.parent), int(p.stem) if p.stem.isdigit() else math.inf, p.name))
    images = []
    for p in files:
        try:
            with Image.open(p) as im:
                im = im.convert("L" if channels == 1 else "RGB")
                scale = image_size / min(im.size)
                size = (max(image_size, round(im.width * scale)), max(image_size, round(im.height * scale)))
                im = im.resize(size, Image.BILINEAR)
                left, top = (im.width - image_size) // 2, (im.height - image_size) // 2
                arr = np.asarray(im.crop((left, top, left + image_size, top + image_size)), dtype=np.uint8)
        except OSError as e:
            raise ValueError(f"cannot read image {p}: {e}") from e
        images.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
    classes = sorted({p.parent for p in files})
    labels = np.asarray([classes.index(p.parent) for p in files], dtype=np.int64) if len(classes) > 1 else None
    return np.stack(images), labels


def load_dataset(
    name: str, data_dir: str, image_size: int, channels: int, test_fraction: float = 0.1
) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Train and test images at their native size (MNIST 28x28), uint8 ``(N, C, H, W)``, with labels or ``None``.

    MNIST / Fashion-MNIST are read from their IDX files (:class:`monai_gvae.data.MNISTDataset`), LSUN with
    :class:`~monai_gvae.data.LSUNDataset` (its ``val`` split as test) and CelebA-HQ with
    :class:`~monai_gvae.data.ImageFolderDataset`; a ``folder`` with :func:`read_image_folder`. CelebA-HQ and
    folders hold out their last ``test_fraction`` as test images.

    Args:
        name: one of :data:`DATASETS`.
        data_dir: the IDX folder, LMDB folder or image folder.
        image_size: the size images are resized to (not MNIST's).
        channels: 1 or 3 (folders).
        test_fraction: the held-out share of a folder.

    Returns:
        ``{"train": (images, labels), "test": (images, labels)}``.

    Raises:
        FileNotFoundError: ``data_dir`` or a file the reader needs is missing.
        ValueError: a malformed file, or too few images for a split.
    """
    root = Path(data_dir)
    if not root.exists():
        raise FileNotFoundError(f"--data-dir {root} does not exist.")
    if name in _IDX_DATASETS:
        out = {}
        for split in ("train", "test"):
            ds = MNISTDataset(root, split=split)
            out[split] = (ds.images[:, None], ds.labels.astype(np.int64))
        return out
    if name == "lsun":
        return {split: _dict_dataset_arrays(LSUNDataset(str(root), split=s, image_size=image_size))
                for split, s in (("train", "train"), ("test", "val"))}
    if name == "celebahq":
        images, labels = _dict_dataset_arrays(ImageFolderDataset(str(root), image_size=image_size))
    else:
        images, labels = read_image_folder(root, image_size, channels)
    n_test = max(2, int(round(len(images) * test_fraction)))
    if len(images) - n_test < 2:
        raise ValueError(f"{root} holds {len(images)} images: too few for a train/test split.")
    cut = len(images) - n_test
    return {
        "train": (images[:cut], None if labels is None else labels[:cut]),
        "test": (images[cut:], None if labels is None else labels[cut:]),
    }


def pad_to(images: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad (black) uint8 images symmetrically to ``size`` (MNIST's 28 -> 32 for the networks).

    Raises:
        ValueError: images larger than ``size``.
    """
    h, w = images.shape[-2:]
    if h > size or w > size:
        raise ValueError(f"images of {h}x{w} do not fit --image-size {size}.")
    ph, pw = size - h, size - w
    return np.pad(images, ((0, 0), (0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))


def center_crop(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """The central ``size x size`` of images (``None`` or the full size: unchanged)."""
    if size is None or x.shape[-1] == size:
        return x
    s = (x.shape[-1] - size) // 2
    return x[..., s : s + size, s : s + size]


class _Uint8Images(Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i]}


def _padded01(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 images zero-padded to ``size``, as float in [0, 1]."""
    return torch.from_numpy(pad_to(images, size).astype(np.float32) / 255.0)


def _prepare_batch(batchdata: dict, device: torch.device, non_blocking: bool = False, **kwargs: Any):
    """uint8 [0, 255] -> float [-1, 1] on the device (the networks' range)."""
    return batchdata["image"].to(device, non_blocking=non_blocking).float() / 127.5 - 1.0, None


# ----------------------------------------------------------------------------------------------- training
def _build(settings: PaperTablesSettings, objective: str, latent: int, channels: int, seed: int):
    """The networks of one run: the GVAE, the critic (not for the VAE) and alpha-GAN's code critic."""
    torch.manual_seed(seed)
    gvae = GVAE(2, channels, settings.image_size, latent_size=latent, architecture=settings.architecture,
                base_channels=settings.base_channels, max_channels=settings.max_channels, upsample=settings.upsample)
    critic = None
    if objective != "vae":
        critic = GVAECritic(spatial_dims=2, in_channels=channels, image_size=settings.image_size,
                            architecture=settings.architecture, base_channels=settings.base_channels,
                            max_channels=settings.max_channels)
    code_critic = CodeCritic(latent) if objective == "alpha_gan" else None
    return gvae, critic, code_critic


def train_run(
    settings: PaperTablesSettings, objective: str, latent: int, seed: int, train_images: torch.Tensor,
    log: Callable[[str], None] = print,
    scorer: Callable[[GVAE], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Train one model under the budget (``budget_iterations``, or ``budget_minutes`` on ``budget_clock``).

    Args:
        settings: the run's settings (``image_size`` settled).
        objective: one of :data:`MODELS`.
        latent: latent size.
        seed: seed of the initial weights, the shuffle and the trainer.
        train_images: uint8 ``(N, C, image_size, image_size)``.
        log: progress messages.
        scorer: called with the model (in eval mode, then put back) every ``settings.curve_every`` iterations and
            after the last one (e.g. :func:`make_curve_scorer`); its time is excluded from the wall-clock budget
            and from ``train_seconds``, and it draws nothing from the training's random streams.

    Returns:
        ``{"gvae", "critic" (None for the VAE), "code_critic" (alpha-GAN's, else None), "iterations",
        "train_seconds", "losses", "curve", "curve_seconds"}``: losses every 50 iterations; ``curve`` one
        ``{"iteration", "train_seconds", **scores}`` per scoring (empty without a scorer).
    """
    if settings.budget_clock not in BUDGET_CLOCKS:
        raise ValueError(f"budget_clock must be one of {sorted(BUDGET_CLOCKS)}, got {settings.budget_clock!r}")
    gvae, critic, code_critic = _build(settings, objective, latent, train_images.shape[1], seed)
    opt = torch.optim.Adam(gvae.parameters(), lr=settings.lr, betas=(0.5, 0.9))
    critic_opt = (torch.optim.Adam(critic.parameters(), lr=settings.critic_lr, betas=(0.5, 0.9))
                  if critic is not None else None)
    # alpha-GAN's code critic at the image critic's learning rate and penalty weight
    code_opt = (torch.optim.Adam(code_critic.parameters(), lr=settings.critic_lr, betas=(0.5, 0.9))
                if code_critic is not None else None)
    loader = DataLoader(_Uint8Images(train_images), batch_size=settings.batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    trainer = GVAETrainer(
        device="cpu", max_epochs=10**6, train_data_loader=loader, network=gvae, critic=critic,
        optimizer=opt, critic_optimizer=critic_opt,
        loss_function=EncoderGeneratorLoss(settings.rec_weight, settings.kl_weight, settings.adv_weight,
                                           settings.kl_warmup),
        critic_loss_function=CriticLoss(settings.gp_weight), objective=objective, n_critic=settings.n_critic,
        code_critic=code_critic, code_critic_optimizer=code_opt,
        code_critic_loss_function=CriticLoss(settings.gp_weight),
        feature_matching_loss=FeatureMatchingLoss(), seed=seed, prepare_batch=_prepare_batch,
    )
    now = BUDGET_CLOCKS[settings.budget_clock]
    clock: dict[str, float] = {"scoring": 0.0}
    losses: list[dict[str, float]] = []
    curve: list[dict[str, float]] = []

    def training_seconds() -> float:
        return now() - clock["start"] - clock["scoring"]

    def score(iteration: int) -> None:
        start, seconds = now(), training_seconds()
        was_training = gvae.training
        gvae.eval()
        with torch.no_grad():
            curve.append({"iteration": iteration, "train_seconds": round(seconds, 2), **scorer(gvae)})
        gvae.train(was_training)
        clock["scoring"] += now() - start

    @trainer.on(Events.STARTED)
    def _start(engine):
        clock["start"] = now()

    @trainer.on(Events.ITERATION_COMPLETED)
    def _budget(engine):
        elapsed = training_seconds()
        if engine.state.iteration % 50 == 0 or engine.state.iteration == 1:
            out = engine.state.output
            losses.append({"iteration": engine.state.iteration, "seconds": round(elapsed, 2),
                           **{k: round(float(out[k]), 5) for k in _LOGGED_LOSSES}})
        if (settings.budget_iterations and engine.state.iteration >= settings.budget_iterations) or (
            settings.budget_minutes and elapsed >= 60.0 * settings.budget_minutes
        ):
            engine.terminate()
        elif scorer is not None and settings.curve_every and engine.state.iteration % settings.curve_every == 0:
            score(engine.state.iteration)

    trainer.run()
    wall = training_seconds()
    iters = trainer.state.iteration
    if scorer is not None:
        score(iters)  # the last point: where the budget ended
    log(f"  trained {MODEL_NAMES[objective]} z={latent} seed={seed}: {iters} iterations in {wall:.1f} s"
        + (f" (+{clock['scoring']:.1f} s scoring {len(curve)} curve points)" if curve else ""))
    return {"gvae": gvae.eval(), "critic": critic, "code_critic": code_critic, "iterations": iters,
            "train_seconds": wall, "losses": losses, "curve": curve, "curve_seconds": clock["scoring"]}


def plan_runs(settings: PaperTablesSettings) -> list[tuple[str, str, int, int]]:
    """``(table, model, latent, seed)`` of every run: the main table seed by seed with the models interleaved (load
    changes on a shared machine hit every model alike), then the latent sweep (minus the main GVAE runs it holds);
    with ``run_seeds``, only the runs of those seeds (one process per seed, merged by
    :func:`monai_gvae.benchmarks.paper_report.merge_results`)."""
    plan = [("main", m, settings.latent_size, s) for s in range(settings.seeds) for m in settings.models]
    plan += [("sweep", "gvae", z, s) for s in range(settings.sweep_seeds) for z in settings.latent_sizes
             if not (z == settings.latent_size and "gvae" in settings.models and s < settings.seeds)]
    if settings.run_seeds is not None:  # this process's share: every run of its seeds (merged later)
        plan = [run for run in plan if run[3] in settings.run_seeds]
    return plan


# ----------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def generate_samples(gvae: GVAE, n: int, seed: int, crop: int | None, batch: int = 256) -> torch.Tensor:
    """``n`` prior samples in [0, 1], centre-cropped to ``crop``, from latents of a generator seeded by ``seed``."""
    rng = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, n, batch):
        z = torch.randn(min(batch, n - start), gvae.latent_size, generator=rng)
        out.append(((gvae.decode(z).float() + 1.0) / 2.0).clamp(0, 1))
    return center_crop(torch.cat(out), crop)


def _batched_mmds(fake: torch.Tensor, real: torch.Tensor, batch: int, bandwidths: Any) -> tuple[float, float]:
    """Gaussian and linear MMD, averaged over disjoint batches of ``batch`` generated vs ``batch`` real images."""
    n = min(fake.shape[0], real.shape[0]) // batch
    pairs = [(fake[i * batch : (i + 1) * batch], real[i * batch : (i + 1) * batch]) for i in range(n)]
    return (float(np.mean([float(gaussian_mmd(f, r, bandwidths)) for f, r in pairs])),
            float(np.mean([float(linear_mmd(f, r)) for f, r in pairs])))


def prepare_evaluation(
    settings: PaperTablesSettings, log: Callable[[str], None] = print
) -> tuple[PaperTablesSettings, dict[str, Any]]:
    """Load the data and prepare what every run is scored against.

    A validation split (the last ``val_images`` of the training images, at most a tenth of them) is set aside for
    the curves and the classifier's stopping rule; the models train on the rest. Test images for MMD, MS-SSIM,
    FD and sharpness and for the likelihood figures; MMD bandwidths by the median heuristic on training images; a
    feature classifier for the Frechet distance trained on the training split (when the data has labels); and the
    reference scores of real training images against the same test images (the floor of every metric).

    Returns:
        the settings with the sizes settled (``image_size``; ``eval_samples``, ``mmd_batch``, ``iw_images``,
        ``val_images`` and ``curve_samples`` capped by the data) and the context dict :func:`evaluate_run`,
        :func:`make_curve_scorer` and the report read.
    """
    native_size = 28 if settings.dataset in _IDX_DATASETS else (settings.image_size or 64)
    settings = replace(settings, image_size=settings.image_size or (32 if settings.dataset in _IDX_DATASETS else 64))
    data = load_dataset(settings.dataset, settings.data_dir, native_size, settings.channels)
    train_np, train_labels = data["train"]
    test_np, test_labels = data["test"]
    # the validation split: the end of the training images, before any --train-limit (so its size does not
    # depend on the limit); never the test images
    n_val = min(settings.val_images, train_np.shape[0] // 10)
    if n_val != settings.val_images:
        log(f"validation split: {n_val} images (at most a tenth of the {train_np.shape[0]} training images)")
        settings = replace(settings, val_images=n_val)
    val_np = train_np[train_np.shape[0] - n_val :]
    val_labels = None if train_labels is None else train_labels[train_labels.shape[0] - n_val :]
    train_np = train_np[: train_np.shape[0] - n_val]
    train_labels = None if train_labels is None else train_labels[: train_labels.shape[0] - n_val]
    if settings.train_limit:
        train_np = train_np[: settings.train_limit]
        train_labels = None if train_labels is None else train_labels[: settings.train_limit]
    if settings.binarize:
        train_np, val_np, test_np = (np.where(a >= 128, 255, 0).astype(np.uint8) for a in (train_np, val_np, test_np))
    native = train_np.shape[-1]
    test01 = torch.from_numpy(test_np.astype(np.float32) / 255.0)  # native size
    train01 = torch.from_numpy(train_np.astype(np.float32) / 255.0)
    if test01.shape[0] < settings.eval_samples:
        log(f"only {test01.shape[0]} test images: --eval-samples reduced to {test01.shape[0]}")
        settings = replace(settings, eval_samples=test01.shape[0])
    settings = replace(settings, mmd_batch=min(settings.mmd_batch, settings.eval_samples),
                       curve_samples=min(settings.curve_samples, n_val) if n_val >= 2 else 0)
    g = torch.Generator().manual_seed(1234)
    test_perm = torch.randperm(test01.shape[0], generator=g)
    train_perm = torch.randperm(train01.shape[0], generator=g)
    ctx: dict[str, Any] = {
        "crop": native if native != settings.image_size else None, "native": native,
        "channels": int(train_np.shape[1]), "n_train": int(train_np.shape[0]), "n_test": int(test01.shape[0]),
        "n_val": int(n_val),
        "train_images": torch.from_numpy(pad_to(train_np, settings.image_size).copy()),
        "real_eval": test01[test_perm[: settings.eval_samples]],
        "real_val": torch.from_numpy(val_np[: settings.curve_samples].astype(np.float32) / 255.0),
        "test_lik": _padded01(test_np, settings.image_size)[: settings.lik_images],
        "train_fit": _padded01(train_np[train_perm[:500].numpy()], settings.image_size),
        "ms_ssim_settings": ms_ssim_settings((native, native)),
    }
    ctx["n_lik"] = int(ctx["test_lik"].shape[0])
    settings = replace(settings, iw_images=min(settings.iw_images, ctx["n_lik"]))
    bw_ref = train01[train_perm[: min(500, train01.shape[0])]]
    ctx.update(bandwidths=median_heuristic(bw_ref), n_bandwidth=int(bw_ref.shape[0]),
               mmd_batches=settings.eval_samples // settings.mmd_batch)
    log(f"data: {ctx['n_train']} train, {n_val} validation, {ctx['n_test']} test, native {native}px, network "
        f"{settings.image_size}px; MMD bandwidths {tuple(round(b, 3) for b in ctx['bandwidths'])}")
    _fit_feature_classifier(settings, ctx, train_np, train_labels, val_np, val_labels, test_np, test_labels, log)
    _reference_scores(settings, ctx, train01, train_perm, log)
    return settings, ctx


def _fit_feature_classifier(settings, ctx, train_np, train_labels, val_np, val_labels, test_np, test_labels,
                            log) -> None:
    """The Frechet distance's feature extractor: a small CNN trained on the training split only, until its
    accuracy on the validation split reaches ``classifier_target`` (at most ``classifier_epochs`` epochs); its test
    accuracy is measured once, for the header, and chooses nothing."""
    ctx["classifier"] = None
    if train_labels is None or test_labels is None or len(np.unique(train_labels)) <= 1:
        return
    t0 = time.perf_counter()
    use_val = val_labels is not None and len(val_labels) > 0 and settings.classifier_target > 0
    clf = train_feature_classifier(torch.from_numpy(train_np), torch.from_numpy(train_labels),
                                   num_classes=int(max(train_labels.max(), test_labels.max())) + 1,
                                   epochs=settings.classifier_epochs, seed=0,
                                   channels=tuple(settings.classifier_channels), hidden=settings.classifier_hidden,
                                   lr_decay=settings.classifier_lr_decay,
                                   val_images=torch.from_numpy(val_np) if use_val else None,
                                   val_labels=torch.from_numpy(val_labels) if use_val else None,
                                   target_accuracy=settings.classifier_target if use_val else None)
    ctx["classifier"] = clf
    ctx["classifier_accuracy"] = classifier_accuracy(clf, torch.from_numpy(test_np), torch.from_numpy(test_labels))
    ctx["classifier_val_accuracy"] = clf.val_accuracy
    ctx["classifier_epochs_trained"] = clf.epochs_trained
    ctx["classifier_seconds"] = time.perf_counter() - t0
    with torch.no_grad():
        ctx["real_features"] = clf.features(ctx["real_eval"]).double()
        ctx["val_features"] = clf.features(ctx["real_val"]).double() if ctx["real_val"].shape[0] >= 2 else None
    val_text = "n/a" if clf.val_accuracy is None else f"{clf.val_accuracy:.3f}"
    log(f"feature classifier: {clf.epochs_trained} epoch(s), validation accuracy {val_text}, test accuracy "
        f"{ctx['classifier_accuracy']:.3f} ({ctx['classifier_seconds']:.0f} s)")


def _reference_scores(settings, ctx, train01: torch.Tensor, train_perm: torch.Tensor, log) -> None:
    """Real training images against the same test images: the floor of every metric."""
    n = settings.eval_samples
    ref_train = train01[train_perm[-n:]] if train01.shape[0] >= 2 * n else train01[train_perm[:n]]
    real = ctx["real_eval"]
    mmd_gaussian, mmd_linear = _batched_mmds(ref_train, real, settings.mmd_batch, ctx["bandwidths"])
    ctx["reference"] = {"mmd_gaussian": mmd_gaussian, "mmd_linear": mmd_linear,
                        "ms_ssim": float(ms_ssim_pairs(real).mean()),
                        "sharpness_ratio": float(sharpness_ratio(ref_train, real))}
    if ctx["classifier"] is not None:
        with torch.no_grad():
            ctx["reference"]["fd"] = float(frechet_distance(ctx["classifier"].features(ref_train).double(),
                                                            ctx["real_features"]))
    if ctx["real_val"].shape[0] >= 2:  # the floor of the curves: real training images against the validation split
        with torch.no_grad():
            ctx["reference_val"] = _curve_scores(ref_train[: ctx["real_val"].shape[0]], ctx)
    log(f"reference (real train vs test): {ctx['reference']}")


def _curve_scores(fake: torch.Tensor, ctx: dict[str, Any]) -> dict[str, float]:
    """:data:`CURVE_METRICS` of images in [0, 1] (native size) against the validation split."""
    real = ctx["real_val"]
    scores = {"mmd_gaussian": float(gaussian_mmd(fake, real, ctx["bandwidths"])),
              "sharpness_ratio": float(sharpness_ratio(fake, real))}
    if ctx["classifier"] is not None:
        scores["fd"] = float(frechet_distance(ctx["classifier"].features(fake).double(), ctx["val_features"]))
    return scores


def make_curve_scorer(settings: PaperTablesSettings, ctx: dict[str, Any], seed: int) -> Callable[[GVAE], dict] | None:
    """The scorer :func:`train_run` calls during training: :data:`CURVE_METRICS` of ``curve_samples`` prior samples
    (the same latents at every point, so the curve shows the model changing, not the draw) against as many
    validation images, with the tables' MMD bandwidths and feature classifier.

    Returns:
        ``scorer(gvae) -> {metric: value}``, or ``None`` when there is no validation split (``val_images`` 0) or no
        curve is asked for (``curve_every`` 0).
    """
    if not settings.curve_every or settings.curve_samples < 2 or ctx["real_val"].shape[0] < 2:
        return None

    def scorer(gvae: GVAE) -> dict[str, float]:
        return _curve_scores(generate_samples(gvae, settings.curve_samples, 50_000 + seed, ctx["crop"]), ctx)

    return scorer


_CONTEXT_KEYS = ("crop", "native", "channels", "n_train", "n_val", "n_test", "n_lik", "n_bandwidth", "mmd_batches",
                 "bandwidths", "reference", "reference_val", "ms_ssim_settings", "classifier_accuracy",
                 "classifier_val_accuracy", "classifier_epochs_trained", "classifier_seconds")


def report_context(ctx: dict[str, Any]) -> dict[str, Any]:
    """What the report needs of the evaluation context, JSON-ready (no tensors or networks): sizes, kernels,
    reference scores and the classifier's figures (``feature_size`` ``None`` without a classifier). Written to
    ``results.json`` so that runs made in separate processes can be merged into one report. A summary passes
    through unchanged.
    """
    if "classifier" not in ctx:
        return ctx
    out = {k: ctx[k] for k in _CONTEXT_KEYS if k in ctx}
    out["bandwidths"] = [float(b) for b in out["bandwidths"]]
    out["feature_size"] = None if ctx["classifier"] is None else int(ctx["classifier"].feature_size)
    return json.loads(json.dumps(out))  # tuples -> lists: what reading results.json back gives


@torch.no_grad()
def evaluate_run(
    settings: PaperTablesSettings, run: dict[str, Any], objective: str, ctx: dict[str, Any], seed: int, full: bool
) -> dict[str, Any]:
    """All metrics of one trained model: sample quality (MMD, MS-SSIM, FD, sharpness ratio) and, with ``full`` and an
    encoder, the likelihood figures of Tables 6-7 (:func:`_likelihood_figures`); for a model without posterior
    variance (:data:`NO_POSTERIOR_VARIANCE`: alpha-GAN) only the reconstruction errors of those (no ELBO, KL or
    bound)."""
    gvae: GVAE = run["gvae"]
    res: dict[str, Any] = {}
    t0 = time.perf_counter()
    fake = generate_samples(gvae, settings.eval_samples, 10_000 + seed, ctx["crop"])
    res["mmd_gaussian"], res["mmd_linear"] = _batched_mmds(fake, ctx["real_eval"], settings.mmd_batch,
                                                           ctx["bandwidths"])
    res["ms_ssim"] = float(ms_ssim_pairs(fake).mean())
    res["sharpness_ratio"] = float(sharpness_ratio(fake, ctx["real_eval"]))
    if ctx["classifier"] is not None:
        res["fd"] = float(frechet_distance(ctx["classifier"].features(fake).double(), ctx["real_features"]))
    res["sample_eval_seconds"] = time.perf_counter() - t0
    if not full or objective == "wgan_gp":
        return res
    if objective in NO_POSTERIOR_VARIANCE:
        res.update(_reconstruction_errors(gvae, ctx))
    else:
        res.update(_likelihood_figures(settings, gvae, ctx, seed))
    x = ctx["test_lik"]
    mu, _ = gvae.encode(x[:16] * 2 - 1)
    first = center_crop(((gvae.decode(mu).float() + 1) / 2).clamp(0, 1), ctx["crop"])
    ctx.setdefault("recon_examples", {})[(objective, seed)] = (center_crop(x[:16], ctx["crop"]), first)
    return res


@torch.no_grad()
def _reconstruction_errors(gvae: GVAE, ctx: dict[str, Any]) -> dict[str, float]:
    """Mean absolute and squared error of ``G(mu(x))`` on the likelihood tables' test images, pixels in [0, 1]."""
    x = ctx["test_lik"]
    rec_abs, rec_sq = [], []
    for start in range(0, x.shape[0], 250):
        xb = x[start : start + 250]
        mu, _ = gvae.encode(xb * 2 - 1)
        recon = center_crop(((gvae.decode(mu).float() + 1) / 2).clamp(0, 1), ctx["crop"])
        target = center_crop(xb, ctx["crop"])
        rec_abs.append((recon - target).abs().flatten(1).mean(1))
        rec_sq.append((recon - target).pow(2).flatten(1).mean(1))
    return {"rec_mae": float(torch.cat(rec_abs).mean()), "rec_mse": float(torch.cat(rec_sq).mean())}


@torch.no_grad()
def _likelihood_figures(settings: PaperTablesSettings, gvae: GVAE, ctx: dict[str, Any], seed: int) -> dict[str, Any]:
    """Reconstruction errors, ELBO terms and the importance-weighted bound on the test images (Tables 6-7)."""
    res: dict[str, Any] = {}
    t0 = time.perf_counter()
    adapter_kwargs = {"likelihood": settings.likelihood, "num_bins": 256, "crop_size": ctx["crop"]}
    # the pixel scale: maximum likelihood on training images, never on the test images
    if settings.likelihood != "bernoulli":
        x_fit = ctx["train_fit"]
        mu, logvar = gvae.encode(x_fit * 2 - 1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=torch.Generator().manual_seed(seed))
        mean = center_crop(((gvae.decode(z).float() + 1) / 2).clamp(0, 1), ctx["crop"])
        adapter_kwargs["scale"] = fit_pixel_scale(center_crop(x_fit, ctx["crop"]), mean, settings.likelihood)
        res["pixel_scale"] = adapter_kwargs["scale"]
    adapter = GVAELikelihood(gvae, **adapter_kwargs)
    x = ctx["test_lik"]
    res.update(_reconstruction_errors(gvae, ctx))
    terms_all: dict[str, list[torch.Tensor]] = {"elbo": [], "log_likelihood": [], "kl": []}
    gen = torch.Generator().manual_seed(20_000 + seed)
    for start in range(0, x.shape[0], 250):
        terms = elbo(x[start : start + 250], adapter.encode, adapter.log_likelihood, num_samples=settings.elbo_samples,
                     generator=gen)
        for k in terms_all:
            terms_all[k].append(terms[k])
    for k, v in terms_all.items():
        res[k] = float(torch.cat(v).mean())
    xi = x[: settings.iw_images]
    prefixes = sorted({p for p in (1, 10, 100, 1000) if p < settings.iw_k})
    curve = importance_weighted_bound(xi, adapter.encode, adapter.log_likelihood, num_samples=settings.iw_k,
                                      chunk_size=settings.iw_chunk,
                                      generator=torch.Generator().manual_seed(30_000 + seed), return_prefixes=prefixes)
    res["iw_bound"] = float(curve[settings.iw_k].mean())
    res["iw_curve"] = {str(k): float(v.mean()) for k, v in curve.items()}
    res["elbo_iw_subset"] = float(elbo(xi, adapter.encode, adapter.log_likelihood, num_samples=settings.elbo_samples,
                                       generator=torch.Generator().manual_seed(40_000 + seed))["elbo"].mean())
    res["likelihood_eval_seconds"] = time.perf_counter() - t0
    return res


def save_run(
    out: Path, run: dict[str, Any], objective: str, latent: int, seed: int, ctx: dict[str, Any], overwrite: bool
) -> None:
    """The run's checkpoint (``checkpoints/<model>_z<latent>_seed<seed>.pt``: ``GVAE`` state dict under ``"gvae"``,
    critic under ``"critic"``, alpha-GAN's code critic under ``"code_critic"``) and, for seed 0, its sample grid and
    reconstructions.

    Raises:
        FileExistsError: the checkpoint exists and ``overwrite`` is false.
    """
    name = f"{objective}_z{latent}_seed{seed}"
    ckpt = {"gvae": run["gvae"].state_dict(), "iterations": run["iterations"], "objective": objective}
    for key in ("critic", "code_critic"):
        if run.get(key) is not None:
            ckpt[key] = run[key].state_dict()
    with atomic_path(out / "checkpoints" / f"{name}.pt", overwrite=overwrite) as tmp:
        torch.save(ckpt, tmp)
    if seed != 0:
        return
    grid = generate_samples(run["gvae"], 64, 10_000, ctx["crop"])
    save_sample_grid(grid * 2 - 1, out / f"samples_{name}.png", image_channels=grid.shape[1])
    rec = ctx.get("recon_examples", {}).pop((objective, seed), None)
    if rec is not None:
        both = torch.cat([rec[0], rec[1]])
        save_sample_grid(both * 2 - 1, out / f"reconstructions_{objective}_seed{seed}.png",
                         image_channels=both.shape[1], nrow=16)
