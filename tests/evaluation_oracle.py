"""The evaluation metrics computed by hand, for tests that check reported values against them.

Not collected by pytest (no ``test_`` prefix); imported by tests/test_evaluation.py, test_cli.py and test_bundles.py.
Each value follows its definition in ``monai_gvae.metrics.METRIC_DEFINITIONS`` with numpy and loops, not with the
metric classes under test. The prior samples are those the definitions name (``sample_latents(latent_size, seed,
i, 1)`` for image ``i``), and MS-SSIM is MONAI's function on the documented pairs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.metrics.regression import compute_ms_ssim

from monai_gvae.metrics import ms_ssim_settings
from monai_gvae.networks import sample_latents


def lower_median(values: list[float]) -> float:
    """The median as documented for the MMD bandwidths: for an even count, the lower of the two middle values."""
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


def gaussian_mmd_by_hand(fake: np.ndarray, real: np.ndarray) -> float:
    """Unbiased squared MMD with the Gaussian mixture 0.5, 1, 2 x the median real pairwise distance, by loops."""
    m, n = len(fake), len(real)
    dist = lambda a, b: float(np.sqrt(((a - b) ** 2).sum()))  # noqa: E731
    median = lower_median([dist(real[i], real[j]) for i in range(n) for j in range(i + 1, n)])
    values = []
    for sigma in (0.5 * median, median, 2 * median):
        k = lambda a, b: math.exp(-dist(a, b) ** 2 / (2 * sigma**2))  # noqa: E731
        xx = sum(k(fake[i], fake[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        yy = sum(k(real[i], real[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        xy = sum(k(a, b) for a in fake for b in real) / (m * n)
        values.append(xx + yy - 2 * xy)
    return float(np.mean(values))


def mean_gradient_by_hand(image: np.ndarray) -> float:
    """One image ``(C, *spatial)``: forward differences along each spatial axis on the voxels where all exist, the
    magnitude per voxel and channel, its mean (the definition of ``sharpness_ratio``), with numpy."""
    core = tuple(slice(0, n - 1) for n in image.shape[1:])
    squared = sum(np.diff(image, axis=1 + d)[(slice(None), *core)] ** 2 for d in range(image.ndim - 1))
    return float(np.sqrt(squared).mean())


def sharpness_ratio_by_hand(fake: np.ndarray, real: np.ndarray) -> float:
    """Mean over generated images of their mean gradient magnitude over the same for the real images."""
    return float(np.mean([mean_gradient_by_hand(f) for f in fake]) / np.mean([mean_gradient_by_hand(r) for r in real]))


def dice_by_hand(decoded: np.ndarray, truth: np.ndarray, num_classes: int) -> float:
    """Mean over images of the mean Dice of the foreground classes present in the true label (a class absent
    from the truth is ignored, also where it is predicted; an image with no foreground in its truth is left out)."""
    per_image = []
    for d, t in zip(decoded, truth):
        scores = [2 * ((d == k) & (t == k)).sum() / ((d == k).sum() + (t == k).sum())
                  for k in range(1, num_classes) if (t == k).sum()]
        if scores:
            per_image.append(np.mean(scores))
    return float(np.mean(per_image)) if per_image else float("nan")


def _to01(x: torch.Tensor) -> np.ndarray:
    """Model range [-1, 1] (clipped) -> [0, 1], float64."""
    return (np.clip(x.double().cpu().numpy(), -1.0, 1.0) + 1.0) / 2.0


def _labels(x: torch.Tensor, image_channels: int) -> np.ndarray:
    """Class indices of packed label channels: argmax of one-hot channels, or a foreground channel above 0."""
    channels = x[:, image_channels:].double().cpu().numpy()
    return (channels[:, 0] > 0).astype(np.int64) if channels.shape[1] == 1 else channels.argmax(1)


def expected_metrics(model, packed: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """``reconstruction_l1_01``, ``kl``, ``mmd_gaussian``, ``ms_ssim_diversity``, ``sharpness_ratio`` and (joint
    models) ``reconstruction_dice`` of ``model`` on ``packed`` (``(N, C + L, *spatial)`` model inputs in [-1, 1])."""
    model = model.eval()
    c, n = model.image_channels, packed.shape[0]
    with torch.no_grad():
        mu, logvar = model.encode(packed)
        recon = model.decode(mu)
        fake = model.decode(sample_latents(model.latent_size, seed, 0, n))
    real01, recon01, fake01 = _to01(packed[:, :c]), _to01(recon[:, :c]), _to01(fake[:, :c])
    var = np.exp(logvar.double().numpy())
    values = {
        # mean |x - G(mu(x))| of the image channels in [0, 1]
        "reconstruction_l1_01": float(np.abs(recon01 - real01).mean()),
        # KL(N(mu, var) || N(0, 1)), the textbook formula, summed over latents, averaged over images
        "kl": float((0.5 * (mu.double().numpy() ** 2 + var - 1.0 - np.log(var)).sum(1)).mean()),
        "mmd_gaussian": gaussian_mmd_by_hand(fake01.reshape(n, -1), real01.reshape(n, -1)),
    }
    settings = ms_ssim_settings(tuple(packed.shape[2:]))
    f = torch.from_numpy(fake01).float()
    pairs = compute_ms_ssim(f[0 : n // 2 * 2 : 2], f[1 : n // 2 * 2 : 2], spatial_dims=packed.ndim - 2, data_range=1.0,
                            kernel_size=settings["kernel_size"], weights=settings["weights"])
    values["ms_ssim_diversity"] = float(pairs.mean())
    values["sharpness_ratio"] = sharpness_ratio_by_hand(fake01, real01)
    if model.label_channels:
        values["reconstruction_dice"] = dice_by_hand(_labels(recon, c), _labels(packed, c), model.num_classes)
    return values
