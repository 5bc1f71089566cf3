"""(docs/fewlabels.md, section 6, "Reading the pool through the generator"; run from the repository root as
`python docs/fewlabels/paired_validation/inversion/inversion_diag.py SEED K`; it caches its models in $DIAG_CACHE,
default runs/diagnostics; the recorded run used /work/runs/r31.)
Diagnostic: refine the k-segmenter's pool pseudo-labels by inverting the conditional GVAE
(soft label map L minimising |G(z, L) - x|_1 + beta * CE(L, p_seg)). Reads hidden pool labels (diagnostic only)."""
import sys, time, json, os, torch, numpy as np
from monai_gvae.data import labelled_subset  # imports as of the fewlabels package split (2026-12-04); the code is as it ran
from monai_gvae.benchmarks.fewlabels import (FewLabelSettings, fewlabel_splits, gvae_parts, train_gvae,
                                             packer)
from monai_gvae.benchmarks.segmentation import train_segmenter, dice_scores
torch.set_num_threads(1)
seed, k = int(sys.argv[1]), int(sys.argv[2])
gens = int(sys.argv[3]) if len(sys.argv) > 3 else 500
s = FewLabelSettings(seg_iterations=1200, pseudo_keep=0.5, gvae_iterations=gens)
data = fewlabel_splits(split_layout="paired")
items = labelled_subset(data.train, k, seed)
chosen = {i["slice_index"] for i in items}
pool = [i for i in data.train if i["slice_index"] not in chosen]
t = time.time()
cache = os.environ.get("DIAG_CACHE", os.path.join("runs", "diagnostics"))
os.makedirs(cache, exist_ok=True)
ck = os.path.join(cache, f"models_s{seed}_k{k}_g{gens}.pt")
if os.path.exists(ck):
    net, gvae = torch.load(ck, weights_only=False)
else:
    net, _ = train_segmenter(items, iterations=s.seg_iterations, batch_size=s.batch_size, seed=seed, shuffle_seed=seed)
    gvae, critic = gvae_parts(s, "conditional", seed)
    train_gvae(gvae, critic, items, packer(True, augment=True), s.gvae_iterations, s, seed, segmenter=net)
    torch.save((net, gvae), ck)
gvae.eval(); net.eval()
for p in gvae.parameters(): p.requires_grad_(False)
print(f"models in {time.time()-t:.0f} s", flush=True)
x = torch.stack([torch.as_tensor(i["image"]) for i in pool]).float()          # [0, 1]
truth = torch.stack([torch.as_tensor(i["label"]) for i in pool]).long()
with torch.no_grad():
    logits0 = net(x)
C = s.num_classes
def score(logits, name):
    d = dice_scores(lambda _: logits, [{"image": a, "label": b} for a, b in zip(x, truth)], C)
    print(f"{name:40s} " + "  ".join(f"{kk} {v:.4f}" for kk, v in d.items()), flush=True)
    return d
score(logits0, "segmenter pseudo-labels (all pool)")
xs = x * 2 - 1
for zmode in ("zero",):
  for beta in (0.0, 0.1, 1.0):
    for temp in (1.0,):
        L = logits0.clone().log_softmax(1).detach().requires_grad_(True)
        z = torch.zeros(len(x), gvae.latent_size)
        opt = torch.optim.Adam([L], lr=0.05)
        p0 = logits0.softmax(1)
        for it in range(300):
            q = (L / temp).softmax(1)
            render = gvae.decode(z, q * 2 - 1)
            rec = (render - xs).abs().mean()
            ce = -(p0 * (L / temp).log_softmax(1)).sum(1).mean()
            loss = rec + beta * ce
            opt.zero_grad(); loss.backward(); opt.step()
        with torch.no_grad():
            r0 = (gvae.decode(z, torch.nn.functional.one_hot(logits0.argmax(1), C).movedim(-1, 1).float() * 2 - 1) - xs).abs().mean()
        print(f"beta {beta} temp {temp}: L1 render(pseudo) {float(r0):.4f} -> render(refined) {float(rec):.4f}")
        score(L.detach(), f"refined beta {beta} z {zmode}")
print(f"done in {time.time()-t:.0f} s")
