"""Sharpness of generated images relative to real ones: the ratio of their mean gradient magnitudes.

A VAE's samples are blurred; the critic of a GVAE exists to make them sharp. :func:`sharpness_ratio` measures that
property on its own: the mean gradient magnitude of the generated images divided by that of real images of the same
set (same data, size and intensity range). It is 1 when the generated images have edges as strong as the data's,
below 1 when they are blurred (0.8: edges 20 % weaker on average), and above 1 when they hold more high-frequency
content than the data: over-sharpened, noisy, or with the checkerboard texture of transposed convolutions. So it is
not "higher is better": closer to 1 is better, and a value above 1 is a warning, not a win. Read it beside a
distribution distance (MMD, Frechet distance), which says whether the images are right at all.

Why the mean gradient magnitude and not the variance of the Laplacian (the other classic focus measure, Pertuz et
al. 2013): a first derivative amplifies pixel noise less than a second derivative, and the mean is linear in
contrast while the variance of the Laplacian is quadratic and dominated by its few largest values, so a handful of
artefact pixels would swamp it. The mean gradient magnitude scales with contrast exactly as the images do, so the
ratio does not depend on the intensity range (a common affine map of both sets leaves it unchanged), and it has one
definition for 2D and 3D images.

Definition, per image of shape ``(C, *spatial)``: forward differences ``x[i + e_d] - x[i]`` along every spatial axis
``d``, on the voxels where all of them exist (the first ``n - 1`` along each axis); the gradient magnitude
``sqrt(sum_d diff_d^2)`` per voxel and channel; its mean over voxels and channels. The ratio is the mean over the
generated images divided by the mean over the real images (the two sets may differ in size; images are not paired).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.metrics import Cumulative

from monai_gvae.metrics.utils import stack_batch

__all__ = ["mean_gradient_magnitude", "sharpness_ratio", "SharpnessRatioMetric"]


def _images(x: torch.Tensor | Sequence[torch.Tensor], name: str) -> torch.Tensor:
    x = torch.as_tensor(stack_batch(x))
    if x.ndim not in (4, 5):
        raise ValueError(
            f"{name} must be a batch of 2D or 3D images (N, C, H, W[, D]), got shape {tuple(x.shape)}."
        )
    if min(x.shape[2:]) < 2:
        raise ValueError(f"{name} needs at least 2 pixels along every spatial axis, got shape {tuple(x.shape)}.")
    x = x.detach().double()
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf values.")
    return x


def mean_gradient_magnitude(
    images: torch.Tensor | Sequence[torch.Tensor], mask: torch.Tensor | Sequence[torch.Tensor] | None = None
) -> torch.Tensor:
    """Mean gradient magnitude of each image (forward differences, see the module docstring), float64.

    Args:
        images: ``(N, C, H, W)`` or ``(N, C, H, W, D)``, any intensity range (or a list of ``(C, ...)`` items).
        mask: optional ``(N, 1, *spatial)`` (or ``(N, C, *spatial)``) boolean map of the voxels to average over,
            e.g. the brain (``image > threshold``), so that the empty background around an object does not dilute
            the figure; a voxel counts where its mask is true (its forward neighbours need not be).

    Returns:
        ``(N,)``: one value per image, in intensity units per pixel.

    Raises:
        ValueError: not a batch of 2D/3D images, a spatial axis shorter than 2, NaN/Inf values, a mask whose shape
            does not match the images', or an image whose mask holds no voxel.

    Example::

        ramp = torch.arange(8.0).repeat(1, 1, 8, 1)  # (1, 1, 8, 8), +1 per column
        mean_gradient_magnitude(ramp)  # tensor([1.], dtype=torch.float64)
        mean_gradient_magnitude(images, mask=images > 0.05)  # over the object only
    """
    x = _images(images, "images")
    spatial = x.shape[2:]
    core = tuple(slice(0, n - 1) for n in spatial)  # voxels where every forward difference exists
    squared = torch.zeros_like(x[(Ellipsis, *core)])
    for d in range(len(spatial)):
        diff = torch.diff(x, dim=2 + d)
        squared += diff[(Ellipsis, *core)].pow(2)
    magnitude = squared.sqrt()
    if mask is None:
        return magnitude.flatten(1).mean(1)
    m = torch.as_tensor(stack_batch(mask)).bool()
    if m.ndim != x.ndim or m.shape[0] != x.shape[0] or m.shape[2:] != spatial or m.shape[1] not in (1, x.shape[1]):
        raise ValueError(f"mask must have shape (N, 1 or C, *spatial) of the images {tuple(x.shape)}, "
                         f"got {tuple(m.shape)}.")
    weight = m[(Ellipsis, *core)].expand_as(magnitude).double()
    counts = weight.flatten(1).sum(1)
    if not bool((counts > 0).all()):
        raise ValueError(f"the mask holds no voxel of image(s) {torch.nonzero(counts == 0).flatten().tolist()}.")
    return (magnitude * weight).flatten(1).sum(1) / counts


def _ratio(generated_values: torch.Tensor, real_values: torch.Tensor) -> torch.Tensor:
    real_mean = real_values.mean()
    if not real_mean > 0:
        raise ValueError(
            "the real images have no gradient at all (every image is constant): the sharpness ratio is undefined."
        )
    return generated_values.mean() / real_mean


def sharpness_ratio(
    generated: torch.Tensor | Sequence[torch.Tensor], real: torch.Tensor | Sequence[torch.Tensor]
) -> torch.Tensor:
    """Mean gradient magnitude of ``generated`` divided by that of ``real`` (1 = as sharp as the data).

    Args:
        generated: ``(M, C, *spatial)`` generated images, ``M >= 1``.
        real: ``(N, C, *spatial)`` real images of the same data set, size and intensity range, ``N >= 1``.

    Returns:
        a float64 scalar: below 1 blurred, 1 as sharp as the real images, above 1 sharper than the data or noisy
        (closer to 1 is better).

    Raises:
        ValueError: the per-image shapes differ, a set is empty or not 2D/3D images, NaN/Inf values, or real
            images without any gradient.

    Example::

        real = torch.rand(16, 1, 32, 32)
        blurred = torch.nn.functional.avg_pool2d(real, 3, 1, 1)
        sharpness_ratio(real, real)     # 1.0
        sharpness_ratio(blurred, real)  # well below 1
    """
    fake, true = _images(generated, "generated"), _images(real, "real")
    if fake.shape[1:] != true.shape[1:]:
        raise ValueError(
            f"generated and real images must have the same per-image shape, got {tuple(fake.shape[1:])} and "
            f"{tuple(true.shape[1:])}."
        )
    if fake.shape[0] == 0 or true.shape[0] == 0:
        raise ValueError("sharpness_ratio needs at least one generated and one real image.")
    return _ratio(mean_gradient_magnitude(fake), mean_gradient_magnitude(true))


class _ValueBuffer(Cumulative):
    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        return self.get_buffer()


class SharpnessRatioMetric(Cumulative):
    """Cumulative :func:`sharpness_ratio`: per-image mean gradient magnitudes of generated (``y_pred``) and real
    (``y``) batches are collected; ``aggregate()`` returns the ratio of their means over everything seen.

    The estimate does not depend on the batching, the two sets may differ in size, and either may be ``None`` in a
    call. Only one number per image is kept, so memory stays small for 3D volumes. Works with
    ``monai.handlers.IgniteMetricHandler`` (it calls ``metric(y_pred, y)`` then ``aggregate()``).

    Example::

        metric = SharpnessRatioMetric()
        for fake, real in zip(fake_batches, real_batches):
            metric(fake, real)
        ratio = metric.aggregate().item(); metric.reset()
    """

    def __init__(self) -> None:
        self.fake_values, self.real_values = _ValueBuffer(), _ValueBuffer()
        self.image_shape: tuple[int, ...] | None = None
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self.fake_values.reset()
        self.real_values.reset()
        self.image_shape = None

    def _values(self, x: Any, name: str) -> torch.Tensor:
        images = _images(x, name)
        if self.image_shape is None:
            self.image_shape = tuple(images.shape[1:])
        elif tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(
                f"{name} images have the per-image shape {tuple(images.shape[1:])}, earlier ones {self.image_shape}: "
                "generated and real images must have the same shape."
            )
        return mean_gradient_magnitude(images)

    def __call__(self, y_pred: Any, y: Any = None) -> None:
        """Add a batch of generated images and (optionally) a batch of real images."""
        if y_pred is not None:
            self.fake_values.extend(self._values(y_pred, "generated"))
        if y is not None:
            self.real_values.extend(self._values(y, "real"))

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        """The mean gradient magnitude of all generated images seen over that of all real images seen.

        Raises:
            RuntimeError: no generated or no real image accumulated yet.
            ValueError: the real images seen have no gradient at all.
        """
        fake, real = self.fake_values.get_buffer(), self.real_values.get_buffer()
        if fake is None or real is None or len(fake) == 0 or len(real) == 0:
            raise RuntimeError(
                "SharpnessRatioMetric needs at least one generated and one real image before aggregate()."
            )
        return _ratio(torch.as_tensor(fake), torch.as_tensor(real))
