#!/usr/bin/env python
"""Throughput and memory of GVAE training and synthesis, each figure a ratio measured side by side in one process.

Run from the repository root::

    python examples/benchmarks/throughput.py            # full figures (several minutes on one CPU core)
    python examples/benchmarks/throughput.py --quick    # tiny sizes, every figure printed (the test runs this)
    python examples/benchmarks/throughput.py --compile  # also time torch.compile (slow: compiles for minutes)

Figures (targets from the project's performance issue; the measurements are package code,
``monai_gvae.benchmarks.throughput``):

(a) ``GVAETrainer`` iterations/s against a hand-written PyTorch loop doing the same updates (same networks,
    losses, optimisers and random draws: the final weights are compared) -- target >= 0.95.
(b) FLOP/s achieved by the training step (``torch.utils.flop_counter``) against a large ``conv2d`` timed in the
    same repetitions -- target >= 0.5 on a CPU for the 2D 64x64 configuration.
(c) pooled batched synthesis against per-item synthesis, items/s (``monai_gvae.bundle.generate``, and
    ``GVAESynthesize`` with a pool against a pool of one) -- target >= 10.
(d) a segmentation epoch with ``GVAESynthesized`` against the same epoch without it, through a DataLoader with
    2 workers -- target <= 10 % overhead.
(e) peak memory of a 3D 64^3 training step with and without gradient checkpointing and mixed precision --
    target: checkpointing cuts the peak by >= 30 %.
Plus the speed options (channels-last, bfloat16 autocast, ``float_outputs``/``check_finite`` off, ``torch.compile``)
as step-time ratios against the default step.

Timing: repetitions of the compared arms are interleaved (the order rotates each repetition) and the median of
the per-repetition ratios is reported with its min-max, because the machine may be shared. Absolute figures are
printed beside the ratios for context only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

# the package is importable from the repository root without installation
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from monai_gvae.benchmarks.report import command_line  # noqa: E402
from monai_gvae.benchmarks.throughput import FIGURES, ThroughputSettings, run_figures  # noqa: E402
from monai_gvae.benchmarks.timing import machine_info  # noqa: E402
from monai_gvae.engines import configure_backends  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repetitions (seconds)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on a CPU (0: torch's default)")
    parser.add_argument("--reps", type=int, default=None, help="interleaved repetitions (default 15; quick 3)")
    parser.add_argument("--iters", type=int, default=None,
                        help="training iterations per repetition = one epoch (default 2, the bundle's epoch; quick 1)")
    parser.add_argument("--only", default=",".join(FIGURES), help=f"comma-separated subset of {','.join(FIGURES)}")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    parser.add_argument("--clock", choices=("auto", "process", "wall"), default="auto",
                        help="auto: process CPU time on a CPU with one thread, else wall-clock time")
    parser.add_argument("--json", default=None, help="write the figures to this JSON file")
    parser.add_argument("--deterministic", action="store_true",
                        help="deterministic kernels (torch.use_deterministic_algorithms; cuDNN autotuning off): on "
                             "CUDA, (a)'s trainer and plain loop then make bit-identical updates")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    if only - set(FIGURES):
        parser.error(f"--only: unknown figure(s) {sorted(only - set(FIGURES))}; choose from {','.join(FIGURES)}")
    device = torch.device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    configure_backends(device, cudnn_benchmark=not args.deterministic)
    if args.deterministic:
        # cuBLAS needs a fixed workspace for reproducible results; it is read when CUDA's handle is created
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
    # process CPU time equals latency only with one thread; with more it sums the threads' work
    single = device.type == "cpu" and torch.get_num_threads() == 1
    clock = args.clock if args.clock != "auto" else ("process" if single else "wall")
    if clock == "process" and device.type == "cuda":
        parser.error("--clock process cannot time GPU work; use wall")
    settings = ThroughputSettings(quick=args.quick, reps=args.reps or (3 if args.quick else 15),
                                  iters=args.iters or (1 if args.quick else 2), compile=args.compile,
                                  clock=time.process_time if clock == "process" else time.perf_counter)

    info = machine_info(device)
    command = command_line("examples/benchmarks/throughput.py", argv if argv is not None else sys.argv[1:], quote=False)
    print("monai-gvae throughput benchmark" + (" (--quick: tiny sizes, figures not meaningful)" if args.quick else ""))
    print(f"command: {command.strip()}")
    print(f"machine: {info['cpu']}, {info['cpus']} CPUs; torch {info['torch']}, {info['threads']} thread(s); "
          f"device {info['device']}" + (f" ({info['gpu']})" if "gpu" in info else ""))
    print(f"load average at start: {info['load_average']}; clock: "
          + ("process CPU time" if clock == "process" else "wall-clock time"))
    results: dict = {"machine": info, "command": command.strip(), "quick": args.quick, "clock": clock}
    start = time.perf_counter()
    run_figures(settings, device, only, results)
    load_end = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    print(f"\nload average at end: {load_end}; total {time.perf_counter() - start:.0f} s")
    results["load_average_end"] = load_end
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
    return results


if __name__ == "__main__":
    main()
