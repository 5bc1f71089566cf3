"""Diagnostic (not an arm): are GVAE renders of pool pseudo-label maps sharper and still exact when the latent is the
pool image's posterior code instead of a prior draw?  Paired val split, keep-0.5 GVAE 500 / seg 1200 setting.
Oracle segmenter (all train slices, TRUE labels; diagnostic only) scores how well each image carries its map."""
import sys, time, torch, numpy as np
from monai_gvae.data import labelled_subset  # imports as of the fewlabels package split (2026-12-04); the code is as it ran
from monai_gvae.benchmarks.fewlabels import (FewLabelSettings, fewlabel_splits, gvae_parts, train_gvae,
                                             packer, pseudo_labelled_pool, deformed_pairs)
from monai_gvae.benchmarks.segmentation import train_segmenter, dice_scores
from monai_gvae.transforms.conditioning import synthesize_for_labels, encode_pairs
torch.set_num_threads(1)
seed, k = int(sys.argv[1]), int(sys.argv[2])
gens = int(sys.argv[3]) if len(sys.argv) > 3 else 500
klw = float(sys.argv[4]) if len(sys.argv) > 4 else 2e-2
import json, os
extra = json.loads(os.environ.get("DIAG_SETTINGS", "{}"))  # e.g. {"condition_mode": "spade", "critic_head": "patch"}
s = FewLabelSettings(seg_iterations=1200, pseudo_keep=0.5, gvae_iterations=gens, kl_weight=klw, **extra)
tag = "".join(f"_{k}{v}" for k, v in extra.items())
data = fewlabel_splits(split_layout="paired")
items = labelled_subset(data.train, k, seed)
chosen = {i["slice_index"] for i in items}
pool = [i for i in data.train if i["slice_index"] not in chosen]
t = time.time()
# models and PNGs go to $DIAG_CACHE (default runs/diagnostics under the current folder;
# the recorded runs used /work/runs/r30)
cache = os.environ.get("DIAG_CACHE", os.path.join("runs", "diagnostics"))
os.makedirs(cache, exist_ok=True)
oracle_path = os.path.join(cache, "oracle.pt")
if os.path.exists(oracle_path):
    oracle = torch.load(oracle_path, weights_only=False)
else:
    oracle, _ = train_segmenter(list(data.train), iterations=1200, batch_size=s.batch_size, seed=7, shuffle_seed=7)
    torch.save(oracle, oracle_path)
net, _ = train_segmenter(items, iterations=s.seg_iterations, batch_size=s.batch_size, seed=seed, shuffle_seed=seed)
gvae, critic = gvae_parts(s, "conditional", seed)
train_gvae(gvae, critic, items, packer(True, augment=True), s.gvae_iterations, s, seed, segmenter=net)
gvae.eval()
print(f"trained in {time.time()-t:.0f} s", flush=True)
pseudo = pseudo_labelled_pool(net, pool, 0.5)
warped = deformed_pairs(pseudo, 64, seed * 1000)  # pool image and its pseudo map warped together
img = torch.stack([w["image"] for w in warped]); lab = torch.stack([w["label"] for w in warped])
g = torch.Generator().manual_seed(0)
prior = (synthesize_for_labels(gvae, lab, g) + 1) / 2
mu, logvar = encode_pairs(gvae, img * 2 - 1, lab)
post_mu = (synthesize_for_labels(gvae, lab, latents=mu) + 1) / 2
eps = torch.randn(mu.shape, generator=g)
post_s = (synthesize_for_labels(gvae, lab, latents=mu + (0.5 * logvar).exp() * eps) + 1) / 2
def grad(x):
    brain = x > 0.05
    gx = (x[..., 1:, :] - x[..., :-1, :]).abs()[..., :, :-1]; gy = (x[..., :, 1:] - x[..., :, :-1]).abs()[..., :-1, :]
    b = brain[..., :-1, :-1]
    return float(((gx + gy) * b).sum() / b.sum())
def exact(x, y):  # oracle Dice of image x against the map it is paired with
    return dice_scores(oracle, [{"image": a, "label": b} for a, b in zip(x, y)], s.num_classes)["dice"]
print("posterior sigma mean %.3f, |mu| mean %.3f" % ((0.5 * logvar).exp().mean(), mu.abs().mean()))
for name, x in (("real pool + pseudo map", img), ("prior render", prior), ("posterior mean render", post_mu),
                ("posterior sample render", post_s)):
    pass
print("oracle on real val slabs with true maps:", dice_scores(oracle, data.val, s.num_classes)["dice"])
for name, x in (("real pool + pseudo map", img), ("prior render", prior), ("posterior mean render", post_mu), ("posterior sample render", post_s)):
    print(f"{name:26s} grad {grad(x):.4f}  oracle Dice vs paired map {exact(x, lab):.4f}  L1 to real {float((x-img).abs().mean()):.4f}")
from monai_gvae.benchmarks.fewlabels import save_pairs
save_pairs([{"image": a, "label": b} for a, b in zip(post_mu[:16], lab[:16])], os.path.join(cache, f"post_s{seed}_k{k}_kl{klw}{tag}_g{gens}.png"), True)
save_pairs([{"image": a, "label": b} for a, b in zip(prior[:16], lab[:16])], os.path.join(cache, f"prior_s{seed}_k{k}_kl{klw}{tag}_g{gens}.png"), True)
