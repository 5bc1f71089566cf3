"""Spatially-adaptive normalisation (SPADE) of generator features by a label map."""

from __future__ import annotations

import torch
from monai.networks.layers.factories import Conv, Norm
from torch import nn

__all__ = ["SPADE"]


class SPADE(nn.Module):
    """Normalise features, then scale and shift them per pixel by functions of a label map (Park et al., "Semantic
    Image Synthesis with Spatially-Adaptive Normalization", CVPR 2019).

    ``out = norm(h) * (1 + gamma(c)) + beta(c)``, with ``norm`` a parameter-free batch (or instance) normalisation
    and ``gamma``/``beta`` 3x3 convolutions of a shared hidden map computed from the condition ``c`` resized to
    ``h``'s resolution. Unlike concatenating ``c`` to the input of a convolution, whose effect the following
    normalisation can wash out, the label map sets the statistics of every feature map where it is applied, so
    the generated image follows the label's boundaries. ``gamma`` and ``beta`` start at zero: at initialisation
    the block is the plain normalisation.

    Args:
        spatial_dims: 2 or 3.
        channels: channels of the features ``h``.
        condition_channels: channels of the condition (e.g. a one-hot label map).
        hidden_channels: channels of the shared hidden map.
        norm: ``"batch"`` or ``"instance"`` (both without learnable affine parameters).

    Raises:
        ValueError: an unknown ``norm``, or non-positive channel counts.

    Example::

        spade = SPADE(spatial_dims=2, channels=32, condition_channels=4)
        out = spade(torch.randn(2, 32, 16, 16), one_hot_labels_64x64)  # (2, 32, 16, 16)
    """

    def __init__(
        self, spatial_dims: int, channels: int, condition_channels: int, hidden_channels: int = 32, norm: str = "batch"
    ) -> None:
        super().__init__()
        if min(channels, condition_channels, hidden_channels) < 1:
            raise ValueError(
                f"SPADE needs positive channel counts, got channels={channels}, condition_channels="
                f"{condition_channels}, hidden_channels={hidden_channels}."
            )
        if norm not in ("batch", "instance"):
            raise ValueError(f"SPADE norm must be 'batch' or 'instance', got {norm!r}.")
        self.norm = Norm[norm, spatial_dims](channels, affine=False)
        conv = Conv[Conv.CONV, spatial_dims]
        self.shared = nn.Sequential(conv(condition_channels, hidden_channels, 3, padding=1), nn.ReLU())
        self.gamma = conv(hidden_channels, channels, 3, padding=1)
        self.beta = conv(hidden_channels, channels, 3, padding=1)
        for layer in (self.gamma, self.beta):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, h: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """``h`` ``(N, channels, *spatial)``, ``condition`` ``(N, condition_channels, *any spatial)``: resized to
        ``h``'s spatial size by area averaging (a one-hot map becomes class fractions per cell)."""
        if tuple(condition.shape[2:]) != tuple(h.shape[2:]):
            condition = nn.functional.interpolate(condition.to(h.dtype), size=tuple(h.shape[2:]), mode="area")
        hidden = self.shared(condition.to(h.dtype))
        return self.norm(h) * (1 + self.gamma(hidden)) + self.beta(hidden)
