#!/usr/bin/env python
"""Downstream Dice benchmark: does GVAE augmentation help a MONAI UNet trained on k labelled brain slices?

Protocol (see docs/segmentation_benchmark.md; rules in the project's benchmark-rules.md):

* Data: the embedded 64x64 axial brain slices (``monai_gvae.data.load_brain_slices``), 4 classes. For each
  seed, k slices are drawn from split ``"train"`` (46 slices; k = "all" takes them all). Split ``"test"``
  (15 slices, every 4th slice of the brain) is the fixed held-out set: no generator or segmenter sees it,
  and no setting was tuned on it.
* Generator: a joint image+label GVAE (``GVAETrainer``, objective "gvae") trained **only on the same k
  labelled slices** the segmenter gets (no label leakage), for ``--gvae-iterations`` iterations of batch
  ``--batch-size`` (drawn with replacement from the k slices).
* Segmenter: MONAI ``UNet`` trained by MONAI's ``SupervisedTrainer`` with ``DiceCELoss`` for
  ``--seg-iterations`` iterations of batch ``--batch-size`` in every arm (same iterations, same batch, same
  initial weights per seed), fed by ``SyntheticMixDataset``:

  - ``no_aug``: the k real slices only;
  - ``classical``: random left-right flip + small affine (rotation, scale, translation);
  - ``gvae``: ``--synthetic-fraction`` of each epoch's items are GVAE prior samples (``GVAESynthesized``);
  - ``classical_gvae``: the GVAE mix, then the classical augmentation on every item.
* Metric: Dice of classes 1-3 (cortex, deep grey matter, cerebellum) on the held-out slices, averaged over
  (slice, class) pairs where the class is present (``DiceMetric(include_background=False,
  ignore_empty=True)``); mean and standard deviation over seeds.

Writes to ``--output-dir`` (refusing to overwrite without ``--overwrite``): ``results.md`` (tables and
protocol), ``results.json`` (every figure), ``dice.png`` (plot) and ``samples_k{k}.png`` (GVAE samples of seed 0).

Usage::

    python examples/segmentation_benchmark.py --output-dir runs/segmentation_benchmark   # ~30 min, 2 CPU cores
    python examples/segmentation_benchmark.py --quick --output-dir /tmp/seg_quick          # seconds, a smoke test
    python examples/segmentation_benchmark.py --render runs/x/results.json --output-dir docs/x  # redraw table + plot
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
from monai.data import DataLoader
from monai.engines import SupervisedTrainer
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from monai.networks.nets import UNet
from monai.networks.utils import one_hot
from monai.transforms import Compose, EnsureTyped, RandAffined, RandFlipd
from monai.utils import set_determinism
from PIL import Image, ImageDraw, ImageFont

from monai_gvae.bundle import save_sample_grid
from monai_gvae.data import SyntheticMixDataset, load_brain_slices
from monai_gvae.engines import GVAETrainer
from monai_gvae.losses import CriticLoss, EncoderGeneratorLoss
from monai_gvae.networks import GVAE, GVAECritic
from monai_gvae.transforms import GVAESamplePool, GVAESynthesized, PackImageLabeld
from monai_gvae.utils import atomic_path

ARMS = ("no_aug", "classical", "gvae", "classical_gvae")
ARM_NAMES = {
    "no_aug": "no augmentation",
    "classical": "classical (flip + affine)",
    "gvae": "GVAE prior samples",
    "classical_gvae": "classical + GVAE",
}
NUM_CLASSES = 4
CLASS_NAMES = ("cortex", "deep_grey_matter", "cerebellum")  # foreground classes 1..3
IMAGE_SIZE = 64
KEYS = ["image", "label"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--output-dir", default="runs/segmentation_benchmark", help="folder of the outputs")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--ks", default="5,10,20,all", help="numbers of labelled training slices ('all' = the whole train split)")
    p.add_argument("--seeds", default="0,1,2", help="seeds (subset draw, initialisation, sampling)")
    p.add_argument("--arms", default=",".join(ARMS), help=f"arms among {', '.join(ARMS)}")
    p.add_argument("--gvae-iterations", type=int, default=400, help="GVAE training iterations per (k, seed)")
    p.add_argument("--seg-iterations", type=int, default=400, help="segmenter training iterations per arm")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--synthetic-fraction", type=float, default=0.5, help="share of GVAE samples in the GVAE arms")
    p.add_argument("--latent-size", type=int, default=32)
    p.add_argument("--base-channels", type=int, default=16, help="GVAE (conv architecture) base channels")
    p.add_argument("--seg-channels", default="8,16,32,64", help="UNet channels per level")
    p.add_argument("--gvae-lr", type=float, default=1e-3)
    p.add_argument("--seg-lr", type=float, default=1e-3)
    p.add_argument("--pool-size", type=int, default=128, help="GVAESynthesized sample pool size")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for these tiny networks on shared cores)")
    p.add_argument("--workers", type=int, default=1,
                   help="DataLoader workers of the segmenter (augmentation and synthesis overlap training on a 2nd core)")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test (k=5, one seed, a few iterations)")
    p.add_argument("--render", default=None, metavar="RESULTS_JSON",
                   help="only rewrite results.md and dice.png in --output-dir from a results.json of an earlier run")
    args = p.parse_args(argv)
    if args.quick:
        args.ks, args.seeds = "5", "0"
        args.gvae_iterations, args.seg_iterations, args.batch_size = 3, 3, 4
        args.latent_size, args.base_channels, args.seg_channels, args.pool_size = 8, 4, "4,8,16", 8
        args.workers = 0
    args.k_list = [k.strip() for k in args.ks.split(",") if k.strip()]
    args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.arm_list = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in args.arm_list if a not in ARMS]
    if unknown:
        p.error(f"unknown arm(s) {unknown}; choose from {ARMS}")
    for k in args.k_list:
        if k != "all" and not k.isdigit():
            p.error(f"--ks entries must be integers or 'all', got {k!r}")
    if not 0.0 <= args.synthetic_fraction < 1.0:
        p.error("--synthetic-fraction must be in [0, 1)")
    return args


def choose_subset(train: list[dict], k: str, seed: int) -> list[dict]:
    """k training slices drawn without replacement by ``seed`` (all of them for 'all')."""
    if k == "all":
        return list(train)
    n = int(k)
    if not 1 <= n <= len(train):
        raise ValueError(f"k={n} is outside [1, {len(train)}] (the train split has {len(train)} slices).")
    idx = np.sort(np.random.default_rng(seed).choice(len(train), size=n, replace=False))
    return [train[i] for i in idx]


def train_gvae(items: list[dict], args: argparse.Namespace, seed: int) -> tuple[GVAE, float]:
    """Joint image+label GVAE trained on ``items`` only; returns the model and the seconds it took."""
    set_determinism(seed)
    gvae = GVAE(2, 1 + NUM_CLASSES, IMAGE_SIZE, latent_size=args.latent_size, architecture="conv",
                base_channels=args.base_channels, max_channels=128, image_channels=1, num_classes=NUM_CLASSES)
    critic = GVAECritic(2, 1 + NUM_CLASSES, IMAGE_SIZE, architecture="conv", base_channels=args.base_channels,
                        max_channels=128)
    pack = Compose([PackImageLabeld("image", "label", num_classes=NUM_CLASSES), EnsureTyped(keys="image", track_meta=False)])
    packed = [{"image": pack(dict(i))["image"]} for i in items]
    sampler = torch.utils.data.RandomSampler(packed, replacement=True, num_samples=args.gvae_iterations * args.batch_size,
                                             generator=torch.Generator().manual_seed(seed))
    loader = DataLoader(packed, batch_size=args.batch_size, sampler=sampler, num_workers=0)
    trainer = GVAETrainer(
        device="cpu", max_epochs=1, train_data_loader=loader, network=gvae, critic=critic,
        optimizer=torch.optim.Adam(gvae.parameters(), args.gvae_lr, betas=(0.5, 0.9)),
        critic_optimizer=torch.optim.Adam(critic.parameters(), args.gvae_lr / 10, betas=(0.5, 0.9)),
        loss_function=EncoderGeneratorLoss(rec_weight=1.0, kl_weight=1e-3, adv_weight=1e-2,
                                           kl_warmup_iterations=min(200, args.gvae_iterations)),
        critic_loss_function=CriticLoss(gp_weight=10.0), objective="gvae", seed=seed,
    )
    start = time.perf_counter()
    trainer.run()
    return gvae.eval(), time.perf_counter() - start


def classical_transform() -> Compose:
    return Compose([
        RandFlipd(keys=KEYS, prob=0.5, spatial_axis=1),  # left-right: the labels are not lateralised
        RandAffined(keys=KEYS, prob=0.8, rotate_range=0.26, scale_range=0.1, translate_range=4,
                    mode=("bilinear", "nearest"), padding_mode="zeros"),
    ])


def train_segmenter(items: list[dict], arm: str, pool: GVAESamplePool | None, args: argparse.Namespace,
                    seed: int) -> tuple[UNet, float]:
    """UNet trained on the k real slices (and synthetic ones in the GVAE arms); returns it and its seconds."""
    set_determinism(seed)
    channels = tuple(int(c) for c in args.seg_channels.split(","))
    net = UNet(2, 1, NUM_CLASSES, channels=channels, strides=(2,) * (len(channels) - 1), num_res_units=1)
    synth = None
    fraction = 0.0
    if arm in ("gvae", "classical_gvae"):
        synth = GVAESynthesized(KEYS, pool, prob=1.0, intensity_range=(0.0, 1.0))
        fraction = args.synthetic_fraction
    post = [classical_transform()] if arm in ("classical", "classical_gvae") else []
    post.append(EnsureTyped(keys=KEYS, track_meta=False))
    real = [{"image": i["image"], "label": i["label"]} for i in items]
    data = SyntheticMixDataset(real, synth, synthetic_fraction=fraction, transform=Compose(post),
                               epoch_length=args.seg_iterations * args.batch_size, seed=seed)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, drop_last=True)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=loader, network=net,
        optimizer=torch.optim.Adam(net.parameters(), args.seg_lr),
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
    )
    start = time.perf_counter()
    trainer.run()
    return net.eval(), time.perf_counter() - start


@torch.no_grad()
def evaluate(net: UNet, test: list[dict]) -> dict[str, float]:
    """Foreground Dice on the held-out slices: mean over present (slice, class) pairs, and per class."""
    images = torch.stack([torch.as_tensor(i["image"]) for i in test])
    labels = torch.stack([torch.as_tensor(i["label"]) for i in test])
    pred = net(images).argmax(1, keepdim=True)
    metric = DiceMetric(include_background=False, reduction="none", ignore_empty=True)
    scores = metric(one_hot(pred, NUM_CLASSES), one_hot(labels, NUM_CLASSES))  # (N, 3), NaN where the class is absent
    out = {"dice": float(torch.nanmean(scores))}
    for c, name in enumerate(CLASS_NAMES):
        out[f"dice_{name}"] = float(torch.nanmean(scores[:, c]))
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def write_outputs(results: dict[str, Any], args: argparse.Namespace, command: str, write_json: bool = True) -> None:
    out = args.output_dir
    ks, arms = args.k_list, args.arm_list
    table = {(r["k"], r["arm"]): [] for r in results["runs"]}
    for r in results["runs"]:
        table[(r["k"], r["arm"])].append(r["dice"])
    n_train = results["n_train"]
    k_label = {k: (f"all ({n_train})" if k == "all" else k) for k in ks}
    lines = [
        "# Segmentation benchmark: GVAE augmentation vs classical augmentation",
        "",
        f"Command: `{command}`",
        "",
        f"- Data: embedded Colin27/AAL axial brain slices, {IMAGE_SIZE}x{IMAGE_SIZE}, 4 classes; k labelled slices "
        f"drawn per seed from split `train` ({n_train} slices); held-out split `test` ({results['n_test']} slices), "
        "never seen by a generator or segmenter.",
        f"- GVAE: conv architecture, latent {args.latent_size}, base channels {args.base_channels}, trained on the same k "
        f"labelled slices only, {args.gvae_iterations} iterations x batch {args.batch_size} (mean "
        f"{results['gvae_seconds_mean']:.0f} s each).",
        f"- Segmenter: MONAI UNet channels ({args.seg_channels}), DiceCE, Adam lr {args.seg_lr}, {args.seg_iterations} "
        f"iterations x batch {args.batch_size} in every arm (mean {results['seg_seconds_mean']:.0f} s per arm, "
        f"{args.workers} loader worker(s)); GVAE arms: "
        f"{args.synthetic_fraction:.0%} of each epoch's items are GVAE prior samples (`SyntheticMixDataset` + "
        "`GVAESynthesized`).",
        "- Metric: foreground Dice (cortex, deep grey matter, cerebellum) on the held-out slices, mean over "
        f"present (slice, class) pairs; mean ± standard deviation over {len(args.seed_list)} seed(s) "
        f"({', '.join(map(str, args.seed_list))}).",
        f"- Hardware: {results['hardware']}; total wall time {results['wall_seconds'] / 60:.1f} min.",
        "",
        "| arm | " + " | ".join(f"k = {k_label[k]}" for k in ks) + " |",
        "|---|" + "---|" * len(ks),
    ]
    for arm in arms:
        cells = []
        for k in ks:
            m, s = mean_std(table[(k, arm)])
            cells.append(f"{m:.3f} ± {s:.3f}")
        lines.append(f"| {ARM_NAMES[arm]} | " + " | ".join(cells) + " |")
    if "classical" in arms:
        lines += ["", "Paired difference to classical augmentation (same seed, same k subset), mean ± std over seeds:", "",
                  "| arm − classical | " + " | ".join(f"k = {k_label[k]}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
        for arm in arms:
            if arm == "classical":
                continue
            cells = []
            for k in ks:
                diff = np.asarray(table[(k, arm)]) - np.asarray(table[(k, "classical")])
                m, s = mean_std(list(diff))
                verdict = " (1 seed: no spread)" if len(diff) < 2 else (" (within spread)" if abs(m) <= s else "")
                cells.append(f"{m:+.3f} ± {s:.3f}{verdict}")
            lines.append(f"| {ARM_NAMES[arm]} | " + " | ".join(cells) + " |")
    lines += ["", "Per class (mean over seeds; cortex / deep grey matter / cerebellum):", "",
              "| arm | " + " | ".join(f"k = {k_label[k]}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for arm in arms:
        cells = []
        for k in ks:
            runs = [r for r in results["runs"] if r["k"] == k and r["arm"] == arm]
            cells.append(" / ".join(f"{np.mean([r[f'dice_{c}'] for r in runs]):.2f}" for c in CLASS_NAMES))
        lines.append(f"| {ARM_NAMES[arm]} | " + " | ".join(cells) + " |")
    lines.append("")
    with atomic_path(os.path.join(out, "results.md"), overwrite=args.overwrite) as tmp:
        with open(tmp, "w") as f:
            f.write("\n".join(lines))
    if write_json:
        with atomic_path(os.path.join(out, "results.json"), overwrite=args.overwrite) as tmp:
            with open(tmp, "w") as f:
                json.dump(results, f, indent=2)
    plot(table, ks, arms, k_label, os.path.join(out, "dice.png"), args.overwrite)
    print("\n".join(lines))


def plot(table: dict, ks: list[str], arms: list[str], k_label: dict, path: str, overwrite: bool) -> None:
    """Mean Dice per arm against k, with ±1 std error bars."""
    stats = {key: mean_std(v) for key, v in table.items()}
    colours = {arm: PLOT_COLOURS[[0, 3, 2, 1][ARMS.index(arm) % 4]] for arm in arms}
    plot_dice_against_k(stats, ks, {k: f"k={k_label[k]}" for k in ks}, arms, ARM_NAMES, colours,
                        "held-out foreground Dice (mean ± std over seeds)", path, overwrite)


# colour-blind-safe (Okabe-Ito) colours, grey first for the baseline
PLOT_COLOURS = [(90, 90, 90), (0, 158, 115), (213, 94, 0), (0, 114, 178), (204, 121, 167), (150, 150, 150),
                (230, 159, 0), (86, 180, 233)]


def plot_dice_against_k(stats: dict, ks: list, k_text: dict, arms: list[str], names: dict[str, str],
                        colours: dict[str, tuple[int, int, int]], title: str, path: str, overwrite: bool,
                        legend_width: int = 330) -> None:
    """Draw mean ± std per arm against k as a PNG (pillow only: no plotting dependency).

    Args:
        stats: ``{(k, arm): (mean, std)}``; missing cells are skipped.
        ks: the x positions, in order; ``k_text[k]`` labels each.
        arms: the lines, in legend order; ``names[arm]`` labels each, drawn in ``colours[arm]``.
        title: text above the plot.
        path: the PNG to write (atomically; refused if it exists and ``overwrite`` is false).
    """
    width, height, left, top, bottom = 490 + legend_width, 440, 70, 40, 60
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=13)
    y0 = max(0.0, np.floor(min(m - s for m, s in stats.values()) * 20) / 20)
    y1 = min(1.0, np.ceil(max(m + s for m, s in stats.values()) * 20) / 20)
    if y1 <= y0:
        y0, y1 = max(0.0, y0 - 0.05), min(1.0, y1 + 0.05)
    pw, ph = width - left - legend_width, height - top - bottom

    def xy(i: int, v: float, offset: float = 0.0) -> tuple[float, float]:
        return left + (i + 0.5 + offset) * pw / len(ks), top + (1 - (v - y0) / (y1 - y0)) * ph

    draw.rectangle([left, top, left + pw, top + ph], outline="black")
    for t in np.linspace(y0, y1, 6):
        _, y = xy(0, t)
        draw.line([left - 4, y, left, y], fill="black")
        draw.line([left, y, left + pw, y], fill=(225, 225, 225))
        draw.text((left - 40, y - 6), f"{t:.2f}", fill="black", font=font)
    for i, k in enumerate(ks):
        x, _ = xy(i, y0)
        draw.text((x - 15, top + ph + 8), k_text[k], fill="black", font=font)
    draw.text((left, 12), title, fill="black", font=font)
    draw.text((left + pw / 2 - 60, height - 25), "labelled training slices", fill="black", font=font)
    for a, arm in enumerate(arms):
        colour = colours[arm]
        offset = (a - (len(arms) - 1) / 2) * 0.05
        points = []
        for i, k in enumerate(ks):
            if (k, arm) not in stats:
                continue
            m, s = stats[(k, arm)]
            x, y = xy(i, m, offset)
            _, lo = xy(i, max(y0, m - s), offset)
            _, hi = xy(i, min(y1, m + s), offset)
            draw.line([x, lo, x, hi], fill=colour, width=2)
            draw.line([x - 4, lo, x + 4, lo], fill=colour)
            draw.line([x - 4, hi, x + 4, hi], fill=colour)
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colour)
            points.append((x, y))
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        ly = top + 10 + a * 20
        draw.line([left + pw + 15, ly + 6, left + pw + 40, ly + 6], fill=colour, width=3)
        draw.text((left + pw + 46, ly), names[arm], fill="black", font=font)
    with atomic_path(path, overwrite=overwrite) as tmp:
        img.save(tmp, format="PNG")


def render(args: argparse.Namespace) -> dict[str, Any]:
    """Rewrite the table and plot of an earlier run from its ``results.json`` (its settings and command)."""
    with open(args.render) as f:
        results = json.load(f)
    saved = argparse.Namespace(**{**results["settings"], "output_dir": args.output_dir, "overwrite": args.overwrite})
    saved = parse_args(_settings_argv(saved))
    saved.output_dir, saved.overwrite = args.output_dir, args.overwrite
    os.makedirs(args.output_dir, exist_ok=True)
    write_outputs(results, saved, results["command"], write_json=False)
    return results


def _settings_argv(ns: argparse.Namespace) -> list[str]:
    argv = []
    for key in ("ks", "seeds", "arms", "gvae_iterations", "seg_iterations", "batch_size", "synthetic_fraction",
                "latent_size", "base_channels", "seg_channels", "gvae_lr", "seg_lr", "pool_size", "threads", "workers"):
        argv += [f"--{key.replace('_', '-')}", str(getattr(ns, key))]
    return argv


def prepare_output_dir(output_dir: str, overwrite: bool) -> None:
    """Create ``output_dir``; refuse one that holds an earlier run's table, figures or plot unless ``overwrite``."""
    existing = [t for t in ("results.md", "results.json", "dice.png") if os.path.exists(os.path.join(output_dir, t))]
    if existing and not overwrite:
        raise FileExistsError(f"{output_dir} already holds {existing}; pass --overwrite or another --output-dir.")
    os.makedirs(output_dir, exist_ok=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.render is not None:
        return render(args)
    command = "python examples/segmentation_benchmark.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    prepare_output_dir(args.output_dir, args.overwrite)
    torch.set_num_threads(args.threads)
    train, test = load_brain_slices("train"), load_brain_slices("test")
    start = time.perf_counter()
    runs, gvae_seconds, seg_seconds = [], [], []
    needs_gvae = any(a in ("gvae", "classical_gvae") for a in args.arm_list)
    for k in args.k_list:
        for seed in args.seed_list:
            items = choose_subset(train, k, seed)
            pool = None
            if needs_gvae:
                gvae, seconds = train_gvae(items, args, seed)
                gvae_seconds.append(seconds)
                pool = GVAESamplePool(gvae, pool_size=args.pool_size, refresh_every=2 * args.pool_size)
                if seed == args.seed_list[0]:
                    with torch.no_grad():
                        samples = gvae.sample(16, generator=torch.Generator().manual_seed(0))
                    save_sample_grid(samples, os.path.join(args.output_dir, f"samples_k{k}.png"), 1, NUM_CLASSES)
            for arm in args.arm_list:
                net, seconds = train_segmenter(items, arm, pool, args, seed)
                seg_seconds.append(seconds)
                scores = evaluate(net, test)
                runs.append({"k": k, "seed": seed, "arm": arm, "seg_seconds": seconds, **scores})
                print(f"k={k} seed={seed} {arm:15s} dice={scores['dice']:.3f} ({seconds:.0f} s; "
                      f"{(time.perf_counter() - start) / 60:.1f} min so far)", flush=True)
    results = {
        "runs": runs,
        "n_train": len(train),
        "n_test": len(test),
        "gvae_seconds_mean": float(np.mean(gvae_seconds)) if gvae_seconds else 0.0,
        "seg_seconds_mean": float(np.mean(seg_seconds)),
        "wall_seconds": time.perf_counter() - start,
        "hardware": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores visible, "
                    f"torch {torch.__version__} with {args.threads} thread(s)",
        "settings": {k: v for k, v in vars(args).items() if not k.endswith("_list")},
        "command": command,
    }
    write_outputs(results, args, command)
    return results


if __name__ == "__main__":
    main()
