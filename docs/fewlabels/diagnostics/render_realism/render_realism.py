"""Diagnostic (stop 44; reads the val split's labels and the train split's labels, so it chooses nothing): does the
conditional GVAE's realism keep rising with its training budget, or has it settled far below real images?

Why: every GVAE arm of the few-label benchmark lost to the pool's own images for the same label maps (renders of the
registered maps -5.7 points against those maps on the real images), and the renders look blurred. Whether a longer
budget (a GPU's) would close that gap is what decides between more compute and another objective. One training of
the benchmark's conditional GVAE (k labelled slices, segmentation consistency 0.5 with the classical segmenter of
1200 iterations, paired split layout), scored at checkpoints of one run (train_gvae's on_checkpoint: random states
restored, so the 500-iteration checkpoint is the benchmark's 500-iteration GVAE).

Realism is judged two ways on the 18 val slices' label maps (held out from the GVAE and the judge):
  judge Dice   a UNet trained on the whole train split with its true labels (1200 iterations, classical
               augmentation) segments the renders of the val maps; its mean foreground Dice against the maps they
               were rendered for, beside its Dice on the real val images (how well it segments real anatomy).
               A render that looks like real anatomy of its map is segmented as well as a real image.
  sharpness    mean gradient magnitude inside the head (label > 0) of the renders / of the real val images of the
               same maps (1 = as sharp as real; the blur the samples show is below 1).
Usage, from the repository root: python render_realism.py SEED K ITERATIONS [CHECKPOINTS, comma-separated]
[SEGMENTER_ITERATIONS, 1200; fewer only for a smoke run]
"""
import sys
import time

import torch

from monai_gvae.benchmarks.fewlabels import FewLabelSettings, fewlabel_splits
from monai_gvae.benchmarks.fewlabels.synthesis import gvae_parts, packer, train_gvae
from monai_gvae.benchmarks.segmentation import train_segmenter
from monai_gvae.data import labelled_subset
from monai_gvae.transforms import class_dice
from monai_gvae.transforms.conditioning import synthesize_for_labels

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
seed, k, iterations = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
checkpoints = [int(c) for c in sys.argv[4].split(",")] if len(sys.argv) > 4 else [iterations]
seg_iterations = int(sys.argv[5]) if len(sys.argv) > 5 else 1200
settings = FewLabelSettings(seg_iterations=seg_iterations, gvae_iterations=iterations)
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


def judged(images):
    with torch.no_grad():
        predicted = judge(images).argmax(1, keepdim=True)
    per_class = class_dice(predicted, val_maps, C).nanmean(0)
    return float(per_class.nanmean()), [round(float(d), 3) for d in per_class]


def sharpness(images):
    rows = (images[..., 1:, :] - images[..., :-1, :]).abs()[..., :, :-1]
    cols = (images[..., :, 1:] - images[..., :, :-1]).abs()[..., :-1, :]
    magnitude = (rows ** 2 + cols ** 2).sqrt()
    inside = head[..., :-1, :-1]
    return float(magnitude[inside].mean())


real_dice, real_classes = judged(val_images)
real_sharpness = sharpness(val_images)
print(f"seed {seed} k {k}: judge on the real val images: Dice {real_dice:.3f} {real_classes}; sharpness "
      f"{real_sharpness:.4f} ({time.time() - start:.0f} s)", flush=True)
gvae, critic = gvae_parts(settings, "conditional", seed)


def score(iteration):
    renders = (synthesize_for_labels(gvae, val_maps, torch.Generator().manual_seed(seed)) + 1) / 2
    dice, classes = judged(renders.clamp(0, 1))
    ratio = sharpness(renders) / real_sharpness
    print(f"iteration {iteration:5d}: judge Dice on renders {dice:.3f} {classes} (real {real_dice:.3f}); "
          f"sharpness ratio {ratio:.3f} ({time.time() - start:.0f} s)", flush=True)


train_gvae(gvae, critic, items, packer(True, augment=True, num_classes=C), iterations, settings, seed,
           segmenter=segmenter, checkpoints=checkpoints, on_checkpoint=score)
