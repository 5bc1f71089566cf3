"""Diagnostic (reads the pool's hidden labels, train split only; the test slabs are not read): what the registered
pool labels of the test protocol's cell seed 5, k = 10 (alternate layout, the cell where `selftrain_atlas` lost 11.4
points, cerebellum 30.9, on the test slabs) look like against the pool's true labels, slice by slice, beside the
k-trained segmenter's labels. Per pool slice: its level, the fit of its registration (the correlation `--pseudo-keep`
ranks by), each labeller's mean foreground Dice and cerebellum Dice, and the cerebellum pixels each labeller and the
truth give.
Usage, from the repository root: python docs/fewlabels/diagnostics/atlas_test5/atlas_failure.py [SEED] [K] [LAYOUT]"""
import sys

import numpy as np
import torch

from monai_gvae.benchmarks.fewlabels import atlas_labelled_pool, fewlabel_splits
from monai_gvae.benchmarks.fewlabels.pool_labels import _pool_logits  # imports as of the fewlabels package split (2026-12-04); the code is as it ran
from monai_gvae.benchmarks.segmentation import train_segmenter
from monai_gvae.data import labelled_subset
from monai_gvae.transforms import class_dice

seed = int(sys.argv[1]) if len(sys.argv) > 1 else 5
k = int(sys.argv[2]) if len(sys.argv) > 2 else 10
layout = sys.argv[3] if len(sys.argv) > 3 else "alternate"
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
data = fewlabel_splits(split_layout=layout)
C = data.num_classes
items = labelled_subset(data.train, k, seed)
chosen = {i["slice_index"] for i in items}
pool = [i for i in data.train if i["slice_index"] not in chosen]
net, _ = train_segmenter(items, iterations=1200, batch_size=16, seed=seed, shuffle_seed=seed, num_classes=C)
registered = atlas_labelled_pool(items, pool)
_, logits = _pool_logits(net, pool)
truth = torch.stack([torch.as_tensor(p["label"]).long() for p in pool])
seg = logits.argmax(1, keepdim=True)
atl = torch.stack([p["label"] for p in registered]).long()
print(f"seed {seed} k {k} layout {layout}: labelled levels {sorted(chosen)}; pool {len(pool)}; "
      f"val levels {sorted(i['slice_index'] for i in data.val)}")
dice_seg = class_dice(seg, truth, C, min_pixels=1).numpy()
dice_atl = class_dice(atl, truth, C, min_pixels=1).numpy()
cb = C - 1  # cerebellum is the last class
print("level  fit    seg-Dice atlas-Dice | cerebellum Dice seg/atlas | cerebellum px truth/seg/atlas")
for i, p in enumerate(pool):
    print(f"{p['slice_index']:5d} {registered[i]['fit']:.3f}  {np.nanmean(dice_seg[i]):.3f}    "
          f"{np.nanmean(dice_atl[i]):.3f}     | {dice_seg[i, cb - 1]:.3f} / {dice_atl[i, cb - 1]:.3f}            | "
          f"{int((truth[i] == cb).sum())} / {int((seg[i] == cb).sum())} / {int((atl[i] == cb).sum())}")
print(f"mean: segmenter {np.nanmean(dice_seg):.3f}, registration {np.nanmean(dice_atl):.3f}; cerebellum "
      f"{np.nanmean(dice_seg[:, cb - 1]):.3f} / {np.nanmean(dice_atl[:, cb - 1]):.3f}")
