"""Diagnostic (stop 45; reads the train and val splits' labels, so it chooses only what goes to validation): are the
conditional GVAE's renders "too easy"? Random intensity changes of the renders (``intensity_randomisation``), on
the fly, against the render-realism measure "trained on renders" (render_realism.py beside this file).

One training of the benchmark's conditional GVAE (its defaults: 500 iterations, segmentation consistency 0.5 with the
classical segmenter of k labelled slices, paired split layout), renders of the 46 train slices' true label maps, then
a UNet (1200 iterations, classical augmentation) trained only on those renders for each randomisation, scored on the
real val slices; the reference UNet on the 46 real train pairs, plain and with "all" (whether a lift is specific to
renders).
Usage, from the repository root: python render_texture.py SEED K [SEGMENTER_ITERATIONS, 1200; fewer for a smoke run]
"""
import sys
import time

import torch

from monai_gvae.benchmarks.fewlabels import FewLabelSettings, fewlabel_splits
from monai_gvae.benchmarks.fewlabels.synthesis import gvae_parts, packer, train_gvae
from monai_gvae.benchmarks.segmentation import (INTENSITY_RANDOMISATIONS, dice_scores, intensity_randomisation,
                                                train_segmenter)
from monai_gvae.data import labelled_subset
from monai_gvae.transforms.conditioning import synthesize_for_labels

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
seed, k = int(sys.argv[1]), int(sys.argv[2])
seg_iterations = int(sys.argv[3]) if len(sys.argv) > 3 else 1200
settings = FewLabelSettings(seg_iterations=seg_iterations)
data = fewlabel_splits(split_layout="paired")
C = data.num_classes
items = labelled_subset(data.train, k, seed)
start = time.time()


def trained(pairs, randomisation="none"):
    net, _ = train_segmenter(pairs, iterations=seg_iterations, batch_size=settings.batch_size, seed=seed,
                             shuffle_seed=seed, num_classes=C, item_transform=intensity_randomisation(randomisation))
    scores = dice_scores(net, data.val, C, data.class_names)
    return f"{scores['dice']:.3f} {[round(v, 3) for key, v in scores.items() if key != 'dice']}"


segmenter, _ = train_segmenter(items, iterations=seg_iterations, batch_size=settings.batch_size, seed=seed,
                               shuffle_seed=seed, num_classes=C)
gvae, critic = gvae_parts(settings, "conditional", seed)
train_gvae(gvae, critic, items, packer(True, augment=True, num_classes=C), settings.gvae_iterations, settings, seed,
           segmenter=segmenter)
train_maps = torch.stack([torch.as_tensor(i["label"]).long() for i in data.train])
renders = ((synthesize_for_labels(gvae, train_maps, torch.Generator().manual_seed(seed)) + 1) / 2).clamp(0, 1)
render_pairs = [{"image": x, "label": m} for x, m in zip(renders, train_maps)]
print(f"seed {seed} k {k}: GVAE {settings.gvae_iterations} iterations ({time.time() - start:.0f} s)", flush=True)
for name in ("none", "all"):
    print(f"real train pairs, {name}: {trained(data.train, name)} ({time.time() - start:.0f} s)", flush=True)
for name in INTENSITY_RANDOMISATIONS:
    print(f"renders, {name}: {trained(render_pairs, name)} ({time.time() - start:.0f} s)", flush=True)
