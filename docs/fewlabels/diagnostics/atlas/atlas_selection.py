"""Diagnostic (as run 2026-12-03; reads the pool's hidden labels): which atlas to keep per pool slice, the one whose
demons-registered image correlates best (the package's choice), the best after the affine stage only, the one
nearest in slice index, or the best in hindsight (oracle). Usage: python atlas_selection.py SEED K.
Output: atlas_selection_output.txt (mean pool-slice Dice)."""
import sys, numpy as np, torch, SimpleITK as sitk
from monai_gvae.benchmarks.fewlabels import fewlabel_splits
from monai_gvae.transforms import class_dice, register_label_map
from monai_gvae.transforms.label_propagation import _correlation
from monai_gvae.data import labelled_subset
seed, k = int(sys.argv[1]), int(sys.argv[2])
d = fewlabel_splits(split_layout="paired")
items = labelled_subset(d.train, k, seed); ch = {i["slice_index"] for i in items}
pool = [i for i in d.train if i["slice_index"] not in ch]
res = {"demons_fit": [], "affine_fit": [], "oracle_best": [], "nearest_index": []}
def dice(l, p): return float(np.nanmean(class_dice(l[None], torch.as_tensor(p["label"])[None], 4, min_pixels=1)[0].numpy()))
for p in pool:
    x = torch.as_tensor(p["image"]).float()
    outs = []
    for a in items:
        l, w = register_label_map(x, a["image"], a["label"])
        la, wa = register_label_map(x, a["image"], a["label"], demons_iterations=0)
        outs.append((_correlation(w, x), _correlation(wa, x), dice(l, p), abs(a["slice_index"] - p["slice_index"])))
    res["demons_fit"].append(max(outs, key=lambda o: o[0])[2])
    res["affine_fit"].append(max(outs, key=lambda o: o[1])[2])
    res["oracle_best"].append(max(o[2] for o in outs))
    res["nearest_index"].append(min(outs, key=lambda o: o[3])[2])
print(seed, k, {m: round(float(np.nanmean(v)), 3) for m, v in res.items()})
