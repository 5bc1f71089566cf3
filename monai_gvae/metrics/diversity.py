"""MS-SSIM among pairs of generated samples: a diversity measure (lower = more diverse).

The paper's Table 4 uses MS-SSIM this way (WGAN-GP 0.996 = collapsed, GVAE 0.818). The value means little on
its own: report it beside the same measure on pairs of *real* images (the data's own diversity), which
:func:`ms_ssim_pairs` computes just as well.

MS-SSIM is computed by MONAI's :func:`monai.metrics.regression.compute_ms_ssim`. Its default (5 scales,
kernel 11) needs images larger than ~160 pixels; :func:`ms_ssim_settings` picks fewer scales and a smaller
kernel for small inputs (3 scales, kernel 7 at 28x28 and at 32^3), renormalising the standard scale weights
of Wang et al. (2003) so that identical images still score 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.metrics.regression import compute_ms_ssim

from monai_gvae.metrics.mmd import _BatchMetric

__all__ = ["MS_SSIM_WEIGHTS", "ms_ssim_settings", "ms_ssim", "ms_ssim_pairs", "MSSSIMDiversityMetric"]

#: Wang et al. (2003) weights of the five scales, finest first
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim_settings(spatial_shape: Sequence[int], max_kernel: int = 11, min_kernel: int = 5) -> dict[str, Any]:
    """Scales and kernel size of MS-SSIM for images of ``spatial_shape``.

    The most scales (up to 5) for which an odd Gaussian kernel of at least ``min_kernel`` (at most
    ``max_kernel``) fits the coarsest scale (``size // 2**(scales - 1)``) and passes MONAI's size check;
    below that, the smallest kernel 3 is allowed. Weights are the first ``scales`` of
    :data:`MS_SSIM_WEIGHTS`, renormalised to sum to 1.

    Args:
        spatial_shape: ``(H, W)`` or ``(D, H, W)``.
        max_kernel: largest kernel (MONAI's default is 11).
        min_kernel: smallest kernel preferred before dropping a scale.

    Returns:
        ``{"kernel_size": int, "weights": tuple, "kernel_sigma": 1.5}``.

    Raises:
        ValueError: an image too small for even 1 scale with kernel 3.

    Example::

        ms_ssim_settings((28, 28))      # 3 scales, kernel 7
        ms_ssim_settings((32, 32, 32))  # 3 scales, kernel 7
        ms_ssim_settings((256, 256))    # 5 scales, kernel 11
    """
    size = min(int(s) for s in spatial_shape)
    for floor in (min_kernel, 3):
        for scales in range(len(MS_SSIM_WEIGHTS), 0, -1):
            coarsest = size // 2 ** (scales - 1)
            monai_limit = size // max(1, scales - 1) ** 2  # compute_ms_ssim requires limit > kernel - 1
            k = min(max_kernel, coarsest, monai_limit)
            k = k if k % 2 else k - 1
            if k >= floor:
                w = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=torch.float64)
                return {"kernel_size": k, "weights": tuple((w / w.sum()).tolist()), "kernel_sigma": 1.5}
    raise ValueError(f"images of spatial shape {tuple(spatial_shape)} are too small for MS-SSIM (need >= 3 pixels).")


def _check_images_in_range(x: torch.Tensor, value_range: tuple[float, float], name: str) -> torch.Tensor:
    """Images ``x`` checked to be finite and inside ``value_range``, returned as offsets from its low end."""
    lo, hi = float(value_range[0]), float(value_range[1])
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}.")
    x = torch.as_tensor(x).detach().float()
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf values.")
    tol = 1e-3 * (hi - lo)
    if x.numel() and (float(x.min()) < lo - tol or float(x.max()) > hi + tol):
        raise ValueError(
            f"{name} has values in [{float(x.min()):.4g}, {float(x.max()):.4g}], outside value_range {value_range}: "
            "pass the range the images are in (e.g. (-1, 1) for network outputs), so the data range is right."
        )
    # SSIM's luminance term is not shift-invariant: measure from the low end of the range.
    return (x - lo).clamp(0.0, hi - lo)


def ms_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    value_range: tuple[float, float] = (0.0, 1.0),
    kernel_size: int | None = None,
    weights: Sequence[float] | None = None,
    kernel_sigma: float = 1.5,
) -> torch.Tensor:
    """MS-SSIM of each pair ``(x[i], y[i])`` (2D or 3D, any channel count).

    Args:
        x: ``(N, C, H, W)`` or ``(N, C, D, H, W)``.
        y: same shape.
        value_range: the range the images live in; the data range is ``high - low``.
        kernel_size: Gaussian kernel size; default from :func:`ms_ssim_settings`.
        weights: scale weights; default from :func:`ms_ssim_settings`.
        kernel_sigma: Gaussian kernel standard deviation.

    Returns:
        ``(N,)`` values in [0, 1] (1 for identical images).

    Raises:
        ValueError: shapes differ, images not 2D/3D, values outside ``value_range``.
    """
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}.")
    if x.ndim not in (4, 5):
        raise ValueError(f"expected (N, C, H, W) or (N, C, D, H, W) images, got shape {tuple(x.shape)}.")
    settings = ms_ssim_settings(x.shape[2:])
    kernel_size = settings["kernel_size"] if kernel_size is None else kernel_size
    weights = settings["weights"] if weights is None else weights
    x = _check_images_in_range(x, value_range, "x")
    y = _check_images_in_range(y, value_range, "y")
    values = compute_ms_ssim(
        x,
        y,
        spatial_dims=x.ndim - 2,
        data_range=float(value_range[1]) - float(value_range[0]),
        kernel_size=kernel_size,
        kernel_sigma=kernel_sigma,
        weights=tuple(weights),
    )
    return values.reshape(-1)


def ms_ssim_pairs(
    samples: torch.Tensor,
    value_range: tuple[float, float] = (0.0, 1.0),
    kernel_size: int | None = None,
    weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """MS-SSIM of the disjoint pairs ``(samples[0], samples[1]), (samples[2], samples[3]), ...``.

    Samples drawn independently (prior samples of a generator, or shuffled real images) give independent
    pairs; the mean over pairs is the diversity score (lower = more diverse).

    Args:
        samples: ``(N, C, spatial...)`` with ``N >= 2`` (an odd last sample is dropped).
        value_range: range of the samples.
        kernel_size: see :func:`ms_ssim`.
        weights: see :func:`ms_ssim`.

    Returns:
        ``(N // 2,)`` MS-SSIM values.

    Example::

        fake = (model.sample(200) + 1) / 2
        diversity = ms_ssim_pairs(fake).mean()   # compare with ms_ssim_pairs(shuffled_real).mean()
    """
    samples = torch.as_tensor(samples)
    if samples.ndim < 4 or samples.shape[0] < 2:
        raise ValueError(f"need a batch of at least 2 images (N, C, spatial...), got shape {tuple(samples.shape)}.")
    n = samples.shape[0] // 2 * 2
    return ms_ssim(samples[0:n:2], samples[1:n:2], value_range, kernel_size, weights)


class MSSSIMDiversityMetric(_BatchMetric):
    """Mean MS-SSIM over disjoint pairs within each batch of generated images (``y_pred``; ``y`` is ignored).

    Usable with ``monai.handlers.IgniteMetricHandler`` like any MONAI cumulative metric; ``aggregate()`` is
    the mean over all pairs seen.

    Args:
        value_range: range of the images (``(0, 1)``; ``(-1, 1)`` for raw network outputs).
        kernel_size: Gaussian kernel size (default: :func:`ms_ssim_settings` of the first batch's shape).
        weights: scale weights (default likewise).

    Example::

        metric = MSSSIMDiversityMetric(value_range=(-1, 1))
        metric(model.sample(64)); diversity = metric.aggregate().item()
    """

    def __init__(
        self,
        value_range: tuple[float, float] = (0.0, 1.0),
        kernel_size: int | None = None,
        weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.kernel_size = kernel_size
        self.weights = tuple(weights) if weights is not None else None

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        return ms_ssim_pairs(y_pred, self.value_range, self.kernel_size, self.weights).reshape(-1, 1)
