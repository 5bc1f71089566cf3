"""Diagnostic (not a benchmark arm): how accurate are the label maps a few-label user can give the unlabelled pool?

For each validation seed and k, the pool is the train slices outside the k labelled ones. Its label maps come from
(a) the k-trained segmenter (the benchmark's pseudo-labels: ``cond_pseudo`` and ``selftrain`` use them),
(b) registration of each of the k labelled images to the pool image (SimpleITK: similarity transform, then fast
symmetric-forces demons), its label map warped with nearest-neighbour interpolation, keeping the atlas whose warped
image is closest (mean squared difference), or (c) the majority vote of all k warped maps. The pool's true labels,
hidden from every arm, score them (mean foreground Dice, MONAI's ``DiceMetric``).

Run from the repository root: ``python docs/fewlabels/diagnostics/registration_labels.py 100,101,102,103``.
"""

import sys
import time

import numpy as np
import SimpleITK as sitk
import torch
from monai.metrics import DiceMetric
from monai.networks.utils import one_hot

from monai_gvae.benchmarks.fewlabels import fewlabel_splits, pseudo_labelled_pool
from monai_gvae.benchmarks.segmentation import train_segmenter
from monai_gvae.data import labelled_subset

torch.set_num_threads(1)


def register(fixed: np.ndarray, moving: np.ndarray, moving_label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``moving`` and its label map warped onto ``fixed`` (similarity, then demons)."""
    f, m = sitk.GetImageFromArray(fixed.astype(np.float32)), sitk.GetImageFromArray(moving.astype(np.float32))
    similarity = sitk.CenteredTransformInitializer(f, m, sitk.Similarity2DTransform(),
                                                   sitk.CenteredTransformInitializerFilter.MOMENTS)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMeanSquares()
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(0.05, 1e-4, 200)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetInitialTransform(similarity, inPlace=True)
    reg.Execute(f, m)
    moved = sitk.Resample(m, f, similarity, sitk.sitkLinear, 0.0)
    demons = sitk.FastSymmetricForcesDemonsRegistrationFilter()
    demons.SetNumberOfIterations(100)
    demons.SetStandardDeviations(1.5)
    field = sitk.DisplacementFieldTransform(sitk.Cast(demons.Execute(f, moved), sitk.sitkVectorFloat64))
    label = sitk.Resample(sitk.GetImageFromArray(moving_label.astype(np.int16)), f, similarity,
                          sitk.sitkNearestNeighbor, 0)
    return (sitk.GetArrayFromImage(sitk.Resample(moved, f, field, sitk.sitkLinear, 0.0)),
            sitk.GetArrayFromImage(sitk.Resample(label, f, field, sitk.sitkNearestNeighbor, 0)))


def dice(predicted: list, true: list, classes: int) -> float:
    metric = DiceMetric(include_background=False, ignore_empty=True)
    metric(one_hot(torch.as_tensor(np.stack(predicted))[:, None].long(), classes),
           one_hot(torch.as_tensor(np.stack(true))[:, None].long(), classes))
    return float(torch.nanmean(metric.get_buffer()))


data = fewlabel_splits()
C = data.num_classes
for seed in [int(s) for s in sys.argv[1].split(",")]:
    for k in (5, 10):
        items = labelled_subset(data.train, k, seed)
        chosen = {i["slice_index"] for i in items}
        pool = [i for i in data.train if i["slice_index"] not in chosen]
        truth = [np.asarray(i["label"][0]) for i in pool]
        start = time.time()
        voted, best = [], []
        for p in pool:
            warped = [register(np.asarray(p["image"][0]), np.asarray(i["image"][0]), np.asarray(i["label"][0]))
                      for i in items]
            warped.sort(key=lambda w: float(((w[0] - np.asarray(p["image"][0])) ** 2).mean()))
            labels = np.stack([w[1] for w in warped])
            voted.append(np.stack([(labels == c).sum(0) for c in range(C)]).argmax(0))
            best.append(warped[0][1])
        seconds = time.time() - start
        net, _ = train_segmenter(items, iterations=600, batch_size=16, seed=seed, shuffle_seed=seed, num_classes=C)
        pseudo = [np.asarray(d["label"][0]) for d in pseudo_labelled_pool(net, pool)]
        print(f"seed={seed} k={k} pool={len(pool)} pseudo={dice(pseudo, truth, C):.3f} "
              f"registered_best={dice(best, truth, C):.3f} registered_vote={dice(voted, truth, C):.3f} "
              f"registration_s={seconds:.0f}", flush=True)
