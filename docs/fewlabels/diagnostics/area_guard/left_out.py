"""Diagnostic (stop 39; reads the pool's hidden labels, train split only, chooses nothing): the pool slices that
`--area-guard` leaves out of a cell's registered pool, and whether their registered maps were wrong. Per left-out slice:
its level, the registered map's mean foreground Dice against the truth and, per class, the pixels of the truth, of the
registered map and the median of the registered maps within 3 pool levels (what the guard compares with); and the
same Dice averaged over the slices kept.
Usage, from the repository root: python docs/fewlabels/diagnostics/area_guard/left_out.py SEED K [LAYOUT] (LAYOUT:
paired, the validation runs', or alternate, the test protocol's; only the train split is read)."""
import sys

import numpy as np
import torch

from monai_gvae.benchmarks.fewlabels import area_guarded_pool, atlas_labelled_pool, fewlabel_splits
from monai_gvae.data import labelled_subset
from monai_gvae.transforms import class_dice

seed, k = int(sys.argv[1]), int(sys.argv[2])
layout = sys.argv[3] if len(sys.argv) > 3 else "paired"
torch.set_num_threads(1)
data = fewlabel_splits(split_layout=layout)
C = data.num_classes
items = labelled_subset(data.train, k, seed)
chosen = {i["slice_index"] for i in items}
pool = [i for i in data.train if i["slice_index"] not in chosen]
registered = atlas_labelled_pool(items, pool)
kept = {p["slice_index"] for p in area_guarded_pool(registered, pool, C)}
levels = [p["slice_index"] for p in pool]
maps = torch.stack([p["label"] for p in registered]).long()
truth = torch.stack([torch.as_tensor(p["label"]).long() for p in pool])
dice = class_dice(maps, truth, C, min_pixels=1).nanmean(1).numpy()
counts = np.stack([np.bincount(m.flatten().numpy(), minlength=C)[1:] for m in maps])
true_counts = np.stack([np.bincount(t.flatten().numpy(), minlength=C)[1:] for t in truth])
print(f"seed {seed} k {k} layout {layout}: labelled {sorted(chosen)}; pool {len(pool)}; left out "
      f"{[z for z in levels if z not in kept]}")
print("level  Dice  | per class px: truth / registered / neighbours' median")
for i, z in enumerate(levels):
    if z in kept:
        continue
    near = [j for j, other in enumerate(levels) if j != i and abs(other - z) <= 3]
    median = np.median(counts[near], axis=0)
    print(f"{z:5d}  {dice[i]:.3f} | " + "  ".join(f"{t}/{r}/{m:.0f}" for t, r, m in zip(true_counts[i], counts[i], median)))
kept_dice = [d for d, z in zip(dice, levels) if z in kept]
print(f"kept slices: mean Dice {np.nanmean(kept_dice):.3f} ({len(kept_dice)})")
