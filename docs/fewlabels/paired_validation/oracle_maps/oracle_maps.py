"""Diagnostic (not an arm; reads the pool's hidden labels, chooses nothing): the benchmark's ``selftrain`` and
``cond_pseudo`` arms with the pool's TRUE labels in place of the pseudo-labels (the same confident slices, kept by the
classical segmenter's confidence), everything else the benchmark's own code and protocol. What would each pool use give
with perfect labels: real images (``selftrain`` -> oracle real) against the GVAE's renders of the same maps
(``cond_pseudo`` -> oracle renders)? docs/fewlabels.md section 6, "With the true labels".

Run from the repository root, as the benchmark:
    python docs/fewlabels/paired_validation/oracle_maps/oracle_maps.py --seeds S --ks 5,10 \
        --arms classical,selftrain,cond_pseudo --eval-split val --split-layout paired --gvae-iterations 500 \
        --seg-iterations 1200 --pseudo-keep 0.5 --output-dir runs/VO/sS
(results.json names the arms selftrain / cond_pseudo: read them as their oracle versions).
"""
import importlib.util
import sys
from pathlib import Path

import torch

import monai_gvae.benchmarks.fewlabels.cell as fewlabels  # run_cell's module, where it looks pseudo_labelled_pool up

_pseudo_labelled_pool = fewlabels.pseudo_labelled_pool


def true_labelled_pool(segmenter, pool, keep=1.0):
    """The slices pseudo_labelled_pool keeps, with their true labels."""
    truth = {item["slice_index"]: torch.as_tensor(item["label"]).long() for item in pool}
    kept = _pseudo_labelled_pool(segmenter, pool, keep)
    return [{**pair, "label": truth[pair["slice_index"]], "oracle_label": True} for pair in kept]


fewlabels.pseudo_labelled_pool = true_labelled_pool
path = Path(__file__).resolve().parents[4] / "examples" / "fewlabels_benchmark.py"
spec = importlib.util.spec_from_file_location("fewlabels_benchmark", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.main(sys.argv[1:])
