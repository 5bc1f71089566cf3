#!/usr/bin/env python
"""Items per second through a MONAI DataLoader with and without ``GVAESynthesized``, in one process.

The baseline pipeline is ``EnsureTyped`` + a random flip over the embedded 64x64 brain slices; the
measured pipelines insert ``GVAESynthesized`` (prior mode, pooled samples; optionally posterior mode, one
encoder + generator pass per replaced item) before the flip. Each pipeline is timed over the same number of
items after one warm-up pass, repeated ``--repeats`` times in alternation; the median is reported with
the ratio to the baseline (benchmark-rules: a timing is a ratio measured in one run).

The GVAE is the ``gvae_brain2d`` bundle's architecture (conv, latent 64, base channels 16, 1 + 4 channels,
64x64) with random weights unless ``--model`` names a checkpoint or bundle folder: the cost does not
depend on the weights.

Usage::

    python examples/synthesis_throughput.py                       # ~1 min on 2 CPU cores
    python examples/synthesis_throughput.py --num-workers 2 --prob 1.0 --modes prior,posterior
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from monai.data import DataLoader, Dataset
from monai.transforms import Compose, EnsureTyped, RandFlipd
from monai.utils import set_determinism

from monai_gvae.data import load_brain_slices
from monai_gvae.networks import GVAE
from monai_gvae.transforms import GVAESamplePool, GVAESynthesized

KEYS = ["image", "label"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="checkpoint file or bundle folder (default: random bundle-sized GVAE)")
    p.add_argument("--items", type=int, default=2048, help="items per timed pass")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--prob", type=float, default=0.5, help="GVAESynthesized prob")
    p.add_argument("--pool-size", type=int, default=64)
    p.add_argument("--modes", default="prior", help="comma-separated: prior, posterior")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the main process")
    return p.parse_args(argv)


def pipeline(synth: GVAESynthesized | None) -> Compose:
    steps = [EnsureTyped(keys=KEYS)]
    if synth is not None:
        steps.append(synth)
    steps.append(RandFlipd(keys=KEYS, prob=0.5, spatial_axis=1))
    return Compose(steps)


def items_per_second(transform: Compose, data: list[dict], args: argparse.Namespace) -> float:
    loader = DataLoader(Dataset(data, transform), batch_size=args.batch_size, shuffle=True, num_workers=args.num_workers)
    start = time.perf_counter()
    n = 0
    for batch in loader:
        n += batch["image"].shape[0]
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    set_determinism(0)
    slices = load_brain_slices("train")
    data = [dict(slices[i % len(slices)]) for i in range(args.items)]
    if args.model is not None:
        model = args.model
    else:
        model = GVAE(2, 5, 64, latent_size=64, architecture="conv", base_channels=16, max_channels=128,
                     image_channels=1, num_classes=4)
    pool = GVAESamplePool(model, pool_size=args.pool_size)  # one model, shared by every pipeline below
    pipelines = {"baseline (no GVAE)": pipeline(None)}
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        synth = GVAESynthesized(KEYS, pool, prob=args.prob, mode=mode, intensity_range=(0.0, 1.0))
        pipelines[f"GVAESynthesized {mode}, prob {args.prob}"] = pipeline(synth)
    for transform in pipelines.values():  # warm-up: imports, allocations, first pool fill
        items_per_second(transform, data[: 4 * args.batch_size], args)
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(args.repeats):
        for name, transform in pipelines.items():
            rates[name].append(items_per_second(transform, data, args))
    medians = {name: statistics.median(r) for name, r in rates.items()}
    base = medians["baseline (no GVAE)"]
    print(f"{args.items} items/pass, batch {args.batch_size}, num_workers {args.num_workers}, torch threads "
          f"{args.threads}, pool {args.pool_size}, median of {args.repeats}:")
    for name, rate in medians.items():
        print(f"  {name:38s} {rate:9.1f} items/s   ratio to baseline {rate / base:.2f}")
    return medians


if __name__ == "__main__":
    main()
