"""Array transforms of monai-gvae (channel-first tensors, no batch axis)."""

from __future__ import annotations

import torch
from monai.config import NdarrayOrTensor
from monai.transforms import Transform

from monai_gvae.transforms.utils import pack_image_label

__all__ = ["PackImageLabel"]


class PackImageLabel(Transform):
    """Image ``(C, *spatial)`` + index label ``(1, *spatial)`` -> the GVAE's input ``(C + L, *spatial)`` in [-1, 1].

    Args:
        num_classes: label classes (background included); ``None`` for image-only models.
        label_channels: ``"onehot"`` (``num_classes`` label channels) or ``"foreground"`` (one channel).
        intensity_range: range of the incoming image (after e.g. ``ScaleIntensity``), mapped to [-1, 1].
        image_channels: expected number of image channels (checked when given).
        spatial_dims: expected number of spatial dimensions (checked when given).

    Raises:
        TypeError, ValueError: see :func:`~monai_gvae.transforms.pack_image_label` (wrong channels, dimensions,
            dtype, range, non-finite values, label values).

    Example::

        packed = PackImageLabel(num_classes=4)(image, label)  # (1 + 4, H, W)
    """

    def __init__(
        self,
        num_classes: int | None,
        label_channels: str = "onehot",
        intensity_range: tuple[float, float] = (0.0, 1.0),
        image_channels: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        self.num_classes = num_classes
        self.label_channels = label_channels
        self.intensity_range = tuple(intensity_range)
        self.image_channels = image_channels
        self.spatial_dims = spatial_dims

    def __call__(self, image: NdarrayOrTensor, label: NdarrayOrTensor | None = None) -> torch.Tensor:
        return pack_image_label(
            image, label, self.num_classes, self.label_channels, self.intensity_range,
            self.image_channels, self.spatial_dims,
        )
