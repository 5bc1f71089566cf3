#!/usr/bin/env python
"""Few-label benchmark: does label-conditioned GVAE synthesis beat classical augmentation, and the cheapest use
of the same unlabelled images (self-training), for a MONAI UNet trained on k labelled slices?

Protocol (docs/fewlabels.md; rules in the project's benchmark-rules.md); the code is ``monai_gvae.benchmarks``:

* Data: the embedded 64x64 axial brain slices (121 slices, 4 classes), or your own ``--data-dir`` with
  ``images/`` and ``labels/`` NIfTI files (2D slices, or 3D volumes reoriented to RAS and sliced along ``--axis``,
  0 sagittal, 1 coronal, 2 axial, each slice in the radiological view; resized to 64x64, label values remapped to
  0..C-1). The slices are split into contiguous slabs with gaps of 3 slices: train, val
  (for choosing settings) and test (held out); ``--split-layout paired`` puts a val slab beside each test slab
  (validation then sees the levels the test scores; the recorded runs used the default ``alternate``). Per seed, k slices are drawn from train; the other train slices
  are the unlabelled pool (labels hidden). Several 3D volumes: slabs inside each volume; from 4 volumes on
  (``--split-unit auto``) whole volumes are held out (held-out subjects), and ``--k-unit volume`` makes k count
  labelled scans (every slice of k train volumes; the other train volumes are the pool). 2D slice files of several
  subjects become one volume per subject with ``--volume-pattern`` (its first group names the subject).
* Segmenter (every arm): MONAI ``UNet`` (8-16-32-64, one residual unit), DiceCE, Adam 1e-3, ``--seg-iterations``
  x batch ``--batch-size`` from the same initial weights per seed; classical augmentation (left-right flip +
  affine) on every item, real or synthetic.
* Arms: ``classical`` (the baseline); controls without a generator: ``elastic`` (deformed real pairs),
  ``selftrain`` (the pool's images with the classical segmenter's pseudo-labels); GVAE arms: ``cond`` (a
  label-conditioned GVAE trained on the k slices renders deformed copies of the k label maps), ``cond_pseudo``
  (the same GVAE renders deformed pseudo-label maps of the pool: new, real anatomy, each pair exact by
  construction), ``selftrain_cond`` (both: the pool's own pseudo-labelled images and ``cond_pseudo``'s images of
  their maps, each at the synthetic share, so 80 % real items at 10 %), ``cond_pseudo_post`` (the same GVAE
  re-renders the pool's images at their warped pseudo-label maps from each image's posterior latent; use it with a
  low ``--kl-weight`` such as 1e-4, at the default the posterior has collapsed to the prior),
  ``cond_pseudo_interp`` (the same GVAE renders maps interpolated between two similar pool pseudo-label maps);
  controls by registration (the k slices registered to each pool image): ``selftrain_atlas`` (the pool's images with
  the registered labels; ``--area-guard``), ``atlas_synth`` (the warped atlas images with those labels: exact pairs
  of real texture), ``selftrain_fused``; and the earlier ``cond_pool``, ``joint_pool``, ``interp``, ``cond_interp``, ``cond_pool_interp`` (docs/fewlabels.md).
* Levers of the conditional GVAE: ``--seg-weight`` with ``--seg-objective`` (segmentation consistency, or gradient
  matching: GenSeg's bi-level objective to first order), ``--condition-mode spade``,
  ``--critic-head patch``, ``--adv-weight``; and the segmenter's ``--schedule finetune``.
* Metric: foreground Dice on the scored split (``--eval-split val`` while choosing settings, ``test`` once), mean
  over present (slice, class) pairs; the paired difference to ``classical`` (and to ``selftrain``) with a 95 %
  Student-t interval over seeds: a gain only when the whole interval lies above zero.
* Deterministic: the same command and seed give the same figures on the same kind of CPU with the same library
  versions (seeded everything, ``torch.use_deterministic_algorithms``, ``--threads`` fixed; ``results.json`` records
  the versions); another CPU's or library's floating-point kernels give other figures (a seed's paired difference
  moved by up to 6 points), so pair arms within one run or one environment (``--merge`` refuses other versions);
  ``--seg-repeats R`` averages R segmenters per arm to damp those swings.

Writes ``results.md``, ``results.json``, ``dice.png`` and ``samples_k{k}_{arm}.png`` (first seed) into
``--output-dir`` (refusing to overwrite without ``--overwrite``).

Usage::

    # one process per core, then one table
    python examples/fewlabels_benchmark.py --seeds 0,1,2,3 --output-dir runs/fl_a
    python examples/fewlabels_benchmark.py --seeds 4,5,6,7 --output-dir runs/fl_b
    python examples/fewlabels_benchmark.py --merge runs/fl_a runs/fl_b --output-dir runs/fewlabels
    python examples/fewlabels_benchmark.py --data-dir my_scans --axis 2 --num-classes 3 --output-dir runs/mine
    python examples/fewlabels_benchmark.py --data-dir my_scans --k-unit volume --ks 2,5 --output-dir runs/scans
    python examples/fewlabels_benchmark.py --data-dir my_slices --volume-pattern '(.+)_slice[0-9]+' --k-unit volume --output-dir runs/slices
    python examples/fewlabels_benchmark.py --quick --output-dir /tmp/fewlabels_quick   # a smoke test
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sys
import time

import numpy as np
import torch
from monai.config import get_config_values

from monai_gvae.benchmarks.fewlabels import (
    ARMS, CONDITION_MODES, CONFIDENCE_FORMAT, CRITIC_HEADS, K_UNITS, MIN_VOLUMES_FOR_VOLUME_SPLIT, POOL_ARMS, SCHEDULES,
    SEG_OBJECTIVES, SPLIT_UNITS, UPSAMPLE_MODES, FewLabelSettings,
    fewlabel_splits, mean_gvae_seconds, merge_runs, pretrain, render_run, run_cell, write_fewlabels_outputs,
)
from monai_gvae.benchmarks.report import command_line, prepare_output_dir
from monai_gvae.benchmarks.segmentation import INTENSITY_RANDOMISATIONS, SEG_LR_SCHEDULES
from monai_gvae.data import SLAB_LAYOUTS

SCRIPT = "examples/fewlabels_benchmark.py"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--output-dir", default="runs/fewlabels", help="folder of the outputs")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--data-dir", default=None,
                   help="a folder with images/ and labels/ NIfTI files (default: the embedded brain slices)")
    p.add_argument("--axis", type=int, default=2, help="--data-dir: anatomical axis along which 3D volumes are sliced "
                   "(after RAS reorientation): 0 sagittal, 1 coronal, 2 axial")
    p.add_argument("--num-classes", type=int, default=None,
                   help="--data-dir: label classes incl. background (an error if the labels hold more; default: as found)")
    p.add_argument("--ks", default="5,10", help="numbers of labelled training slices (volumes with --k-unit volume)")
    p.add_argument("--k-unit", default="slice", choices=K_UNITS,
                   help="what k counts: labelled slices, or labelled volumes (whole scans: every slice of k train "
                        "volumes labelled, the other train volumes the pool; needs the volume split)")
    p.add_argument("--split-unit", default="auto", choices=SPLIT_UNITS,
                   help="--data-dir: hold out slabs of slices (inside each volume; --split-layout applies) or whole "
                        f"volumes (held-out subjects); auto: volumes from {MIN_VOLUMES_FOR_VOLUME_SPLIT} 3D volumes on")
    p.add_argument("--volume-pattern", default=None,
                   help="--data-dir of 2D slice files: a regular expression whose first group names each file's "
                        "subject (e.g. '(.+)_slice\\d+'), so that one subject's files are one volume (slabs inside "
                        "it, or whole subjects held out; --k-unit volume counts subjects)")
    p.add_argument("--seeds", default="0,1,2,3,4,5,6,7", help="seeds (subset draw, initialisation, sampling)")
    p.add_argument("--arms", default="classical,elastic,selftrain,cond,cond_pseudo",
                   help=f"arms among {', '.join(ARMS)} (classical is always run first)")
    p.add_argument("--eval-split", default="test", choices=("test", "val"),
                   help="'test': the held-out slabs (report once); 'val': the validation slabs (choose settings)")
    p.add_argument("--seg-iterations", type=int, default=600, help="segmenter iterations per arm")
    p.add_argument("--batch-size", type=int, default=16, help="segmenter batch")
    p.add_argument("--synthetic-fraction", type=float, default=0.1, help="share of synthetic items per epoch")
    p.add_argument("--num-synthetic", type=int, default=256, help="synthetic pairs generated per (k, seed, arm)")
    p.add_argument("--gvae-iterations", type=int, default=500, help="conditional GVAE iterations on the k slices")
    p.add_argument("--pretrain-iterations", type=int, default=500, help="image-only pre-training on the pool")
    p.add_argument("--adapt-iterations", type=int, default=250, help="adaptation iterations on the k slices")
    p.add_argument("--gvae-batch", type=int, default=8)
    p.add_argument("--latent-size", type=int, default=32)
    p.add_argument("--base-channels", type=int, default=16, help="GVAE (conv architecture) base channels")
    p.add_argument("--upsample", default="nearest", choices=UPSAMPLE_MODES,
                   help="generator upsampling (nearest: upsample then convolve, no checkerboard artefacts; linear: "
                        "bilinear then convolve, no streaks either)")
    p.add_argument("--kl-weight", type=float, default=2e-2, help="KL weight (high: prior samples stay usable)")
    p.add_argument("--adv-weight", type=float, default=1e-3)
    p.add_argument("--critic-quantile", type=float, default=-1.0,
                   help="conditional arms: keep pairs the critic scores at least as high as this quantile of the "
                        "real pairs' scores (0: the least real-looking real pair; negative: no filter)")
    p.add_argument("--min-dice", type=float, default=0.7, help="joint_pool: segmenter-agreement threshold")
    p.add_argument("--render-min-dice", type=float, default=0.5,
                   help="cond_pseudo_checked: Dice every class of a rendered map must reach against the classical "
                        "segmenter's prediction")
    p.add_argument("--render-min-pixels", type=int, default=32,
                   help="cond_pseudo_checked: classes with fewer pixels in a map are not checked (fragments)")
    p.add_argument("--sigma-min-dice", type=float, default=0.6,
                   help="joint_pool: largest sigma whose variants of the k slices keep this label Dice")
    p.add_argument("--seg-weight", type=float, default=0.5,
                   help="conditional GVAEs: weight of the segmentation term (the classical segmenter); 0: none")
    p.add_argument("--seg-objective", default="consistency", choices=SEG_OBJECTIVES,
                   help="the segmentation term: consistency (frozen segmenter) or gradient_matching (GenSeg-like)")
    p.add_argument("--seg-lr", type=float, default=1e-4,
                   help="--seg-objective gradient_matching: learning rate of the segmenter copy that keeps training")
    p.add_argument("--condition-mode", default="concat", choices=CONDITION_MODES,
                   help="conditional generator: label map concatenated, or SPADE normalisation")
    p.add_argument("--critic-head", default="linear", choices=CRITIC_HEADS, help="critic: one score, or patch scores")
    p.add_argument("--schedule", default="mix", choices=SCHEDULES,
                   help="segmenter: synthetic pairs mixed in throughout, or real-only for the last --finetune-iterations")
    p.add_argument("--finetune-iterations", type=int, default=100, help="--schedule finetune: real-only iterations")
    p.add_argument("--pseudo-keep", type=float, default=1.0,
                   help="selftrain, cond_pseudo: share of the pool used, the slices the classical segmenter is most "
                        "confident about; *_atlas arms: the slices whose registered atlas fits best; *_fused arms: "
                        "the slices where segmenter and registration agree most (1: the whole pool)")
    p.add_argument("--atlas-weight", type=float, default=0.5,
                   help="*_fused arms: probability margin given to the registered class over the segmenter's "
                        "(0: the segmenter's labels; 1: the registered ones)")
    p.add_argument("--area-guard", action="store_true",
                   help="*_atlas arms: leave out pool slices whose registered map holds a class area out of line with "
                        "the maps of the pool slices within 3 levels of the same volume (--data-dir 2D slice files: "
                        "no neighbours, never judged)")
    p.add_argument("--seg-repeats", type=int, default=1,
                   help="segmenters trained per arm from other initial weights (the same in every arm); the arm's "
                        "Dice is their mean: damps the training's chaotic seed-level swings")
    p.add_argument("--seg-lr-schedule", default="constant", choices=SEG_LR_SCHEDULES,
                   help="the segmenters' learning rate: constant, or poly (nnU-Net's decay to 0 over the iterations: "
                        "the scored last iterate hangs less on its last batches)")
    p.add_argument("--synthetic-intensity", default="none", choices=INTENSITY_RANDOMISATIONS,
                   help="random intensity changes of every synthetic pair's image (renders, pool images) before the "
                        "classical augmentation: noise, bias_contrast (bias field + gamma), sharpen, all; none: off")
    p.add_argument("--grad-weight", type=float, default=0.0,
                   help="GVAEs: weight of the gradient difference term (edges as strong as the data's); 0: none")
    p.add_argument("--split-layout", default="alternate", choices=SLAB_LAYOUTS,
                   help="held-out slabs: val and test alternate (different levels), or paired (a val slab beside "
                        "each test slab, the same levels)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (fixed: figures depend on it)")
    p.add_argument("--device", default="cpu",
                   help="where segmenters and GVAEs train: cpu (default; the figures of docs/fewlabels.md), cuda, "
                        "cuda:N; figures of one device do not reproduce on another")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    p.add_argument("--render", action="store_true",
                   help="only rewrite results.md and dice.png from --output-dir's results.json (no training)")
    p.add_argument("--merge", nargs="+", metavar="DIR",
                   help="combine finished runs that differ only in --seeds, --ks or --arms (e.g. seeds split over "
                        "processes; a run without GVAE arms may have other GVAE settings) into --output-dir (no "
                        "training)")
    args = p.parse_args(argv)
    if args.render or args.merge:
        return args
    if args.quick:
        args.ks = "1" if args.k_unit == "volume" else "5"  # one labelled scan, or five slices
        args.seeds = "0" if args.seeds == p.get_default("seeds") else args.seeds  # one seed unless asked for others
        args.seg_iterations, args.batch_size, args.num_synthetic = 3, 4, 8
        args.finetune_iterations = 1
        args.gvae_iterations = args.pretrain_iterations = args.adapt_iterations = 3
        args.gvae_batch, args.latent_size, args.base_channels = 4, 8, 4
    args.k_list = [int(k) for k in args.ks.split(",") if k.strip()]
    args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.arm_list = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in args.arm_list if a not in ARMS]
    if unknown:
        p.error(f"unknown arm(s) {unknown}; choose from {ARMS}")
    # the baseline first: its segmenter pseudo-labels the pool, filters joint_pool and drives --seg-weight
    args.arm_list = ["classical"] + [a for a in args.arm_list if a != "classical"]
    if not 0.0 <= args.synthetic_fraction < 1.0:
        p.error("--synthetic-fraction must be in [0, 1)")
    try:
        torch.device(args.device)
    except (RuntimeError, TypeError):
        p.error(f"--device must be a torch device such as cpu, cuda or cuda:1, got {args.device!r}")
    return args


def _installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:  # SimpleITK: only the registration arms import it
        return None


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
    on_cuda = torch.device(args.device).type == "cuda"
    if on_cuda:
        if not torch.cuda.is_available():
            raise SystemExit(f"--device {args.device}: CUDA is not available to this PyTorch ({torch.__version__}); "
                             "use --device cpu.")
        # deterministic cuBLAS needs a fixed workspace, set before its first call (PyTorch's reproducibility notes)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # deterministic: the same command and seed give the same figures (checked by tests/test_examples.py)
    torch.set_num_threads(args.threads)
    # on CUDA some kernels have no deterministic version (the cross-entropy's nll_loss2d): PyTorch warns for them
    torch.use_deterministic_algorithms(True, warn_only=on_cuda)
    data = fewlabel_splits(args.data_dir, args.axis, args.num_classes, split_layout=args.split_layout,
                           split_unit=args.split_unit, volume_pattern=args.volume_pattern)
    if args.k_unit == "volume" and data.split_unit != "volume":
        raise SystemExit("--k-unit volume labels whole volumes, so whole volumes must be held out too: a --data-dir "
                         f"of at least {MIN_VOLUMES_FOR_VOLUME_SPLIT} 3D volumes, or --split-unit volume.")
    prepare_output_dir(args.output_dir, args.overwrite)  # after the data: a bad folder leaves no output folder
    settings = FewLabelSettings.from_namespace({**vars(args), "num_classes": data.num_classes,
                                                "left_right_flip": data.left_right_flip})
    evaluation = data.test if args.eval_split == "test" else data.val
    start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{(time.perf_counter() - start) / 60:5.1f} min] {msg}", flush=True)

    runs: list[dict] = []
    pretrain_seconds = []
    for seed in args.seed_list:
        pretrained = None
        if any(a in POOL_ARMS for a in args.arm_list):
            pretrained = pretrain(data.train, settings, seed)
            pretrain_seconds.append(pretrained["seconds"])
            log(f"seed={seed} pre-trained on the unlabelled pool ({pretrained['seconds']:.0f} s)")
        for k in args.k_list:
            samples_dir = args.output_dir if seed == args.seed_list[0] else None  # sample grids of the first seed
            runs += run_cell(k, seed, data.train, evaluation, args.arm_list, settings, pretrained, log, samples_dir,
                             args.overwrite, data.class_names)
    results = {
        "runs": runs, "table_format": CONFIDENCE_FORMAT, "data": data.description, "num_classes": data.num_classes,
        "n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test), "gap": 3, "command": command,
        "split_unit": data.split_unit,
        "gvae_seconds": mean_gvae_seconds(runs),
        "pretrain_seconds": round(float(np.mean(pretrain_seconds)), 1) if pretrain_seconds else None,
        "seg_seconds_mean": float(np.mean([r["seg_seconds"] for r in runs])),
        "wall_seconds": time.perf_counter() - start,
        "hardware": f"{platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs, torch "
                    f"{torch.__version__} with {args.threads} thread(s)"
                    + (f", {torch.cuda.get_device_name(args.device)}" if on_cuda else ""),
        # the last digits depend on the libraries' kernels too: figures reproduce with the same versions
        "versions": {**{name: str(v) for name, v in get_config_values().items()},
                     "SimpleITK": _installed_version("SimpleITK")},
        "settings": {**{k: v for k, v in vars(args).items() if not k.endswith("_list")},
                     "left_right_flip": settings.left_right_flip},
    }
    print(write_fewlabels_outputs(results, args.output_dir, args.overwrite))
    return results


if __name__ == "__main__":
    main()
