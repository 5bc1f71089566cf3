"""Regenerate the GVAE paper's Tables 4-7 on your own data: GVAE, VAE and WGAN-GP trained by the same code.

Trains the three objectives of :class:`monai_gvae.engines.GVAETrainer` (``gvae``, ``vae``, ``wgan_gp``) with
the same networks, data, batch size and budget, sweeps GVAE's latent size (Table 5), scores every run with
``monai_gvae.metrics`` and writes into ``--output-dir``:

* ``tables.md`` -- Markdown Tables 4-7 with the protocol (command, seeds, budget, hardware, kernels, k) in the
  header and a verdict per metric that calls a difference only when it exceeds the spread over seeds;
* ``results.json`` -- every number per run;
* ``samples_<model>_z<latent>_seed<seed>.png`` / ``reconstructions_<model>_seed<seed>.png`` -- sample grids;
* ``checkpoints/*.pt`` -- the trained networks (``GVAE`` state dict under ``"gvae"``, critic under ``"critic"``).

Nothing existing is overwritten unless ``--overwrite``.

Examples::

    # Fashion-MNIST from Debian's dataset-fashion-mnist, 1 minute of training per run, 3 seeds
    python examples/paper_tables.py --dataset fashion-mnist --data-dir /usr/share/datasets/fashion-mnist \\
        --budget-minutes 1 --seeds 3 --output-dir runs/fmnist_tables
    # a smoke test in seconds
    python examples/paper_tables.py --dataset mnist --data-dir PATH --quick --output-dir /tmp/quick

Budgets: ``--budget-minutes`` gives every run the same wall-clock training time (the iterations each model
reached are reported beside it); ``--budget-iterations`` gives every run the same iterations (the wall-clock
time is reported). A GVAE iteration costs several VAE iterations (critic step, twice the generator batch).
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import math
import os
import platform
import shlex
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Events
from torch.utils.data import DataLoader, Dataset

import monai_gvae
from monai_gvae.bundle import save_sample_grid
from monai_gvae.engines import GVAETrainer
from monai_gvae.losses import CriticLoss, EncoderGeneratorLoss
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
    train_feature_classifier,
)
from monai_gvae.networks import GVAE, GVAECritic
from monai_gvae.utils import atomic_path

DATASETS = ("mnist", "fashion-mnist", "lsun", "celebahq", "folder")
MODELS = ("gvae", "vae", "wgan_gp")
MODEL_NAMES = {"gvae": "GVAE", "vae": "VAE", "wgan_gp": "WGAN-GP"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
# the paper's MNIST figures, quoted for context only (different data, protocol and units)
PAPER_TABLE4 = [("WGAN-GP", "0.327", "0.996"), ("VAE-GAN", "0.075", "0.972"), ("alpha-GAN", "0.131", "0.843"), ("GVAE (paper)", "0.068", "0.818")]
PAPER_TABLE5 = [("100", "0.104", "0.856"), ("500", "0.085", "0.821"), ("1000", "0.068", "0.818"), ("2000", "0.074", "0.844")]
PAPER_TABLE7 = [
    ("VAE + NF (T=80)", "-85.1"), ("VAE + HVI (T=16)", "-88.3"), ("conv VAE + HVI (T=16)", "-84.1"),
    ("VAE + VGP (2hl)", "-81.3"), ("DRAW + VGP", "-79.9"), ("VAE + IAF", "-80.8"), ("GVAE (paper)", "-82.2"),
]


# ----------------------------------------------------------------------------------------------- data
def _read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """An IDX array (raw or gzipped), magic number checked."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"cannot read IDX file {path}: {e}") from e
    if len(data) < 8:
        raise ValueError(f"IDX file {path} is truncated ({len(data)} bytes).")
    magic = struct.unpack(">I", data[:4])[0]
    if magic != expected_magic:
        raise ValueError(f"IDX file {path} has magic number {magic:#010x}, expected {expected_magic:#010x}.")
    ndim = magic & 0xFF
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"IDX file {path} holds {body.size} values, its header says {shape}.")
    return body.reshape(shape).copy()


def _find(data_dir: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (data_dir / name).is_file():
            return data_dir / name
    raise FileNotFoundError(f"no {stem}[.gz] in {data_dir} (expected the MNIST/Fashion-MNIST IDX files).")


def _read_idx_split(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(_find(data_dir, f"{prefix}-images-idx3-ubyte"), 0x00000803)
    labels = _read_idx(_find(data_dir, f"{prefix}-labels-idx1-ubyte"), 0x00000801)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{data_dir}: {images.shape[0]} {split} images but {labels.shape[0]} labels.")
    return images[:, None], labels.astype(np.int64)


def _from_dict_dataset(ds: Any) -> tuple[np.ndarray, np.ndarray | None]:
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


def _read_folder(data_dir: Path, image_size: int, channels: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Images of a folder (recursively, sorted numerically), resized and centre-cropped; class folders -> labels."""
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
                im = im.resize((max(image_size, round(im.width * scale)), max(image_size, round(im.height * scale))), Image.BILINEAR)
                left, top = (im.width - image_size) // 2, (im.height - image_size) // 2
                arr = np.asarray(im.crop((left, top, left + image_size, top + image_size)), dtype=np.uint8)
        except OSError as e:
            raise ValueError(f"cannot read image {p}: {e}") from e
        images.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
    classes = sorted({p.parent for p in files})
    labels = np.asarray([classes.index(p.parent) for p in files], dtype=np.int64) if len(classes) > 1 else None
    return np.stack(images), labels


def _load_dataset(name: str, data_dir: str, image_size: int, channels: int, test_fraction: float = 0.1):
    """``{"train": (uint8 (N, C, H, W), labels or None), "test": ...}`` at the native size (MNIST 28x28).

    MNIST / Fashion-MNIST use ``monai_gvae.data.MNISTDataset`` when the package has it, else a small IDX
    reader; LSUN / CelebA-HQ use ``monai_gvae.data.LSUNDataset`` / ``ImageFolderDataset`` when present. A folder
    (or CelebA-HQ without that reader) is read with Pillow and its last ``test_fraction`` held out as test.
    """
    root = Path(data_dir)
    if not root.exists():
        raise FileNotFoundError(f"--data-dir {root} does not exist.")
    if name in ("mnist", "fashion-mnist"):
        try:
            from monai_gvae.data import MNISTDataset  # type: ignore[attr-defined]
        except ImportError:
            MNISTDataset = None
        out = {}
        for split in ("train", "test"):
            arrays = None
            if MNISTDataset is not None:
                try:
                    arrays = _from_dict_dataset(MNISTDataset(str(root), split=split))
                except TypeError:  # another constructor signature: use the reader below
                    arrays = None
                if arrays is not None and arrays[0].shape[1:] != (1, 28, 28):
                    arrays = None
            out[split] = arrays if arrays is not None else _read_idx_split(root, split)
        return out
    if name == "lsun":
        try:
            from monai_gvae.data import LSUNDataset  # type: ignore[attr-defined]
        except ImportError as e:
            raise NotImplementedError("--dataset lsun needs monai_gvae.data.LSUNDataset (the readers issue).") from e
        return {split: _from_dict_dataset(LSUNDataset(str(root), split=s, image_size=image_size))
                for split, s in (("train", "train"), ("test", "val"))}
    images, labels = None, None
    if name == "celebahq":
        try:
            from monai_gvae.data import ImageFolderDataset  # type: ignore[attr-defined]

            images, labels = _from_dict_dataset(ImageFolderDataset(str(root), image_size=image_size))
        except (ImportError, TypeError):
            images = None
    if images is None:
        images, labels = _read_folder(root, image_size, channels)
    n_test = max(2, int(round(len(images) * test_fraction)))
    if len(images) - n_test < 2:
        raise ValueError(f"{root} holds {len(images)} images: too few for a train/test split.")
    cut = len(images) - n_test
    return {
        "train": (images[:cut], None if labels is None else labels[:cut]),
        "test": (images[cut:], None if labels is None else labels[cut:]),
    }


def _pad_to(images: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad (black) uint8 images symmetrically to ``size`` (MNIST's 28 -> 32 for the networks)."""
    h, w = images.shape[-2:]
    if h > size or w > size:
        raise ValueError(f"images of {h}x{w} do not fit --image-size {size}.")
    ph, pw = size - h, size - w
    return np.pad(images, ((0, 0), (0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))


class _Uint8Images(Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i]}


def _prepare_batch(batchdata: dict, device: torch.device, non_blocking: bool = False, **kwargs: Any):
    """uint8 [0, 255] -> float [-1, 1] on the device (the networks' range)."""
    return batchdata["image"].to(device, non_blocking=non_blocking).float() / 127.5 - 1.0, None


# ----------------------------------------------------------------------------------------------- training
def _build(args: argparse.Namespace, objective: str, latent: int, channels: int, seed: int):
    torch.manual_seed(seed)
    gvae = GVAE(2, channels, args.image_size, latent_size=latent, architecture=args.architecture,
                base_channels=args.base_channels, max_channels=args.max_channels)
    critic = None
    if objective != "vae":
        critic = GVAECritic(spatial_dims=2, in_channels=channels, image_size=args.image_size,
                            architecture=args.architecture, base_channels=args.base_channels,
                            max_channels=args.max_channels)
    return gvae, critic


def train_run(args, objective: str, latent: int, seed: int, train_images: torch.Tensor, log) -> dict[str, Any]:
    """Train one model under the budget; returns the networks and what the budget bought."""
    gvae, critic = _build(args, objective, latent, train_images.shape[1], seed)
    opt = torch.optim.Adam(gvae.parameters(), lr=args.lr, betas=(0.5, 0.9))
    critic_opt = torch.optim.Adam(critic.parameters(), lr=args.critic_lr, betas=(0.5, 0.9)) if critic is not None else None
    loader = DataLoader(_Uint8Images(train_images), batch_size=args.batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    trainer = GVAETrainer(
        device="cpu", max_epochs=10**6, train_data_loader=loader, network=gvae, critic=critic,
        optimizer=opt, critic_optimizer=critic_opt,
        loss_function=EncoderGeneratorLoss(args.rec_weight, args.kl_weight, args.adv_weight, args.kl_warmup),
        critic_loss_function=CriticLoss(args.gp_weight), objective=objective, n_critic=args.n_critic,
        seed=seed, prepare_batch=_prepare_batch,
    )
    clock: dict[str, float] = {}
    losses: list[dict[str, float]] = []

    @trainer.on(Events.STARTED)
    def _start(engine):
        clock["start"] = time.perf_counter()

    @trainer.on(Events.ITERATION_COMPLETED)
    def _budget(engine):
        elapsed = time.perf_counter() - clock["start"]
        if engine.state.iteration % 50 == 0 or engine.state.iteration == 1:
            out = engine.state.output
            losses.append({"iteration": engine.state.iteration, "seconds": round(elapsed, 2),
                           **{k: round(float(out[k]), 5) for k in ("loss_g", "loss_d", "loss_rec", "loss_kl", "wasserstein")}})
        if (args.budget_iterations and engine.state.iteration >= args.budget_iterations) or (
            args.budget_minutes and elapsed >= 60.0 * args.budget_minutes
        ):
            engine.terminate()

    trainer.run()
    wall = time.perf_counter() - clock["start"]
    iters = trainer.state.iteration
    log(f"  trained {MODEL_NAMES[objective]} z={latent} seed={seed}: {iters} iterations in {wall:.1f} s")
    return {"gvae": gvae.eval(), "critic": critic, "iterations": iters, "train_seconds": wall, "losses": losses}


# ----------------------------------------------------------------------------------------------- evaluation
def _crop(x: torch.Tensor, size: int | None) -> torch.Tensor:
    if size is None or x.shape[-1] == size:
        return x
    s = (x.shape[-1] - size) // 2
    return x[..., s : s + size, s : s + size]


@torch.no_grad()
def _samples01(gvae: GVAE, n: int, seed: int, crop: int | None, batch: int = 256) -> torch.Tensor:
    rng = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, n, batch):
        z = torch.randn(min(batch, n - start), gvae.latent_size, generator=rng)
        out.append(((gvae.decode(z).float() + 1.0) / 2.0).clamp(0, 1))
    return _crop(torch.cat(out), crop)


@torch.no_grad()
def evaluate_run(args, run: dict[str, Any], objective: str, ctx: dict[str, Any], seed: int, full: bool) -> dict[str, Any]:
    """All metrics of one trained model; ``full`` adds the likelihood figures (Tables 6-7)."""
    gvae: GVAE = run["gvae"]
    res: dict[str, Any] = {}
    t0 = time.perf_counter()
    fake = _samples01(gvae, args.eval_samples, 10_000 + seed, ctx["crop"])
    real = ctx["real_eval"]
    b = args.mmd_batch
    n_batches = min(fake.shape[0], real.shape[0]) // b
    res["mmd_gaussian"] = float(np.mean([float(gaussian_mmd(fake[i * b : (i + 1) * b], real[i * b : (i + 1) * b], ctx["bandwidths"])) for i in range(n_batches)]))
    res["mmd_linear"] = float(np.mean([float(linear_mmd(fake[i * b : (i + 1) * b], real[i * b : (i + 1) * b])) for i in range(n_batches)]))
    res["ms_ssim"] = float(ms_ssim_pairs(fake).mean())
    if ctx["classifier"] is not None:
        res["fd"] = float(frechet_distance(ctx["classifier"].features(fake).double(), ctx["real_features"]))
    res["sample_eval_seconds"] = time.perf_counter() - t0
    if not full or objective == "wgan_gp":
        return res
    t0 = time.perf_counter()
    adapter_kwargs = {"likelihood": args.likelihood, "num_bins": 256, "crop_size": ctx["crop"]}
    # the pixel scale: maximum likelihood on training images, never on the test images
    if args.likelihood != "bernoulli":
        x_fit = ctx["train_fit"]
        mu, logvar = gvae.encode(x_fit * 2 - 1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=torch.Generator().manual_seed(seed))
        mean = _crop(((gvae.decode(z).float() + 1) / 2).clamp(0, 1), ctx["crop"])
        adapter_kwargs["scale"] = fit_pixel_scale(_crop(x_fit, ctx["crop"]), mean, args.likelihood)
        res["pixel_scale"] = adapter_kwargs["scale"]
    adapter = GVAELikelihood(gvae, **adapter_kwargs)
    x = ctx["test_lik"]
    rec_abs, rec_sq, terms_all = [], [], {"elbo": [], "log_likelihood": [], "kl": []}
    gen = torch.Generator().manual_seed(20_000 + seed)
    for start in range(0, x.shape[0], 250):
        xb = x[start : start + 250]
        mu, _ = gvae.encode(xb * 2 - 1)
        recon = _crop(((gvae.decode(mu).float() + 1) / 2).clamp(0, 1), ctx["crop"])
        target = _crop(xb, ctx["crop"])
        rec_abs.append((recon - target).abs().flatten(1).mean(1))
        rec_sq.append((recon - target).pow(2).flatten(1).mean(1))
        terms = elbo(xb, adapter.encode, adapter.log_likelihood, num_samples=args.elbo_samples, generator=gen)
        for k in terms_all:
            terms_all[k].append(terms[k])
    res["rec_mae"] = float(torch.cat(rec_abs).mean())
    res["rec_mse"] = float(torch.cat(rec_sq).mean())
    for k, v in terms_all.items():
        res[k] = float(torch.cat(v).mean())
    xi = x[: args.iw_images]
    prefixes = sorted({p for p in (1, 10, 100, 1000) if p < args.iw_k})
    curve = importance_weighted_bound(xi, adapter.encode, adapter.log_likelihood, num_samples=args.iw_k,
                                      chunk_size=args.iw_chunk, generator=torch.Generator().manual_seed(30_000 + seed),
                                      return_prefixes=prefixes)
    res["iw_bound"] = float(curve[args.iw_k].mean())
    res["iw_curve"] = {str(k): float(v.mean()) for k, v in curve.items()}
    res["elbo_iw_subset"] = float(elbo(xi, adapter.encode, adapter.log_likelihood, num_samples=args.elbo_samples,
                                       generator=torch.Generator().manual_seed(40_000 + seed))["elbo"].mean())
    res["likelihood_eval_seconds"] = time.perf_counter() - t0
    mu, _ = gvae.encode(x[:16] * 2 - 1)
    first = _crop(((gvae.decode(mu).float() + 1) / 2).clamp(0, 1), ctx["crop"])
    ctx.setdefault("recon_examples", {})[(objective, seed)] = (_crop(x[:16], ctx["crop"]), first)
    return res


# ----------------------------------------------------------------------------------------------- reporting
def _stats(values: list[float]) -> tuple[float, float, int]:
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan, 0
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else math.nan, int(arr.size)


def _fmt(values: list[float], digits: int = 4, scale: float = 1.0) -> str:
    mean, sd, n = _stats(values)
    if n == 0:
        return "n/a"
    if n == 1:
        return f"{mean * scale:.{digits}g}"
    return f"{mean * scale:.{digits}g} ± {sd * scale:.2g}"


def _verdict(gvae_vals: list[float], base_vals: list[float], lower_is_better: bool | None) -> str:
    """``lower_is_better=None``: a property, not a score (the KL): say higher/lower, not better/worse."""
    (m1, s1, n1), (m2, s2, n2) = _stats(gvae_vals), _stats(base_vals)
    if n1 == 0 or n2 == 0:
        return "n/a"
    if n1 < 2 or n2 < 2:
        return f"GVAE {m1:.4g} vs {m2:.4g} (one seed: no spread, not a comparison)"
    if abs(m1 - m2) <= s1 + s2:
        return f"no resolved difference (|{m1:.4g} - {m2:.4g}| <= sd sum {s1 + s2:.2g})"
    if lower_is_better is None:
        word = "GVAE lower" if m1 < m2 else "GVAE higher"
    else:
        word = "GVAE better" if (m1 < m2 if lower_is_better else m1 > m2) else "GVAE worse"
    return word + f" ({m1:.4g} vs {m2:.4g}; sd {s1:.2g}, {s2:.2g})"


def _hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"{cpu}; {os.cpu_count()} logical CPUs; torch {torch.__version__} on CPU with {torch.get_num_threads()} "
            f"thread(s); load average at start {load}")


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parents[1],
                              capture_output=True, text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_tables(args, ctx: dict[str, Any], results: list[dict[str, Any]], path: Path, header: dict[str, Any]) -> str:
    main = [r for r in results if r["table"] == "main"]
    sweep = [r for r in results if r["latent"] in args.latent_sizes and r["model"] == "gvae" and r["seed"] < args.sweep_seeds]

    def vals(model: str, key: str, rows=main) -> list[float]:
        return [r["metrics"].get(key) for r in rows if r["model"] == model and r["metrics"].get(key) is not None]

    def tvals(model: str, key: str, rows=main) -> list[float]:
        return [r[key] for r in rows if r["model"] == model]

    ms = ctx["ms_ssim_settings"]
    budget = (f"{args.budget_minutes:g} min of wall-clock training per run" if args.budget_minutes
              else f"{args.budget_iterations} iterations per run")
    lik = {
        "bernoulli": "Bernoulli on binarised pixels (p = (G(z)+1)/2 clamped to [1e-4, 1-1e-4])",
        "discretized_logistic": "discretised logistic over 256 grey levels, mean (G(z)+1)/2, one global scale per model fitted by maximum likelihood on training images",
        "discretized_gaussian": "discretised Gaussian over 256 grey levels, mean (G(z)+1)/2, one global standard deviation per model fitted by maximum likelihood on training images",
    }[args.likelihood]
    crop_note = f"{ctx['native']}x{ctx['native']} crop" if ctx["crop"] else "full image"
    lines = [
        f"# GVAE paper Tables 4-7 regenerated on {args.dataset}",
        "",
        f"Written by `examples/paper_tables.py` (monai-gvae {monai_gvae.__version__}, git {header['commit']}) on {header['date']}.",
        "",
        f"- **Command**: `{header['command']}`",
        f"- **Hardware**: {header['hardware']}. Total wall time of the script: {header['total_minutes']:.1f} min.",
        f"- **Data**: {args.dataset} from `{args.data_dir}`: {ctx['n_train']} training images used, {ctx['n_test']} test images; "
        f"{ctx['native']}x{ctx['native']} images" + (f" zero-padded to {args.image_size}x{args.image_size} for the networks" if ctx["crop"] else "")
        + f"; metrics on the {crop_note} in [0, 1]." + (" Pixels binarised at 0.5." if args.binarize else ""),
        f"- **Budget**: {budget}; seeds {list(range(args.seeds))} for Tables 4, 6, 7; seeds {list(range(args.sweep_seeds))} for Table 5. "
        "Runs are interleaved seed by seed, so load changes on the (shared) machine hit every model alike. "
        "The iterations and seconds each run got are in the tables.",
        f"- **Models** (identical networks, data, batch and optimiser; only the objective differs): `{args.architecture}` "
        f"encoder/generator/critic, base channels {args.base_channels}, max {args.max_channels}, latent {args.latent_size} "
        f"(Table 5: {args.latent_sizes}), batch {args.batch_size}, Adam betas (0.5, 0.9), lr {args.lr:g} (encoder+generator) / "
        f"{args.critic_lr:g} (critic), w_rec {args.rec_weight:g} (L1), w_kl {args.kl_weight:g} (warm-up {args.kl_warmup} it.), "
        f"w_adv {args.adv_weight:g}, w_gp {args.gp_weight:g}, n_critic {args.n_critic}. VAE = no critic; WGAN-GP = no encoder.",
        f"- **MMD**: unbiased estimate of the squared MMD, mixture of Gaussian kernels with bandwidths "
        f"{', '.join(f'{b:.3g}' for b in ctx['bandwidths'])} (0.5, 1, 2 x the median pairwise distance of {ctx['n_bandwidth']} training images), "
        f"flattened {crop_note}s, {ctx['mmd_batches']} batch(es) of {args.mmd_batch} generated vs {args.mmd_batch} test images, averaged. "
        "Linear MMD = MONAI `MMDMetric` on the same batches. Lower is better; the train-vs-test row is the floor.",
        f"- **MS-SSIM** (diversity, lower = more diverse): {len(ms['weights'])} scales, Gaussian kernel {ms['kernel_size']} (sigma 1.5), "
        f"weights {tuple(round(w, 4) for w in ms['weights'])}, data range 1, mean over {args.eval_samples // 2} disjoint pairs of generated samples; "
        f"the reference is the same on {args.eval_samples // 2} pairs of test images.",
        (f"- **FD**: Frechet distance between Gaussians fitted to the {ctx['classifier'].feature_size}-d penultimate features of a small CNN "
         f"trained on the training split for {args.classifier_epochs} epoch(s) (test accuracy {ctx['classifier_accuracy']:.3f}); "
         f"{args.eval_samples} generated vs {args.eval_samples} test images. Not an FID (no Inception network): compare only within this file."
         if ctx["classifier"] is not None else "- **FD**: not computed (the dataset has no class labels to train the feature classifier on)."),
        f"- **Likelihood**: {lik}; figures in nats per {crop_note}. Reconstruction error = mean absolute error of G(mu(x)) on "
        f"{ctx['n_lik']} test images, pixels in [0, 1]. ELBO = E_q[log p(x|z)] ({args.elbo_samples} sample(s)) - KL (closed form).",
        f"- **log p(x) bound**: importance-weighted bound (Burda et al.) with k = {args.iw_k} on the first {args.iw_images} test images "
        f"(a subset: {args.iw_k} decodings per image).",
        "",
        "## Table 4: sample quality (lower MMD and FD are better; MS-SSIM is diversity, compare with the real reference)",
        "",
        "| Model | iterations | train s | ms / iteration | MMD² Gaussian | MMD linear (MONAI) | MS-SSIM | FD (own classifier) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in args.models:
        lines.append(
            f"| {MODEL_NAMES[m]} | {_fmt(tvals(m, 'iterations'), 4)} | {_fmt(tvals(m, 'train_seconds'), 4)} | "
            f"{_fmt([1000 * r['train_seconds'] / max(1, r['iterations']) for r in main if r['model'] == m], 3)} | "
            f"{_fmt(vals(m, 'mmd_gaussian'))} | {_fmt(vals(m, 'mmd_linear'))} | {_fmt(vals(m, 'ms_ssim'), 3)} | {_fmt(vals(m, 'fd'))} |"
        )
    ref = ctx["reference"]
    lines.append(f"| *real: train vs test* | | | | {ref['mmd_gaussian']:.4g} | {ref['mmd_linear']:.4g} | {ref['ms_ssim']:.3g} | "
                 + (f"{ref['fd']:.4g} |" if "fd" in ref else "n/a |"))
    lines += [
        "",
        "Values are mean ± standard deviation over seeds. For context only, the paper's MNIST Table 4 "
        "(MMD printed as 'x 0.0001', units unclear; not comparable to this protocol): "
        + "; ".join(f"{a} {b} / {c}" for a, b, c in PAPER_TABLE4) + ".",
        "",
        "## Table 5: GVAE latent size (lower MMD and FD are better)",
        "",
    ]
    if sweep:
        lines += ["| Latent size | seeds | iterations | MMD² Gaussian | MS-SSIM | FD (own classifier) |", "|---|---|---|---|---|---|"]
    else:
        lines.append("Not run (`--sweep-seeds 0`).")
    for z in args.latent_sizes:
        rows = [r for r in sweep if r["latent"] == z]
        if not rows:
            continue
        lines.append(
            f"| {z} | {len(rows)} | {_fmt([r['iterations'] for r in rows], 4)} | "
            f"{_fmt([r['metrics']['mmd_gaussian'] for r in rows])} | {_fmt([r['metrics']['ms_ssim'] for r in rows], 3)} | "
            f"{_fmt([r['metrics'].get('fd') for r in rows if r['metrics'].get('fd') is not None])} |"
        )
    lines += ["", "With one seed there is no spread: differences between rows are not resolved. Under a wall-clock budget the "
              "rows also differ in the iterations they got.", "", "Paper (MNIST, for context): " + "; ".join(f"z {a}: {b} / {c}" for a, b, c in PAPER_TABLE5) + ".", ""]
    enc_models = [m for m in args.models if m != "wgan_gp"]
    lines += [
        "## Table 6: likelihood figures on test images (nats per image; higher log-likelihood and ELBO are better)",
        "",
        "| Metric | " + " | ".join(MODEL_NAMES[m] for m in enc_models) + " |",
        "|---|" + "---|" * len(enc_models),
    ]
    rows6 = [
        (f"log p(x) >= (IW bound, k={args.iw_k}, {args.iw_images} images)", "iw_bound", 5),
        (f"ELBO on the same {args.iw_images} images", "elbo_iw_subset", 5),
        (f"ELBO ({ctx['n_lik']} images)", "elbo", 5),
        ("E_q log p(x|z)", "log_likelihood", 5),
        ("KL(q(z|x) || p(z))", "kl", 4),
        ("reconstruction error (MAE, [0, 1])", "rec_mae", 4),
        ("reconstruction error (MSE, [0, 1])", "rec_mse", 4),
    ]
    if args.likelihood != "bernoulli":
        rows6.append(("fitted pixel scale", "pixel_scale", 3))
    for label, key, digits in rows6:
        lines.append(f"| {label} | " + " | ".join(_fmt(vals(m, key), digits) for m in enc_models) + " |")
    lines += [
        "",
        "WGAN-GP has no encoder, hence no ELBO, KL, reconstruction or importance-weighted bound.",
        "The paper's Table 6 (MNIST: log-likelihood -1.568 VAE / -1.353 GVAE, reconstruction 88.5e-3 / 4.27e-3, "
        "ELBO -1.697 / -1.404, KL 0.165 / 0.046) states no unit or pixel model; it is not comparable.",
        "",
        "## Table 7: log p(x) lower bounds",
        "",
        "| Method | data | log p(x) >= (nats per image) | bits/dim |",
        "|---|---|---|---|",
    ]
    for m in enc_models:
        curve = {}
        for r in main:
            if r["model"] == m and "iw_curve" in r["metrics"]:
                for k, v in r["metrics"]["iw_curve"].items():
                    curve.setdefault(int(k), []).append(v)
        pts = ", ".join(f"k={k}: {_fmt(v, 5)}" for k, v in sorted(curve.items()))
        dims = ctx["native"] ** 2 * ctx["channels"]
        bpd = [-v / (dims * math.log(2.0)) for v in vals(m, "iw_bound")]
        lines.append(f"| {MODEL_NAMES[m]} (this run; {pts}) | {args.dataset}, {args.likelihood} | {_fmt(vals(m, 'iw_bound'), 5)} | {_fmt(bpd, 3)} |")
    for name, v in PAPER_TABLE7:
        lines.append(f"| {name} (quoted from the paper) | binarised MNIST | {v} | |")
    lines += [
        "",
        "The quoted rows are on binarised MNIST with Bernoulli pixels; numbers on other data or with a grey-level "
        "likelihood are on a different scale and must not be ranked against them.",
        "",
        "## Verdict (GVAE against each baseline; a difference counts only when it exceeds the sum of the two standard deviations)",
        "",
    ]
    checks = [("MMD² Gaussian", "mmd_gaussian", True), ("MMD linear", "mmd_linear", True), ("FD", "fd", True),
              ("log p(x) bound", "iw_bound", False), ("ELBO", "elbo", False), ("reconstruction MAE", "rec_mae", True),
              ("KL (a property, not a score)", "kl", None)]
    for label, key, lower in checks:
        for base in [m for m in args.models if m != "gvae"]:
            if "gvae" in args.models and vals("gvae", key) and vals(base, key):
                lines.append(f"- {label}, GVAE vs {MODEL_NAMES[base]}: {_verdict(vals('gvae', key), vals(base, key), lower)}")
    for base in [m for m in args.models if m != "gvae"]:
        if "gvae" in args.models:
            g, o, r = _stats(vals("gvae", "ms_ssim"))[0], _stats(vals(base, "ms_ssim"))[0], ref["ms_ssim"]
            lines.append(f"- MS-SSIM (diversity): GVAE {g:.3g}, {MODEL_NAMES[base]} {o:.3g}, real pairs {r:.3g} "
                         "(closer to the real value is better; far above it = less diverse than the data)")
    lines += ["", "KL is a property of the posterior, not a quality score: a lower KL is not by itself better (listed because the paper lists it).", ""]
    text = "\n".join(lines) + "\n"
    with atomic_path(path, overwrite=True) as tmp:
        Path(tmp).write_text(text)
    return text


# ----------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--data-dir", required=True, help="IDX folder (mnist, fashion-mnist), LMDB folder (lsun) or image folder")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--budget-minutes", type=float, help="wall-clock training time per run")
    budget.add_argument("--budget-iterations", type=int, help="training iterations per run")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..S-1 for Tables 4, 6, 7")
    p.add_argument("--sweep-seeds", type=int, default=1, help="seeds for the latent sweep (Table 5)")
    p.add_argument("--latent-sizes", type=int, nargs="+", default=[100, 500, 1000, 2000], help="Table 5 latent sizes")
    p.add_argument("--latent-size", type=int, default=1000, help="latent size of Tables 4, 6, 7 (the paper's best)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--overwrite", action="store_true", help="allow writing into an output folder that has results")
    p.add_argument("--quick", action="store_true", help="tiny networks, few iterations and samples: a smoke test")
    p.add_argument("--image-size", type=int, default=None, help="network input size (default 32 for MNIST, 64 otherwise)")
    p.add_argument("--channels", type=int, default=1, help="image channels for folder datasets (1 or 3)")
    p.add_argument("--binarize", action="store_true", help="threshold pixels at 0.5 (binarised MNIST, Bernoulli likelihood)")
    p.add_argument("--likelihood", choices=("auto", "bernoulli", "discretized_logistic", "discretized_gaussian"), default="auto")
    p.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--architecture", default="conv", choices=("conv", "resnet"))
    p.add_argument("--base-channels", type=int, default=16)
    p.add_argument("--max-channels", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--critic-lr", type=float, default=1e-4)
    p.add_argument("--rec-weight", type=float, default=1.0)
    p.add_argument("--kl-weight", type=float, default=1e-3)
    p.add_argument("--kl-warmup", type=int, default=200)
    p.add_argument("--adv-weight", type=float, default=1e-2)
    p.add_argument("--gp-weight", type=float, default=10.0)
    p.add_argument("--n-critic", type=int, default=1)
    p.add_argument("--eval-samples", type=int, default=1000, help="generated and test images for MMD, MS-SSIM and FD")
    p.add_argument("--mmd-batch", type=int, default=500)
    p.add_argument("--lik-images", type=int, default=1000, help="test images for reconstruction, KL and ELBO")
    p.add_argument("--elbo-samples", type=int, default=4)
    p.add_argument("--iw-k", type=int, default=5000)
    p.add_argument("--iw-images", type=int, default=24)
    p.add_argument("--iw-chunk", type=int, default=64)
    p.add_argument("--classifier-epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machines are shared)")
    args = p.parse_args(argv)
    if args.quick:
        args.base_channels, args.max_channels, args.batch_size = 4, 8, 16
        args.latent_size = 8
        if args.latent_sizes == p.get_default("latent_sizes"):
            args.latent_sizes = [4, 8]
        if not args.budget_minutes and not args.budget_iterations:
            args.budget_iterations = 3
        args.train_limit = args.train_limit or 256
        args.eval_samples, args.mmd_batch, args.lik_images, args.elbo_samples = 32, 16, 32, 1
        args.iw_k, args.iw_images, args.iw_chunk, args.classifier_epochs = 16, 4, 8, 1
        args.kl_warmup = 0
    if not args.budget_minutes and not args.budget_iterations:
        p.error("give --budget-minutes or --budget-iterations (or --quick)")
    if args.seeds < 1 or args.sweep_seeds < 0:
        p.error("--seeds must be >= 1 and --sweep-seeds >= 0")
    if args.mmd_batch < 2 or args.eval_samples < args.mmd_batch:
        p.error("--eval-samples must be at least --mmd-batch (>= 2)")
    if args.likelihood == "auto":
        args.likelihood = "bernoulli" if args.binarize else "discretized_logistic"
    if args.likelihood == "bernoulli" and not args.binarize:
        p.error("--likelihood bernoulli needs --binarize (the Bernoulli model is for binarised pixels)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start_all = time.perf_counter()
    out = Path(args.output_dir)
    if (out / "tables.md").exists() and not args.overwrite:
        print(f"{out / 'tables.md'} exists: choose another --output-dir or pass --overwrite.", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    log_file = open(out / "log.txt", "a")

    def log(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    header = {
        "command": "python " + " ".join(shlex.quote(a) for a in ([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "hardware": _hardware(),
        "commit": _git_commit(),
    }
    log(f"{header['command']}")
    # --- data
    native_size = 28 if args.dataset in ("mnist", "fashion-mnist") else (args.image_size or 64)
    args.image_size = args.image_size or (32 if args.dataset in ("mnist", "fashion-mnist") else 64)
    data = _load_dataset(args.dataset, args.data_dir, native_size, args.channels)
    train_np, train_labels = data["train"]
    test_np, test_labels = data["test"]
    if args.train_limit:
        train_np = train_np[: args.train_limit]
        train_labels = None if train_labels is None else train_labels[: args.train_limit]
    if args.binarize:
        train_np = np.where(train_np >= 128, 255, 0).astype(np.uint8)
        test_np = np.where(test_np >= 128, 255, 0).astype(np.uint8)
    native = train_np.shape[-1]
    crop = native if native != args.image_size else None
    train_u8 = torch.from_numpy(_pad_to(train_np, args.image_size).copy())
    test01 = torch.from_numpy(test_np.astype(np.float32) / 255.0)  # native size
    test01_padded = torch.from_numpy(_pad_to(test_np, args.image_size).astype(np.float32) / 255.0)
    train01 = torch.from_numpy(train_np.astype(np.float32) / 255.0)
    n_eval = min(args.eval_samples, test01.shape[0])
    if n_eval < args.eval_samples:
        log(f"only {n_eval} test images: --eval-samples reduced to {n_eval}")
        args.eval_samples = n_eval
    args.mmd_batch = min(args.mmd_batch, args.eval_samples)
    g = torch.Generator().manual_seed(1234)
    test_perm = torch.randperm(test01.shape[0], generator=g)
    train_perm = torch.randperm(train01.shape[0], generator=g)
    ctx: dict[str, Any] = {
        "crop": crop, "native": native, "channels": int(train_np.shape[1]), "n_train": int(train_u8.shape[0]), "n_test": int(test01.shape[0]),
        "real_eval": test01[test_perm[: args.eval_samples]],
        "test_lik": test01_padded[: args.lik_images],
        "train_fit": torch.from_numpy(_pad_to(train_np[train_perm[:500].numpy()], args.image_size).astype(np.float32) / 255.0),
        "ms_ssim_settings": ms_ssim_settings((native, native)),
    }
    ctx["n_lik"] = int(ctx["test_lik"].shape[0])
    args.iw_images = min(args.iw_images, ctx["n_lik"])
    bw_ref = train01[train_perm[: min(500, train01.shape[0])]]
    ctx["bandwidths"] = median_heuristic(bw_ref)
    ctx["n_bandwidth"] = int(bw_ref.shape[0])
    ctx["mmd_batches"] = args.eval_samples // args.mmd_batch
    log(f"data: {ctx['n_train']} train, {ctx['n_test']} test, native {native}px, network {args.image_size}px; "
        f"MMD bandwidths {tuple(round(b, 3) for b in ctx['bandwidths'])}")
    # --- feature classifier for the Frechet distance (training split only)
    ctx["classifier"] = None
    if train_labels is not None and test_labels is not None and len(np.unique(train_labels)) > 1:
        t0 = time.perf_counter()
        clf = train_feature_classifier(torch.from_numpy(train_np), torch.from_numpy(train_labels),
                                       num_classes=int(max(train_labels.max(), test_labels.max())) + 1,
                                       epochs=args.classifier_epochs, seed=0)
        ctx["classifier"] = clf
        ctx["classifier_accuracy"] = classifier_accuracy(clf, torch.from_numpy(test_np), torch.from_numpy(test_labels))
        with torch.no_grad():
            ctx["real_features"] = clf.features(ctx["real_eval"]).double()
        log(f"feature classifier: test accuracy {ctx['classifier_accuracy']:.3f} ({time.perf_counter() - t0:.0f} s)")
    # --- reference: real training images against the same test images (the floor of every metric)
    ref_train = train01[train_perm[-args.eval_samples:]] if train01.shape[0] >= 2 * args.eval_samples else train01[train_perm[: args.eval_samples]]
    b, nb = args.mmd_batch, min(ref_train.shape[0], args.eval_samples) // args.mmd_batch
    real = ctx["real_eval"]
    ctx["reference"] = {
        "mmd_gaussian": float(np.mean([float(gaussian_mmd(ref_train[i * b : (i + 1) * b], real[i * b : (i + 1) * b], ctx["bandwidths"])) for i in range(nb)])),
        "mmd_linear": float(np.mean([float(linear_mmd(ref_train[i * b : (i + 1) * b], real[i * b : (i + 1) * b])) for i in range(nb)])),
        "ms_ssim": float(ms_ssim_pairs(real).mean()),
    }
    if ctx["classifier"] is not None:
        with torch.no_grad():
            ctx["reference"]["fd"] = float(frechet_distance(ctx["classifier"].features(ref_train).double(), ctx["real_features"]))
    log(f"reference (real train vs test): {ctx['reference']}")
    save_sample_grid(real[:64] * 2 - 1, out / "real_test_images.png", image_channels=real.shape[1])

    # --- runs: main table (seed by seed, models interleaved), then the latent sweep
    plan = [("main", m, args.latent_size, s) for s in range(args.seeds) for m in args.models]
    plan += [("sweep", "gvae", z, s) for s in range(args.sweep_seeds) for z in args.latent_sizes
             if not (z == args.latent_size and "gvae" in args.models and s < args.seeds)]
    results: list[dict[str, Any]] = []
    for i, (table, model, latent, seed) in enumerate(plan):
        log(f"run {i + 1}/{len(plan)}: {table} {MODEL_NAMES[model]} latent {latent} seed {seed}")
        run = train_run(args, model, latent, seed, train_u8, log)
        metrics = evaluate_run(args, run, model, ctx, seed, full=(table == "main"))
        log("  metrics: " + ", ".join(f"{k}={v:.5g}" for k, v in metrics.items() if isinstance(v, float)))
        name = f"{model}_z{latent}_seed{seed}"
        ckpt = {"gvae": run["gvae"].state_dict(), "iterations": run["iterations"], "objective": model}
        if run["critic"] is not None:
            ckpt["critic"] = run["critic"].state_dict()
        with atomic_path(out / "checkpoints" / f"{name}.pt", overwrite=args.overwrite) as tmp:
            torch.save(ckpt, tmp)
        if seed == 0:
            grid = _samples01(run["gvae"], 64, 10_000, ctx["crop"])
            save_sample_grid(grid * 2 - 1, out / f"samples_{name}.png", image_channels=grid.shape[1])
            rec = ctx.get("recon_examples", {}).pop((model, seed), None)
            if rec is not None:
                both = torch.cat([rec[0], rec[1]])
                save_sample_grid(both * 2 - 1, out / f"reconstructions_{model}_seed{seed}.png", image_channels=both.shape[1], nrow=16)
        results.append({"table": table, "model": model, "latent": latent, "seed": seed, "iterations": run["iterations"],
                        "train_seconds": run["train_seconds"], "metrics": metrics, "losses": run["losses"]})
        # results so far are kept even if a later run fails
        with atomic_path(out / "results.json", overwrite=True) as tmp:
            Path(tmp).write_text(json.dumps({"header": header, "args": vars(args), "reference": ctx["reference"],
                                             "bandwidths": ctx["bandwidths"], "results": results}, indent=1))
    header["total_minutes"] = (time.perf_counter() - start_all) / 60.0
    with atomic_path(out / "results.json", overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps({"header": header, "args": vars(args), "reference": ctx["reference"],
                                         "bandwidths": ctx["bandwidths"],
                                         "classifier_accuracy": ctx.get("classifier_accuracy"), "results": results}, indent=1))
    write_tables(args, ctx, results, out / "tables.md", header)
    log(f"wrote {out / 'tables.md'} ({header['total_minutes']:.1f} min)")
    log_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
