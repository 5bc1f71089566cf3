"""Diagnostic (stop 39; train split only; reads the pool's hidden labels, so it chooses nothing alone): do GVAE renders
of label maps interpolated between two of the k labelled slices, used as extra atlases, label the pool better by
registration than the k slices alone?

Why: registration labels the pool better than the k-trained segmenter where the k slices leave levels uncovered, but
copies the wrong structures across large level gaps; a conditional GVAE renders exact pairs for any label map, so its
renders of intermediate maps could serve as atlases at the missing levels, while the segmenter still trains on the
pool's own (real) images. The blend rows are the same maps with the pixel blend of the two images (no GVAE).

Atlas sets, each a best-correlated atlas per pool slice (monai_gvae.transforms.propagate_label_map's rule):
  real        the k pairs (what selftrain_atlas uses)
  gvae_level  + GVAE renders of maps interpolated at w = 1/3, 2/3 between level-adjacent k slices (slice order known)
  blend_level + the same maps with the blended images
  gvae_dice   + GVAE renders between each k slice and its most similar other one (label Dice; no order needed)
  blend_dice  + the same maps with the blended images
Printed per set: mean over pool slices of the mean foreground Dice against the hidden truth, per class means, and the
share of pool slices whose chosen atlas is synthetic. The GVAE is the benchmark's conditional GVAE (500 iterations,
segmentation consistency 0.5 with the classical segmenter of 1200 iterations); paired split layout.
Usage, from the repository root: python synthetic_atlases.py SEED K [PNG]
"""
import sys
import time

import numpy as np
import torch

from monai_gvae.benchmarks.fewlabels import FewLabelSettings, fewlabel_splits, save_pairs
from monai_gvae.benchmarks.fewlabels.synthesis import _train_conditional  # imports as of the fewlabels package split (2026-12-04); the code is as it ran
from monai_gvae.benchmarks.segmentation import train_segmenter
from monai_gvae.data import labelled_subset
from monai_gvae.transforms import class_dice, interpolate_label_maps, nearest_label_maps, register_label_map
from monai_gvae.transforms.conditioning import synthesize_for_labels
from monai_gvae.transforms.label_propagation import _correlation

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
seed, k = int(sys.argv[1]), int(sys.argv[2])
png = sys.argv[3] if len(sys.argv) > 3 else None
settings = FewLabelSettings(seg_iterations=1200, gvae_iterations=500)
data = fewlabel_splits(split_layout="paired")
C = data.num_classes
items = labelled_subset(data.train, k, seed)
chosen = {i["slice_index"] for i in items}
pool = [i for i in data.train if i["slice_index"] not in chosen]
t = time.time()
net, _ = train_segmenter(items, iterations=settings.seg_iterations, batch_size=settings.batch_size, seed=seed,
                         shuffle_seed=seed, num_classes=C)
gvae, critic, gvae_seconds = _train_conditional(items, "k", None, settings, seed, net)
labels = torch.stack([torch.as_tensor(i["label"]).long() for i in items])
images = torch.stack([torch.as_tensor(i["image"]).float() for i in items])
order = sorted(range(k), key=lambda i: items[i]["slice_index"])
level_pairs = list(zip(order[:-1], order[1:]))
nearest = nearest_label_maps(labels, C, neighbours=1)[:, 0].tolist()
dice_pairs = sorted({tuple(sorted((i, j))) for i, j in enumerate(nearest)})
generator = torch.Generator().manual_seed(seed)


def synthetic(pairs):
    maps = [interpolate_label_maps(labels[i], labels[j], w, C) for i, j in pairs for w in (1 / 3, 2 / 3)]
    blends = [(1 - w) * images[i] + w * images[j] for i, j in pairs for w in (1 / 3, 2 / 3)]
    stacked = torch.stack(maps)
    renders = (synthesize_for_labels(gvae, stacked, generator) + 1) / 2
    return ([{"image": r, "label": m} for r, m in zip(renders, maps)],
            [{"image": b, "label": m} for b, m in zip(blends, maps)])


gvae_level, blend_level = synthetic(level_pairs)
gvae_dice, blend_dice = synthetic(dice_pairs)
if png:
    save_pairs(gvae_level + blend_level, png, overwrite=False, num_classes=C)
real = [{"image": images[i], "label": labels[i]} for i in range(k)]
atlases = {"real": real, "gvae_level": gvae_level, "blend_level": blend_level, "gvae_dice": gvae_dice,
           "blend_dice": blend_dice}
sets = {"real": ["real"], "gvae_level": ["real", "gvae_level"], "blend_level": ["real", "blend_level"],
        "gvae_dice": ["real", "gvae_dice"], "blend_dice": ["real", "blend_dice"]}
scores = {name: [] for name in sets}
synthetic_chosen = {name: 0 for name in sets}
for p in pool:
    target = torch.as_tensor(p["image"]).float()
    truth = torch.as_tensor(p["label"]).long()
    fits = {}
    for kind, group in atlases.items():
        fits[kind] = []
        for a in group:
            label, warped = register_label_map(target, a["image"], a["label"])
            fits[kind].append((_correlation(warped, target), label))
    for name, kinds in sets.items():
        fit, label, kind = max(((f, lab, kd) for kd in kinds for f, lab in fits[kd]), key=lambda o: o[0])
        synthetic_chosen[name] += kind != "real"
        scores[name].append(class_dice(label[None], truth[None], C, min_pixels=1)[0])
print(f"seed {seed} k {k} labelled {sorted(chosen)} pool {len(pool)} level pairs {len(level_pairs)} dice pairs "
      f"{len(dice_pairs)} gvae {gvae_seconds:.0f}s total {time.time() - t:.0f}s")
for name, rows in scores.items():
    a = torch.stack(rows).numpy()
    print(f"{name:12s} mean slice Dice {np.nanmean(np.nanmean(a, 1)):.3f}  per class "
          + " / ".join(f"{np.nanmean(a[:, c]):.2f}" for c in range(C - 1))
          + f"  synthetic atlas chosen for {synthetic_chosen[name]}/{len(pool)}")
