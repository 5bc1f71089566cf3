"""The Wasserstein critic ``D(x) -> score`` (the paper's discriminator)."""

from __future__ import annotations

import torch
from torch import nn

from monai.networks.layers.factories import Conv

from monai_gvae.networks.blocks.trunks import (
    DownsamplingTrunk,
    as_tuple_norm,
    check_condition,
    check_input,
    final_resolution,
)
from monai_gvae.networks.nets.gvae_encoder import _check_common, _check_condition_channels

__all__ = ["GVAECritic", "CRITIC_HEADS"]

CRITIC_HEADS = ("linear", "patch")
"""``"linear"``: one score from all features; ``"patch"``: a score per patch, averaged (a PatchGAN-style critic)."""


class GVAECritic(nn.Module):
    """WGAN-GP critic: an image (plus label channels) to one unbounded score per sample.

    The paper's Table 2 ends in a 1000-unit linear layer; a Wasserstein critic outputs one scalar, so the
    last layer maps to 1. No batch-statistics normalisation by default, because the gradient penalty is
    computed per sample (Gulrajani et al. 2017); ``norm="batch"`` restores the paper's BatchNorm.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels plus label channels.
        image_size: edge length of the input, a power of two in [16, 1024].
        architecture: ``"resnet"`` or ``"conv"``.
        base_channels: channels at full resolution; doubled per level up to ``max_channels``.
        max_channels: cap on channels.
        num_res_units: residual units per level (``"resnet"`` only).
        norm: normalisation, ``None`` by default (``"instance"``, ``"layer"``-like or ``"batch"`` possible).
        dropout: dropout probability in the blocks.
        condition_channels: channels of a spatial condition concatenated to the input after its channels
            (a conditional critic scores ``(x, c)`` pairs: an image that does not fit its label map is a fake);
            0 for none.
        gradient_checkpointing: recompute each resolution level during backward instead of storing its
            activations (for 3D volumes; same outputs and gradients, about one extra forward pass).
        head: ``"linear"`` (one score from the whole final feature map, the paper's critic) or ``"patch"``: a
            1x1(x1) convolution scores every cell of the final feature map, i.e. every patch of the input within
            the trunk's receptive field (31 pixels for the conv architecture), and the score is their mean
            (Isola et al. 2017's PatchGAN as a Wasserstein critic). A patch critic judges local texture and label
            boundaries many times per image instead of the whole image once, which suits small training sets;
            :meth:`patch_scores` returns the map.

    Raises:
        ValueError: an unknown ``head`` (and, from the trunk, invalid sizes or channels).

    Example::

        critic = GVAECritic(spatial_dims=3, in_channels=1, image_size=32, architecture="conv")
        score = critic(torch.zeros(2, 1, 32, 32, 32))  # (2, 1)
        patch = GVAECritic(spatial_dims=2, in_channels=1, image_size=64, architecture="conv", head="patch")
        patch.patch_scores(torch.zeros(2, 1, 64, 64)).shape  # (2, 1, 4, 4)
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        image_size: int,
        architecture: str = "resnet",
        base_channels: int = 32,
        max_channels: int = 256,
        num_res_units: int = 1,
        norm: str | tuple | None = None,
        dropout: float = 0.0,
        condition_channels: int = 0,
        gradient_checkpointing: bool = False,
        head: str = "linear",
    ) -> None:
        super().__init__()
        if head not in CRITIC_HEADS:
            raise ValueError(f"head must be one of {CRITIC_HEADS}, got {head!r}.")
        _check_common(spatial_dims, in_channels)
        _check_condition_channels(condition_channels)
        self.spatial_dims, self.in_channels, self.image_size = spatial_dims, in_channels, image_size
        self.condition_channels = condition_channels
        self.trunk = DownsamplingTrunk(
            spatial_dims,
            in_channels + condition_channels,
            image_size,
            architecture,
            base_channels,
            max_channels,
            num_res_units,
            as_tuple_norm(norm),
            dropout,
            gradient_checkpointing,
        )
        self.head = head
        if head == "patch":
            final_channels = self.trunk.out_features // final_resolution(image_size, architecture) ** spatial_dims
            self.score = Conv[Conv.CONV, spatial_dims](final_channels, 1, kernel_size=1)
        else:
            self.score = nn.Linear(self.trunk.out_features, 1)

    def _inputs(self, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        name = type(self).__name__
        check_input(x, self.spatial_dims, self.in_channels, self.image_size, name)
        check_condition(condition, x.shape[0], self.spatial_dims, self.condition_channels, self.image_size, name)
        return x if condition is None else torch.cat([x, condition.to(x.dtype)], dim=1)

    def patch_scores(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Scores per patch ``(N, 1, *final map)`` of a ``head="patch"`` critic.

        Raises:
            ValueError: the critic has the linear head.
        """
        if self.head != "patch":
            raise ValueError("patch_scores needs a critic built with head='patch'.")
        return self.score(self.trunk.run_body(self._inputs(x, condition)))

    @property
    def num_feature_layers(self) -> int:
        """The number of layers :meth:`features` can read: the trunk's resolution levels (4 for ``"conv"``)."""
        return self.trunk.num_levels

    def features(self, x: torch.Tensor, condition: torch.Tensor | None = None, layer: int = -1) -> torch.Tensor:
        """The critic's intermediate feature map after resolution level ``layer`` (the same computation as the
        first part of :meth:`forward`, whose outputs do not change): what VAE-GAN's feature-matching reconstruction
        loss compares (:class:`~monai_gvae.losses.FeatureMatchingLoss`, Larsen et al. 2016).

        Args:
            x: images ``(N, in_channels, *spatial)``.
            condition: the condition of a conditional critic, else ``None``.
            layer: the level, counted from the input (0: the first, full-resolution level) or, when negative, from
                the last (-1, the default: the deepest feature map, the one the score is computed from).

        Returns:
            the feature map ``(N, C_layer, *spatial_layer)``.

        Raises:
            ValueError: ``layer`` is outside ``[-num_feature_layers, num_feature_layers)``, or bad inputs.

        Example::

            critic = GVAECritic(spatial_dims=2, in_channels=1, image_size=32, architecture="conv")
            critic.features(torch.zeros(2, 1, 32, 32), layer=1).shape  # (2, 64, 8, 8) with base_channels=32
        """
        n = self.num_feature_layers
        if isinstance(layer, bool) or not isinstance(layer, int) or not -n <= layer < n:
            raise ValueError(f"layer must be an integer in [{-n}, {n}) (the critic has {n} feature layers), got {layer!r}.")
        return self.trunk.run_levels(self._inputs(x, condition), layer % n + 1)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Return critic scores of shape ``(N, 1)``; ``condition`` only for a conditional critic."""
        if self.head == "patch":
            return self.patch_scores(x, condition).flatten(1).mean(1, keepdim=True)
        return self.score(self.trunk(self._inputs(x, condition)))
