"""Diagnostic (not an arm): per-class intensity of cond_pseudo's GVAE images against the real pool images of the
same label maps (true maps: diagnostic only), paired val split, seed S, k = K, the keep-0.5 GVAE 500 / seg 1200 setting."""
import sys, torch, numpy as np
from monai_gvae.data import labelled_subset  # imports as of the fewlabels package split (2026-12-04); the code is as it ran
from monai_gvae.benchmarks.fewlabels import (FewLabelSettings, fewlabel_splits, gvae_parts, train_gvae,
                                             packer, pseudo_labelled_pool)
from monai_gvae.benchmarks.segmentation import train_segmenter
from monai_gvae.transforms.conditioning import synthesize_for_labels
torch.set_num_threads(1)
seed, k = int(sys.argv[1]), int(sys.argv[2])
gw = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
s = FewLabelSettings(seg_iterations=1200, pseudo_keep=0.5, grad_weight=gw)
data = fewlabel_splits(split_layout="paired")
items = labelled_subset(data.train, k, seed)
chosen = {i["slice_index"] for i in items}
pool = [i for i in data.train if i["slice_index"] not in chosen]
net, _ = train_segmenter(items, iterations=s.seg_iterations, batch_size=s.batch_size, seed=seed, shuffle_seed=seed)
gvae, critic = gvae_parts(s, "conditional", seed)
train_gvae(gvae, critic, items, packer(True, augment=True), s.gvae_iterations, s, seed, segmenter=net)
real = torch.stack([torch.as_tensor(i["image"]).float() for i in pool])
true = torch.stack([torch.as_tensor(i["label"]).long() for i in pool])
pseudo = pseudo_labelled_pool(net, pool, 1.0)
plab = torch.stack([p["label"] for p in pseudo])
g = torch.Generator().manual_seed(0)
rend_true = (synthesize_for_labels(gvae, true, g) + 1) / 2
rend_pseudo = (synthesize_for_labels(gvae, plab, g) + 1) / 2
def stats(img, lab, name):
    brain = img > 0.05
    out = [name]
    for c, cname in ((0, "bg-in-brain(WM/CSF)"), (1, "cortex"), (2, "deep grey"), (3, "cerebellum")):
        m = (lab == c) & (brain if c == 0 else torch.ones_like(brain))
        out.append(f"{cname} {img[m].mean():.3f}±{img[m].std():.3f}" if m.any() else f"{cname} -")
    gx = (img[..., 1:, :] - img[..., :-1, :]).abs()[..., :, :-1]; gy = (img[..., :, 1:] - img[..., :, :-1]).abs()[..., :-1, :]
    out.append(f"grad {((gx + gy) * brain[..., :-1, :-1]).sum() / brain[..., :-1, :-1].sum():.4f}")
    print(" | ".join(out))
stats(real, true, "real pool, true maps ")
stats(rend_true, true, "GVAE, true maps      ")
stats(rend_pseudo, plab, "GVAE, pseudo maps    ")
stats(real, plab, "real pool, pseudo map")
# deep grey contrast per slice where present: mean(deep grey) - mean(brain background within 3 px)
import torch.nn.functional as F
def contrast(img, lab):
    vals = []
    for i in range(len(img)):
        dg = lab[i] == 2
        if dg.sum() < 10: continue
        ring = F.max_pool2d(dg.float()[None], 7, 1, 3)[0].bool() & (lab[i] == 0) & (img[i] > 0.05)
        vals.append(float(img[i][dg].mean() - img[i][ring].mean()))
    return np.mean(vals), len(vals)
print("deep grey minus its 3-px surround (brain background): real %.3f (n=%d)" % contrast(real, true),
      "GVAE true maps %.3f" % contrast(rend_true, true)[0], "GVAE pseudo maps %.3f (n=%d)" % contrast(rend_pseudo, plab))
