"""Diagnostic (reads the pool's hidden labels, train split only, so it chooses nothing): per pool slice, the Dice
of three pool labellers against the true label: the k-trained classical segmenter's argmax (what `selftrain` adds),
the registered map (`selftrain_atlas`) and the two fused with atlas_weight W (`selftrain_fused`; default 0.5, fixed
before this ran). Mean over pool slices of the mean over the foreground classes the truth holds, and per class.
The benchmark's own functions and the classical arm's segmenter (same seed, iterations and data as run_cell).
Usage, from the repository root: python docs/fewlabels/diagnostics/fused/fused_pool_labels.py SEED K [W]"""
import sys
import time

import numpy as np
import torch

from monai_gvae.benchmarks.fewlabels import atlas_labelled_pool, fewlabel_splits, fused_labelled_pool
from monai_gvae.benchmarks.fewlabels.pool_labels import _pool_logits  # imports as of the fewlabels package split (2026-12-04); the code is as it ran
from monai_gvae.benchmarks.segmentation import train_segmenter
from monai_gvae.data import labelled_subset
from monai_gvae.transforms import class_dice

seed, k = int(sys.argv[1]), int(sys.argv[2])
weight = float(sys.argv[3]) if len(sys.argv) > 3 else 0.5
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
data = fewlabel_splits(split_layout="paired")
C = data.num_classes
items = labelled_subset(data.train, k, seed)
chosen = {i["slice_index"] for i in items}
pool = [i for i in data.train if i["slice_index"] not in chosen]
started = time.time()
net, _ = train_segmenter(items, iterations=1200, batch_size=16, seed=seed, shuffle_seed=seed, num_classes=C)
registered = atlas_labelled_pool(items, pool)
fused = fused_labelled_pool(net, registered, atlas_weight=weight, num_classes=C)
_, logits = _pool_logits(net, pool)
truth = torch.stack([torch.as_tensor(p["label"]).long() for p in pool])
maps = {"segmenter": logits.argmax(1, keepdim=True), "atlas": torch.stack([p["label"] for p in registered]),
        "fused": torch.stack([p["label"] for p in fused])}
print(f"seed {seed} k {k} weight {weight} pool {len(pool)} labelled {sorted(chosen)} time {time.time() - started:.0f}s")
for name, labels in maps.items():
    dice = class_dice(labels, truth, C, min_pixels=1).numpy()
    per_slice = np.nanmean(dice, axis=1)
    per_class = " / ".join(f"{v:.2f}" for v in np.nanmean(dice, axis=0))
    print(f"{name:10s} mean slice Dice {np.nanmean(per_slice):.3f}  worst slice {np.nanmin(per_slice):.3f}  "
          f"per class {per_class}")
agreement = np.array([p["fit"] for p in fused])
print(f"agreement (the fused arms' keep ranking): mean {agreement.mean():.3f}, min {agreement.min():.3f}")
