"""Diagnostic (as run 2026-12-03; reads the pool's hidden labels, train split only, so it chooses nothing alone):
per pool slice, the Dice of the k-trained segmenter's pseudo-label (the benchmark's classical segmenter, 1200
iterations) and of label maps registered from the k slices (affine + demons): the best-correlated atlas
(``nearest1``, what monai_gvae.transforms.propagate_label_map does) and a locally weighted vote of all of them.
The ``hybrid`` row equals ``nearest1`` by construction (a one-hot of weight 1 outweighs any probability), so it says
nothing. Paired split layout. Usage, from the repository root: python atlas_pool_labels.py SEED K
Output of seeds 100-103, k = 5 and 10: atlas_pool_labels_seeds100-103.txt."""
import sys, time
import numpy as np, torch, SimpleITK as sitk
from monai_gvae.benchmarks.fewlabels import fewlabel_splits
from monai_gvae.transforms import class_dice
from monai_gvae.data import labelled_subset

def img(a):
    return sitk.GetImageFromArray(np.ascontiguousarray(a, dtype=np.float32))

def register(fixed_np, moving_np, moving_lab):
    fixed, moving = img(fixed_np), img(moving_np)
    R = sitk.ImageRegistrationMethod()
    R.SetMetricAsMeanSquares()
    R.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4, numberOfIterations=200)
    R.SetOptimizerScalesFromPhysicalShift()
    R.SetInitialTransform(sitk.CenteredTransformInitializer(fixed, moving, sitk.AffineTransform(2),
                                                            sitk.CenteredTransformInitializerFilter.MOMENTS), inPlace=False)
    R.SetInterpolator(sitk.sitkLinear)
    R.SetShrinkFactorsPerLevel([2, 1]); R.SetSmoothingSigmasPerLevel([1, 0])
    affine = R.Execute(fixed, moving)
    moved = sitk.Resample(moving, fixed, affine, sitk.sitkLinear, 0.0)
    lab = sitk.Resample(img(moving_lab), fixed, affine, sitk.sitkNearestNeighbor, 0.0)
    demons = sitk.FastSymmetricForcesDemonsRegistrationFilter()
    demons.SetNumberOfIterations(int(sys.argv[3]) if len(sys.argv) > 3 else 100)
    demons.SetStandardDeviations(1.5)
    field = demons.Execute(fixed, moved)
    dtx = sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))
    warped = sitk.Resample(moved, fixed, dtx, sitk.sitkLinear, 0.0)
    wlab = sitk.Resample(lab, fixed, dtx, sitk.sitkNearestNeighbor, 0.0)
    return sitk.GetArrayFromImage(warped), sitk.GetArrayFromImage(wlab).astype(np.int64)

def dice(pred, truth, C):
    d = class_dice(torch.as_tensor(pred)[None, None], torch.as_tensor(truth)[None, None], C, min_pixels=1)[0]
    return d  # per fg class, nan where absent

seed, k = int(sys.argv[1]), int(sys.argv[2])
data = fewlabel_splits(split_layout="paired")
C = data.num_classes
items = labelled_subset(data.train, k, seed)
chosen = {i["slice_index"] for i in items}
pool = [i for i in data.train if i["slice_index"] not in chosen]
t = time.time()
res = {m: [] for m in ("segmenter", "nearest1", "hybrid", "local_vote")}
from monai_gvae.benchmarks.segmentation import train_segmenter
torch.use_deterministic_algorithms(True)
net, _ = train_segmenter(items, iterations=1200, batch_size=16, seed=seed, shuffle_seed=seed, num_classes=C)
net.eval()
with torch.no_grad():
    probs = torch.cat([net(torch.stack([torch.as_tensor(p["image"]).float() for p in pool[i:i+32]])) for i in range(0, len(pool), 32)]).softmax(1).numpy()
for p in pool:
    f = np.asarray(p["image"]).reshape(64, 64); truth = np.asarray(p["label"]).reshape(64, 64)
    outs = []
    for a in items:
        w, l = register(f, np.asarray(a["image"]).reshape(64, 64), np.asarray(a["label"]).reshape(64, 64).astype(np.float32))
        ncc = np.corrcoef(w.ravel(), f.ravel())[0, 1]
        outs.append((ncc, w, l))
    outs.sort(key=lambda o: -o[0])
    res["nearest1"].append(dice(outs[0][2], truth, C))
    pi = probs[len(res["segmenter"])]
    res["segmenter"].append(dice(pi.argmax(0), truth, C))
    onehot = np.stack([(outs[0][2] == c) for c in range(C)]).astype(float)
    res["hybrid"].append(dice((pi + onehot).argmax(0), truth, C))
    votes = np.zeros((C, 64, 64))
    for ncc, w, l in outs[:3]:
        for c in range(C): votes[c] += (l == c)
    votes = np.zeros((C, 64, 64))
    for ncc, w, l in outs:
        wt = np.exp(-((w - f) ** 2) / (2 * 0.05 ** 2))
        wt = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(img(wt), 1.5))
        for c in range(C): votes[c] += wt * (l == c)
    res["local_vote"].append(dice(votes.argmax(0), truth, C))
print(f"seed {seed} k {k} labelled {sorted(chosen)} pool {len(pool)} time {time.time()-t:.0f}s")
for m, rows in res.items():
    a = torch.stack(rows).numpy()
    per_slice = np.nanmean(a, 1)
    print(f"{m:11s} mean slice Dice {np.nanmean(per_slice):.3f}  per class " + " / ".join(f"{np.nanmean(a[:, c]):.2f}" for c in range(C - 1)))
