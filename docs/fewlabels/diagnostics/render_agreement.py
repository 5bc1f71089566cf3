"""Verbatim record (not a tool) of the diagnostic behind cond_pseudo_checked's thresholds (docs/fewlabels.md section 4).

Part 1 ran as `python agreement_stats.py 100 5` and `python agreement_stats.py 101 10` (train split only: the k slices,
the pool's images and the classical segmenter's pseudo-labels; no val or test label is read); part 2 as
`python analyse.py agree_100_5.pt agree_101_10.pt`, whose output is render_agreement.txt.
"""

# ---- part 1: agreement_stats.py
"""Diagnostic (train split only): per-class agreement between the classical segmenter and cond_pseudo's renders
of the pool's pseudo-label maps, to set the per-class agreement threshold before any validation run is scored."""
import sys, json, torch
from monai_gvae.benchmarks import fewlabels as F
from monai_gvae.benchmarks.fewlabels.synthesis import _stack, _train_conditional  # imports as of the fewlabels package split (2026-12-04); the code is as it ran
from monai_gvae.transforms import synthesize_for_labels
from monai_gvae.benchmarks.segmentation import train_segmenter
from monai_gvae.data.subsets import labelled_subset
seed, k = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(1)
s = F.FewLabelSettings(gvae_iterations=500, seg_iterations=1200)
data = F.fewlabel_splits(split_layout="paired")
items = labelled_subset(data.train, k, seed)
chosen = {i["slice_index"] for i in items}
pool = [i for i in data.train if i["slice_index"] not in chosen]
seg, _ = train_segmenter(items, iterations=s.seg_iterations, batch_size=s.batch_size, seed=seed, synthetic=None,
                         synthetic_fraction=s.synthetic_fraction, shuffle_seed=seed, num_classes=s.num_classes)
pseudo = F.pseudo_labelled_pool(seg, pool, 1.0)
gvae, critic, secs = _train_conditional(items, "k", None, s, seed, seg)
maps = F.label_maps_for("cond_pseudo", pseudo, s.num_classes)(items, 256, seed * 1000)
labels = _stack(maps, "label")
images = synthesize_for_labels(gvae, labels, torch.Generator().manual_seed(seed))
real = _stack(maps, "image").float() * 2 - 1
seg.eval()
with torch.no_grad():
    torch.save({"labels": labels, "render_pred": seg((images + 1) / 2).argmax(1, keepdim=True),
                "real_pred": seg((real + 1) / 2).argmax(1, keepdim=True), "renders": images},
               f"agree_{seed}_{k}.pt")
out = {}
with torch.no_grad():
    for name, x in (("render", images), ("deformed_real", real)):
        pred = seg((x + 1) / 2).argmax(1, keepdim=True)
        rows = []
        for c in range(1, s.num_classes):
            p, t = (pred == c).flatten(1), (labels == c).flatten(1)
            den = (p.sum(1) + t.sum(1)).float()
            d = torch.where(den > 0, 2 * (p & t).sum(1) / den.clamp(min=1), torch.full_like(den, float("nan")))
            rows.append(d)
        d = torch.stack(rows, 1)
        worst = torch.nan_to_num(d, nan=1.0).amin(1)
        out[name] = {"class_median": [float(v) for v in d.nanmedian(0).values],
                     "class_q10": [float(torch.nanquantile(d[:, c], 0.1)) for c in range(d.shape[1])],
                     **{f"keep_min>={t}": float((worst >= t).float().mean()) for t in (0.3, 0.4, 0.5, 0.6, 0.7)}}
print(json.dumps({"seed": seed, "k": k, "gvae_seconds": secs, **out}, indent=1))

# ---- part 2: analyse.py
import torch, sys
from monai_gvae.transforms import class_dice
for name in sys.argv[1:]:
    d = {k: torch.as_tensor(v).as_subclass(torch.Tensor) for k, v in torch.load(name, weights_only=False).items()}
    lab = d["labels"]
    print(name, "label pixels per class: median", [int((lab == c).flatten(1).sum(1).float().median()) for c in (1, 2, 3)])
    for kind in ("render_pred", "real_pred"):
        for m in (0, 16, 32, 64, 128):
            dice = class_dice(d[kind], lab, 4, min_pixels=m)
            worst = torch.where(dice.isnan(), torch.ones_like(dice), dice).amin(1)
            acc = {t: round(float((worst >= t).float().mean()), 2) for t in (0.3, 0.5, 0.7)}
            print(f"  {kind:11s} min_pixels {m:3d} keep {acc}")
    dice = class_dice(d["real_pred"], lab, 4)
    fail = dice < 0.3
    for c in range(3):
        px = (lab == c + 1).flatten(1).sum(1)[fail[:, c]]
        print(f"  real fails class {c+1}: {int(fail[:, c].sum())} pairs, label pixels {sorted(px.tolist())[:40]}")
