"""Maximum mean discrepancy between real and generated images.

Two estimators:

* :func:`gaussian_mmd` -- the unbiased estimator of the squared MMD (Gretton et al. 2012, Lemma 6) with a
  Gaussian kernel ``k(a, b) = exp(-||a - b||^2 / (2 sigma^2))`` on flattened images, averaged over several
  bandwidths ``sigma`` (a mixture of Gaussian kernels is still characteristic, so the population value is 0
  only when the two distributions are equal). This is the project's primary MMD figure.
* :func:`linear_mmd` -- MONAI's :class:`monai.metrics.MMDMetric` (a linear kernel: the unbiased estimate of
  ``||E[x] - E[y]||^2``), reported beside it for comparability. It only compares means, and can be negative.

Both unbiased estimates can be slightly negative when the two samples come from the same distribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.mmd import compute_mmd
from monai.utils import MetricReduction

from monai_gvae.metrics.utils import stack_batch

__all__ = [
    "DEFAULT_BANDWIDTH_SCALES",
    "median_heuristic",
    "gaussian_mmd",
    "linear_mmd",
    "GaussianMMDMetric",
    "WholeSetGaussianMMDMetric",
    "LinearMMDMetric",
]

#: bandwidths relative to the median pairwise distance when none are given
DEFAULT_BANDWIDTH_SCALES = (0.5, 1.0, 2.0)


def _flatten(x: torch.Tensor | Sequence[torch.Tensor], name: str) -> torch.Tensor:
    x = torch.as_tensor(stack_batch(x))
    if x.ndim < 2:
        raise ValueError(f"{name} must be batch-first with at least 2 dimensions (N, ...), got shape {tuple(x.shape)}.")
    if x.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 samples for the unbiased MMD, got {x.shape[0]}.")
    x = x.detach().reshape(x.shape[0], -1).double()
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf values.")
    return x


def _sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    d = a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1).unsqueeze(0) - 2.0 * a @ b.t()
    return d.clamp_min(0.0)


def median_heuristic(x: torch.Tensor, scales: Sequence[float] = DEFAULT_BANDWIDTH_SCALES) -> tuple[float, ...]:
    """Gaussian-kernel bandwidths ``scale * median pairwise distance`` of a batch (flattened).

    The median is ``torch.median`` of the distances between distinct items: for an even number of pairs (e.g. 28
    pairs of 8 images), the lower of the two middle values, not their mean.

    Compute them once on real (training or held-out) images and pass them to :func:`gaussian_mmd` /
    :class:`GaussianMMDMetric`, so that every model is scored with the same kernel.

    Args:
        x: ``(N, ...)`` batch, ``N >= 2``.
        scales: multipliers of the median distance.

    Returns:
        one bandwidth per scale.

    Example::

        bandwidths = median_heuristic(real_train_images[:500])  # e.g. (4.6, 9.2, 18.4) for 28x28 in [0, 1]
    """
    flat = _flatten(x, "x")
    d = _sq_dists(flat, flat)
    off = d[~torch.eye(d.shape[0], dtype=torch.bool)].sqrt()
    med = float(off.median())
    if med <= 0:
        raise ValueError("all samples are identical: the median pairwise distance is 0, no bandwidth can be derived.")
    return tuple(float(s) * med for s in scales)


def gaussian_mmd(
    x: torch.Tensor,
    y: torch.Tensor,
    bandwidths: Sequence[float] | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Unbiased estimate of the squared MMD between samples ``x`` and ``y`` with Gaussian kernels.

    ``MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y)``, the first two expectations over distinct pairs
    (U-statistics), computed in float64 on flattened samples.

    Args:
        x: ``(M, ...)`` first sample (e.g. generated images), ``M >= 2``.
        y: ``(N, ...)`` second sample (e.g. real images), ``N >= 2``; same per-sample shape as ``x``.
        bandwidths: kernel widths ``sigma`` in the units of the data (e.g. pixels in [0, 1]). ``None``:
            :func:`median_heuristic` of ``y`` (so a different kernel per batch; pass fixed bandwidths to
            compare models).
        reduction: ``"mean"`` over bandwidths (= the MMD of the mixture kernel) or ``"none"`` (one value per
            bandwidth).

    Returns:
        a scalar (``"mean"``) or a ``(len(bandwidths),)`` tensor, float64.

    Raises:
        ValueError: fewer than 2 samples, mismatched shapes, non-finite values, non-positive bandwidths.

    Example::

        x = torch.randn(100, 1, 8, 8); y = torch.randn(100, 1, 8, 8) + 1.0
        gaussian_mmd(x, y, bandwidths=(4.0, 8.0))  # clearly > 0; gaussian_mmd(x, x.clone()) is about 0
    """
    xf, yf = _flatten(x, "x"), _flatten(y, "y")
    if xf.shape[1] != yf.shape[1]:
        raise ValueError(f"x and y must have the same per-sample size, got {tuple(x.shape[1:])} and {tuple(y.shape[1:])}.")
    if bandwidths is None:
        bandwidths = median_heuristic(yf)
    sigmas = torch.as_tensor(list(bandwidths), dtype=torch.float64)
    if sigmas.ndim != 1 or sigmas.numel() == 0 or bool((sigmas <= 0).any()):
        raise ValueError(f"bandwidths must be a non-empty sequence of positive numbers, got {bandwidths}.")
    m, n = xf.shape[0], yf.shape[0]
    gamma = (1.0 / (2.0 * sigmas.pow(2))).view(-1, 1, 1)
    k_xx = torch.exp(-gamma * _sq_dists(xf, xf))
    k_yy = torch.exp(-gamma * _sq_dists(yf, yf))
    k_xy = torch.exp(-gamma * _sq_dists(xf, yf))
    # sum over distinct pairs: the diagonal of a Gaussian kernel matrix is exactly 1
    term_xx = (k_xx.sum((1, 2)) - m) / (m * (m - 1))
    term_yy = (k_yy.sum((1, 2)) - n) / (n * (n - 1))
    term_xy = k_xy.mean((1, 2))
    values = term_xx + term_yy - 2.0 * term_xy
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}.")


def linear_mmd(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MONAI's linear-kernel unbiased MMD (:func:`monai.metrics.mmd.compute_mmd`) on flattened samples.

    Args:
        x: ``(M, ...)`` first sample, ``M >= 2``.
        y: ``(M, ...)`` second sample of the same shape (MONAI requires equal batch sizes).

    Returns:
        scalar tensor (float64).
    """
    xf, yf = _flatten(x, "x"), _flatten(y, "y")
    if xf.shape != yf.shape:
        raise ValueError(f"MONAI's linear MMD needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}.")
    return compute_mmd(yf, xf, None)


class _StackedBatchMetric(CumulativeIterationMetric):
    """A cumulative metric whose ``y_pred`` and ``y`` may come decollated (lists of items): they are stacked first."""

    def __call__(self, y_pred: Any, y: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        return super().__call__(stack_batch(y_pred), stack_batch(y), **kwargs)


def _bandwidths(bandwidths: Sequence[float] | None) -> tuple[float, ...] | None:
    return tuple(float(b) for b in bandwidths) if bandwidths is not None else None


def _require_real(metric: CumulativeIterationMetric, y: torch.Tensor | None) -> torch.Tensor:
    if y is None:
        raise ValueError(f"{type(metric).__name__} needs real images y beside the generated y_pred.")
    return y


class _BatchMetric(_StackedBatchMetric):
    """A metric computed on whole batches (one value per batch); decollated lists are stacked first."""

    def __init__(self, reduction: MetricReduction | str = MetricReduction.MEAN) -> None:
        super().__init__()
        self.reduction = reduction

    def aggregate(self, reduction: MetricReduction | str | None = None) -> torch.Tensor:
        """Mean (or ``reduction``) over the accumulated per-batch values."""
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor) or data.numel() == 0:
            raise RuntimeError(f"{type(self).__name__}: no batch has been accumulated yet.")
        reduction = self.reduction if reduction is None else reduction
        if reduction in (MetricReduction.NONE, "none"):
            return data
        if reduction in (MetricReduction.MEAN, "mean"):
            return data.mean(0).squeeze(0)
        if reduction in (MetricReduction.SUM, "sum"):
            return data.sum(0).squeeze(0)
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}.")


class GaussianMMDMetric(_BatchMetric):
    """Unbiased Gaussian-kernel squared MMD per batch of ``(y_pred, y)``, averaged over batches.

    Feed fixed-size batches of generated (``y_pred``) and real (``y``) images; ``aggregate()`` returns the
    mean over batches. Works with ``monai.handlers.IgniteMetricHandler`` (``output_transform`` giving
    ``(generated, real)``) like any MONAI cumulative metric.

    Args:
        bandwidths: fixed kernel widths (see :func:`median_heuristic`); ``None`` uses each batch's median
            heuristic on ``y``.
        reduction: over batches: ``"mean"``, ``"sum"`` or ``"none"``.

    Example::

        metric = GaussianMMDMetric(bandwidths=(2.5, 5.0, 10.0))
        for fake, real in zip(fake_batches, real_batches):
            metric(fake, real)
        mmd = metric.aggregate().item(); metric.reset()
    """

    def __init__(
        self, bandwidths: Sequence[float] | None = None, reduction: MetricReduction | str = MetricReduction.MEAN
    ) -> None:
        super().__init__(reduction)
        self.bandwidths = _bandwidths(bandwidths)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        return gaussian_mmd(y_pred, _require_real(self, y), self.bandwidths).reshape(1, 1)


class WholeSetGaussianMMDMetric(_StackedBatchMetric):
    """Unbiased Gaussian-kernel squared MMD between *all* generated (``y_pred``) and *all* real (``y``) images.

    Unlike :class:`GaussianMMDMetric` (one estimate per batch, averaged), the batches are only collected, and
    ``aggregate()`` computes one :func:`gaussian_mmd` over the whole set: the estimate does not depend on how the
    images were batched, and the two sets may differ in size. The images are kept (flattened, float32, on the
    CPU) until ``reset()``, so memory grows with the set: cap the number of images for large 3D volumes.

    Args:
        bandwidths: fixed kernel widths; ``None``: :func:`median_heuristic` (scales
            :data:`DEFAULT_BANDWIDTH_SCALES`) of all the real images ``y`` seen, computed at ``aggregate()``.

    Example::

        metric = WholeSetGaussianMMDMetric()
        for fake, real in zip(fake_batches, real_batches):
            metric(fake, real)
        mmd = metric.aggregate().item(); metric.reset()
    """

    def __init__(self, bandwidths: Sequence[float] | None = None) -> None:
        super().__init__()
        self.bandwidths = _bandwidths(bandwidths)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> list[torch.Tensor]:
        y = _require_real(self, y)
        if y_pred.shape[1:] != y.shape[1:]:
            raise ValueError(
                f"generated and real images must have the same per-image shape, got {tuple(y_pred.shape[1:])} "
                f"and {tuple(y.shape[1:])}."
            )
        return [t.detach().reshape(t.shape[0], -1).float().cpu() for t in (y_pred, y)]

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        """The MMD of all generated images seen against all real images seen (float64 scalar).

        Raises:
            RuntimeError: nothing accumulated yet.
            ValueError: fewer than 2 generated or real images (see :func:`gaussian_mmd`).
        """
        buffers = self.get_buffer()
        if not isinstance(buffers, list) or len(buffers) != 2:
            raise RuntimeError(f"{type(self).__name__}: no batch has been accumulated yet.")
        fake, real = buffers
        return gaussian_mmd(fake, real, self.bandwidths)


class LinearMMDMetric(_BatchMetric):
    """MONAI's linear-kernel MMD (:class:`monai.metrics.MMDMetric`) per batch, averaged over batches.

    Args:
        reduction: over batches: ``"mean"``, ``"sum"`` or ``"none"``.

    Example::

        metric = LinearMMDMetric()
        metric(fake, real); value = metric.aggregate()
    """

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        return linear_mmd(y_pred, _require_real(self, y)).reshape(1, 1)
