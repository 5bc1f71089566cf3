#!/usr/bin/env python
"""Few-label benchmark: can label-conditioned GVAE synthesis (with or without an unlabelled pool) add to
classical augmentation for a MONAI UNet trained on k labelled brain slices?

Protocol (see docs/fewlabels.md; rules in the project's benchmark-rules.md). It extends
``examples/segmentation_benchmark.py``: same data, k-subset draw, segmenter, classical augmentation, metric and
statistics (``monai_gvae.benchmarks.segmentation``), with the few-label arms of ``monai_gvae.benchmarks.fewlabels``:

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
import os
import platform
import sys
import time

import numpy as np
import torch

from monai_gvae.benchmarks.fewlabels import (
    ARMS, POOL_ARMS, FewLabelSettings, mean_gvae_seconds, merge_runs, pretrain, render_run, run_cell,
    write_fewlabels_outputs,
)
from monai_gvae.benchmarks.report import command_line, prepare_output_dir
from monai_gvae.data import load_brain_slices

SCRIPT = "examples/fewlabels_benchmark.py"


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


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.render:
        results, text = render_run(args.output_dir)
        print(text)
        return results
    if args.merge:
        merge_command = command_line(SCRIPT, ["--merge", *args.merge, "--output-dir", args.output_dir])
        results, text = merge_runs(args.merge, args.output_dir, args.overwrite, merge_command)
        print(text)
        return results
    command = command_line(SCRIPT, sys.argv[1:] if argv is None else argv)
    prepare_output_dir(args.output_dir, args.overwrite)
    torch.set_num_threads(args.threads)
    settings = FewLabelSettings.from_namespace(args)
    train = load_brain_slices("train")
    evaluation = load_brain_slices("test") if args.eval_split == "test" else None  # None: outside the k (val)
    start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{(time.perf_counter() - start) / 60:5.1f} min] {msg}", flush=True)

    runs: list[dict] = []
    pretrain_seconds = []
    for seed in args.seed_list:
        pretrained = None
        if any(a in POOL_ARMS for a in args.arm_list):
            pretrained = pretrain(train, settings, seed)
            pretrain_seconds.append(pretrained["seconds"])
            log(f"seed={seed} pre-trained on the unlabelled pool ({pretrained['seconds']:.0f} s)")
        for k in args.k_list:
            samples_dir = args.output_dir if seed == args.seed_list[0] else None  # sample grids of the first seed
            runs += run_cell(k, seed, train, evaluation, args.arm_list, settings, pretrained, log, samples_dir,
                             args.overwrite)
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
    print(write_fewlabels_outputs(results, args.output_dir, args.overwrite))
    return results


if __name__ == "__main__":
    main()
