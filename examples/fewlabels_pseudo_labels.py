#!/usr/bin/env python
"""Diagnostic of the few-label benchmark's pseudo-labels: which pool slices does the segmenter trained on the k
labelled slices label worst, and does the confidence that ``--pseudo-keep`` ranks by find them?

It trains the ``classical`` arm's segmenter exactly as ``examples/fewlabels_benchmark.py`` does for one (k, seed)
cell, pseudo-labels the unlabelled pool (the train slices outside the k) and, reading the pool's hidden labels for
this analysis only, prints per slice the confidence, whether ``--keep`` keeps it, the pseudo-label's Dice and the
true pixels per class. Only the train split is read: no val or test slice. Never choose a setting from it (it
uses labels a user would not have): choose on the validation slabs with the benchmark.

Usage::

    python examples/fewlabels_pseudo_labels.py --seed 0 --k 5 --seg-iterations 1200 --keep 0.5
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from monai_gvae.benchmarks.fewlabels import (
    K_UNITS,
    SPLIT_UNITS,
    fewlabel_splits,
    labelled_and_pool,
    pseudo_label_quality,
)
from monai_gvae.benchmarks.report import markdown_table
from monai_gvae.benchmarks.segmentation import train_segmenter


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="the cell's seed (k slices drawn, initial weights)")
    p.add_argument("--k", type=int, default=5, help="labelled training slices (volumes with --k-unit volume)")
    p.add_argument("--k-unit", default="slice", choices=K_UNITS, help="what k counts (the benchmark's --k-unit)")
    p.add_argument("--split-unit", default="auto", choices=SPLIT_UNITS, help="the benchmark's --split-unit")
    p.add_argument("--seg-iterations", type=int, default=600, help="segmenter iterations (the benchmark's)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--keep", type=float, default=0.5, help="share of the pool kept, most confident first")
    p.add_argument("--data-dir", default=None, help="a folder with images/ and labels/ NIfTI files")
    p.add_argument("--axis", type=int, default=2)
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)  # the benchmark's segmenter, to the last digit
    data = fewlabel_splits(args.data_dir, args.axis, args.num_classes, split_unit=args.split_unit)
    items, pool = labelled_and_pool(data.train, args.k, args.seed, args.k_unit)
    chosen = {i["slice_index"] for i in items}
    segmenter, _ = train_segmenter(items, iterations=args.seg_iterations, batch_size=args.batch_size, seed=args.seed,
                                   shuffle_seed=args.seed, num_classes=data.num_classes,
                                   left_right_flip=data.left_right_flip)  # sagittal slices are not flipped
    rows = pseudo_label_quality(segmenter, pool, args.keep, data.num_classes)
    names = list(data.class_names)
    print(f"k = {args.k}, seed {args.seed}: labelled slices {sorted(chosen)}; true pixels per class in them: "
          + ", ".join(f"{n} {sum(int((torch.as_tensor(i['label']) == c + 1).sum()) for i in items)}"
                      for c, n in enumerate(names)))
    print()
    print("\n".join(markdown_table(
        ["pool slice", "confidence", "kept", "pseudo-label Dice"] + [f"{n} px" for n in names],
        [[str(r["slice_index"]), f"{r['confidence']:.3f}", "yes" if r["kept"] else "no", f"{r['dice']:.2f}"]
         + [str(p) for p in r["pixels"]] for r in rows])))
    kept = [r["dice"] for r in rows if r["kept"]]
    dropped = [r["dice"] for r in rows if not r["kept"]]
    print()
    print(f"mean pseudo-label Dice: kept {np.nanmean(kept):.3f} ({len(kept)} slices), dropped "
          f"{np.nanmean(dropped) if dropped else float('nan'):.3f} ({len(dropped)} slices)")
    for c, n in enumerate(names):
        present = [r for r in rows if r["pixels"][c] > 0]
        print(f"pool slices showing {n}: {len(present)}, kept {sum(r['kept'] for r in present)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
