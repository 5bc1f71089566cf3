#!/usr/bin/env python
"""Choose a bundle's defaults on validation data: train it under each setting of a sweep, score on the validation
split (never the test split), write a ranked table.

Each trial is a normal bundle run (``monai_gvae.bundle.train_bundle``) with the setting's overrides and the
validation protocol of ``monai_gvae.benchmarks.sweep.validation_overrides`` (gvae_brain2d: the embedded slices'
``val`` split; other bundles: the last ``--val-size`` training items held out), evaluated by the bundle's own
``evaluating`` workflow (the keys of ``metrics.json``). Writes into ``--output-dir``:

* ``results.md`` -- the protocol (command, bundle, validation split, seeds, fixed overrides, hardware, wall time)
  and one row per setting, mean ± sd over seeds, ranked by ``--rank-by``, the bundle's current values in bold;
* ``results.json`` -- every trial's numbers;
* ``trials/<setting>/seed<k>/`` -- each run's ``model.pt``, ``samples.png`` and ``metrics_val.json``.

Examples::

    # the brain2d bundle's weights, learning rates, critic steps and upsampling, one factor at a time, 2 seeds
    python examples/sweep_defaults.py --bundle gvae_brain2d --design oat --seeds 0,1 \\
        --factor adv_weight=0.003,0.03 kl_weight=0.0001,0.01 learning_rate=0.0003 \\
                 critic_learning_rate=0.0003 n_critic=2 upsample=null \\
        --output-dir runs/sweep_brain2d
    # MNIST at a CPU budget (the budget is a fixed override of every trial)
    python examples/sweep_defaults.py --bundle gvae_mnist --set architecture=conv latent_size=64 batch_size=64 \\
        max_epochs=3 --factor adv_weight=0.003,0.01,0.03 --output-dir runs/sweep_mnist
    # a smoke test (tiny networks, one epoch, two settings)
    python examples/sweep_defaults.py --quick --output-dir /tmp/sweep_quick
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import torch

from monai_gvae.benchmarks.paper_report import git_commit, hardware_summary
from monai_gvae.benchmarks.report import command_line, prepare_output_dir, write_json, write_text
from monai_gvae.benchmarks.sweep import DESIGNS, LOWER_IS_BETTER, SweepSettings, parse_factor, run_sweep, sweep_markdown

SCRIPT = "examples/sweep_defaults.py"
QUICK_FIXED = {"max_epochs": 1, "base_channels": 4, "latent_size": 8, "batch_size": 8, "val_interval": 1,
               "num_workers": 0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--bundle", default="gvae_brain2d", help="a bundle folder or the name of a shipped bundle")
    p.add_argument("--factor", nargs="+", default=[], metavar="ID=V1,V2",
                   help="bundle config ids and the values to try (Python literals, null, true/false, or text)")
    p.add_argument("--design", choices=DESIGNS, default="grid",
                   help="grid: every combination; oat: the bundle's values, then one factor at a time")
    p.add_argument("--seeds", default="0", help="comma-separated seeds of each setting (the bundle's seed)")
    p.add_argument("--set", nargs="+", default=[], metavar="ID=VALUE",
                   help="overrides of every trial (e.g. a CPU budget: max_epochs=3, or dataset_dir=PATH)")
    p.add_argument("--val-size", type=int, default=5000,
                   help="validation items held out from the end of the training data (bundles without a val split)")
    p.add_argument("--rank-by", default="mmd_gaussian", choices=sorted(LOWER_IS_BETTER))
    p.add_argument("--output-dir", default="runs/sweep")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier sweep's outputs and runs")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machines are shared)")
    p.add_argument("--quick", action="store_true", help="tiny networks, one epoch, two settings: a smoke test")
    args = p.parse_args(argv)
    if args.quick:
        args.set = [f"{k}={v}" for k, v in QUICK_FIXED.items()] + args.set
        args.factor = args.factor or ["adv_weight=0.01,0.03"]
    if not args.factor:
        p.error("give at least one --factor ID=V1,V2 (or --quick)")
    try:
        args.factors = dict(parse_factor(f) for f in args.factor)
        args.fixed = {k: v[0] for k, v in (parse_factor(f) for f in args.set)}
        args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError as e:
        p.error(str(e))
    if not args.seed_list:
        p.error("--seeds names no seed")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    out = Path(args.output_dir)
    prepare_output_dir(out, args.overwrite, outputs=("results.md", "results.json"))
    settings = SweepSettings(bundle=args.bundle, factors=args.factors, design=args.design, seeds=args.seed_list,
                             fixed=args.fixed, val_size=args.val_size, rank_by=args.rank_by, output_dir=str(out))
    header = {"command": command_line(SCRIPT, sys.argv[1:] if argv is None else argv),
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "hardware": hardware_summary(), "commit": git_commit()}

    def log(msg: str) -> None:
        print(f"[{(time.perf_counter() - start) / 60:5.1f} min] {msg}", flush=True)

    results = run_sweep(settings, overwrite=args.overwrite, log=log)
    header["total_minutes"] = (time.perf_counter() - start) / 60.0
    content = {"header": header, "settings": vars(settings), **results}
    write_json(out / "results.json", content, overwrite=True, default=repr)
    text = sweep_markdown(settings, results, header)
    write_text(out / "results.md", text, overwrite=True)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
