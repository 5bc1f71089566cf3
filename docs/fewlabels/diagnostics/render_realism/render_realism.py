"""Diagnostic (stop 44; reads the val split's labels and the train split's labels, so it chooses nothing): does the
conditional GVAE's realism keep rising with its training budget, or has it settled far below real images?

Why: every GVAE arm of the few-label benchmark lost to the pool's own images for the same label maps (renders of the
registered maps -5.7 points against those maps on the real images), and the renders look blurred. Whether a longer
budget (a GPU's) would close that gap is what decides between more compute and another objective. One training of
the benchmark's conditional GVAE (k labelled slices, segmentation consistency 0.5 with the classical segmenter of
1200 iterations, paired split layout), scored at checkpoints of one run (train_gvae's on_checkpoint: random states
restored, so the 500-iteration checkpoint is the benchmark's 500-iteration GVAE).

Three measures (the benchmark's Dice, dice_scores: classes absent from a label map are not scored):
  train on renders   (what the benchmark's GVAE arms rest on; "GAN-train", Shmelkov et al. 2018) a UNet trained
                     only on renders of the 46 train slices' true label maps (1200 iterations, classical
                     augmentation), scored on the real val slices; against the same UNet trained on the real
                     train pairs (the reference): how much of a real image's teaching a render of its map carries.
  judge              ("GAN-test") the reference UNet segments renders of the 18 val maps (held out from the GVAE
                     and the UNet); Dice against the maps they were rendered for, beside its Dice on the real
                     val images: whether the renders carry their maps' boundaries recognisably.
  sharpness          mean gradient magnitude inside the head (label > 0) of the val renders / of the real val
                     images of the same maps (1 = as sharp as real).
Generator variants (argument VARIANT): "default" (the benchmark's conditional GVAE), "sharper" (SPADE conditioning,
patch critic, adversarial weight 0.01: the sharpest renders of section 6), "cotrained" (trained on the k pairs and the
pool's pseudo-labelled pairs, cond_pseudo_cotrained's generator).
Usage, from the repository root: python render_realism.py SEED K ITERATIONS [CHECKPOINTS, comma-separated]
[SEGMENTER_ITERATIONS, 1200; fewer only for a smoke run] [VARIANT, default]
"""
import sys
import time

import torch

from monai_gvae.benchmarks.fewlabels import FewLabelSettings, cotraining_pairs, fewlabel_splits, pseudo_labelled_pool
from monai_gvae.benchmarks.fewlabels.synthesis import gvae_parts, packer, train_gvae
from monai_gvae.benchmarks.segmentation import dice_scores, train_segmenter
from monai_gvae.data import labelled_subset
from monai_gvae.transforms.conditioning import synthesize_for_labels

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
seed, k, iterations = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
checkpoints = [int(c) for c in sys.argv[4].split(",")] if len(sys.argv) > 4 else [iterations]
seg_iterations = int(sys.argv[5]) if len(sys.argv) > 5 else 1200
variant = sys.argv[6] if len(sys.argv) > 6 else "default"
sharper = {"condition_mode": "spade", "critic_head": "patch", "adv_weight": 0.01} if variant == "sharper" else {}
settings = FewLabelSettings(seg_iterations=seg_iterations, gvae_iterations=iterations, **sharper)
data = fewlabel_splits(split_layout="paired")
C = data.num_classes
items = labelled_subset(data.train, k, seed)
start = time.time()
segmenter, _ = train_segmenter(items, iterations=seg_iterations, batch_size=settings.batch_size, seed=seed,
                               shuffle_seed=seed, num_classes=C)
judge, _ = train_segmenter(data.train, iterations=seg_iterations, batch_size=settings.batch_size, seed=seed,
                           shuffle_seed=seed, num_classes=C)
judge.eval()
val_images = torch.stack([torch.as_tensor(i["image"]).float() for i in data.val])
val_maps = torch.stack([torch.as_tensor(i["label"]).long() for i in data.val])
head = val_maps > 0


train_maps = torch.stack([torch.as_tensor(i["label"]).long() for i in data.train])


def scored(net, images=None):
    pairs = data.val if images is None else [{"image": x, "label": m} for x, m in zip(images, val_maps)]
    with torch.no_grad():
        scores = dice_scores(net, pairs, C, data.class_names)
    return scores["dice"], [round(v, 3) for key, v in scores.items() if key != "dice"]


def judged(images):
    return scored(judge, images)


def sharpness(images):
    rows = (images[..., 1:, :] - images[..., :-1, :]).abs()[..., :, :-1]
    cols = (images[..., :, 1:] - images[..., :, :-1]).abs()[..., :-1, :]
    magnitude = (rows ** 2 + cols ** 2).sqrt()
    inside = head[..., :-1, :-1]
    return float(magnitude[inside].mean())


real_dice, real_classes = judged(val_images)
real_sharpness = sharpness(val_images)
print(f"seed {seed} k {k} {variant}: trained on the real train pairs, on the real val images: Dice {real_dice:.3f} "
      f"{real_classes}; sharpness {real_sharpness:.4f} ({time.time() - start:.0f} s)", flush=True)
gvae, critic = gvae_parts(settings, "conditional", seed)


def score(iteration):
    generator = torch.Generator().manual_seed(seed)
    renders = ((synthesize_for_labels(gvae, val_maps, generator) + 1) / 2).clamp(0, 1)
    dice, classes = judged(renders)
    ratio = sharpness(renders) / real_sharpness
    train_renders = ((synthesize_for_labels(gvae, train_maps, generator) + 1) / 2).clamp(0, 1)
    on_renders, _ = train_segmenter([{"image": x, "label": m} for x, m in zip(train_renders, train_maps)],
                                    iterations=seg_iterations, batch_size=settings.batch_size, seed=seed,
                                    shuffle_seed=seed, num_classes=C)
    trained, trained_classes = scored(on_renders)
    print(f"iteration {iteration:5d}: trained on renders, on real val {trained:.3f} {trained_classes} (on real "
          f"pairs {real_dice:.3f}); judge on val renders {dice:.3f} {classes}; sharpness ratio {ratio:.3f} "
          f"({time.time() - start:.0f} s)", flush=True)


gvae_items = items
if variant == "cotrained":
    chosen = {i["slice_index"] for i in items}
    pool = [{"image": i["image"], "slice_index": i["slice_index"]} for i in data.train
            if i["slice_index"] not in chosen]
    gvae_items = cotraining_pairs(items, pseudo_labelled_pool(segmenter, pool))
train_gvae(gvae, critic, gvae_items, packer(True, augment=True, num_classes=C), iterations, settings, seed,
           segmenter=segmenter, checkpoints=checkpoints, on_checkpoint=score)
