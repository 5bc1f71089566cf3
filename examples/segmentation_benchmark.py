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

The pieces are package code (``monai_gvae.benchmarks.segmentation``); this script is the recipe. Writes to
``--output-dir`` (refusing to overwrite without ``--overwrite``): ``results.md`` (tables and protocol),
``results.json`` (every figure), ``dice.png`` (plot) and ``samples_k{k}.png`` (GVAE samples of seed 0).

Usage::

    python examples/segmentation_benchmark.py --output-dir runs/segmentation_benchmark   # ~30 min, 2 CPU cores
    python examples/segmentation_benchmark.py --quick --output-dir /tmp/seg_quick          # seconds, a smoke test
    python examples/segmentation_benchmark.py --render runs/x/results.json --output-dir docs/x  # redraw table + plot
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Any

import numpy as np
import torch

from monai_gvae.benchmarks.report import command_line, prepare_output_dir, read_json
from monai_gvae.benchmarks.segmentation import (
    ARMS, GVAE_ARMS, SegmentationSettings, dice_scores, labelled_items, save_gvae_samples, train_arm_segmenter,
    train_joint_gvae, write_segmentation_outputs,
)
from monai_gvae.data import load_brain_slices
from monai_gvae.transforms import GVAESamplePool


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--output-dir", default="runs/segmentation_benchmark", help="folder of the outputs")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--ks", default="5,10,20,all",
                   help="numbers of labelled training slices ('all' = the whole train split)")
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
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 is fastest for these tiny networks on shared cores)")
    p.add_argument("--workers", type=int, default=1,
                   help="DataLoader workers of the segmenter (augmentation and synthesis overlap training on a "
                        "2nd core)")
    p.add_argument("--quick", action="store_true",
                   help="tiny settings for a smoke test (k=5, one seed, a few iterations)")
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
    try:
        args.settings = SegmentationSettings.from_namespace(args)
    except ValueError as e:
        p.error(str(e))
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.render is not None:  # redraw an earlier run's table and plot, with its settings and command
        results = read_json(args.render)
        os.makedirs(args.output_dir, exist_ok=True)
        print(write_segmentation_outputs(results, args.output_dir, args.overwrite, write_results_json=False))
        return results
    command = command_line("examples/segmentation_benchmark.py", sys.argv[1:] if argv is None else argv)
    prepare_output_dir(args.output_dir, args.overwrite)
    torch.set_num_threads(args.threads)
    settings = args.settings
    train, test = load_brain_slices("train"), load_brain_slices("test")
    start = time.perf_counter()
    runs, gvae_seconds, seg_seconds = [], [], []
    for k in args.k_list:
        for seed in args.seed_list:
            items = labelled_items(train, k, seed)
            pool = None
            if any(a in GVAE_ARMS for a in args.arm_list):
                # the generator sees the same k labelled slices as the segmenter, nothing more
                gvae, seconds = train_joint_gvae(items, settings, seed)
                gvae_seconds.append(seconds)
                pool = GVAESamplePool(gvae, pool_size=settings.pool_size, refresh_every=2 * settings.pool_size)
                if seed == args.seed_list[0]:
                    save_gvae_samples(gvae, os.path.join(args.output_dir, f"samples_k{k}.png"))
            for arm in args.arm_list:
                net, seconds = train_arm_segmenter(items, arm, pool, settings, seed)
                seg_seconds.append(seconds)
                scores = dice_scores(net, test)
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
        "settings": {k: v for k, v in vars(args).items() if not k.endswith("_list") and k != "settings"},
        "command": command,
    }
    print(write_segmentation_outputs(results, args.output_dir, args.overwrite))
    return results


if __name__ == "__main__":
    main()
