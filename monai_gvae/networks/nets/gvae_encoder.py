"""The GVAE encoder ``E(x) -> (mu, logvar)``."""

from __future__ import annotations

import torch
from torch import nn

from monai_gvae.networks.blocks.trunks import DownsamplingTrunk, as_tuple_norm, check_condition, check_input

__all__ = ["GVAEEncoder"]


class GVAEEncoder(nn.Module):
    """Encoder of the GVAE: an image (plus label channels) to the mean and log-variance of ``q(z|x)``.

    The body mirrors the critic (paper Table 2 for ``"resnet"``, four stride-2 convolutions for ``"conv"``)
    with two linear heads.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels plus label channels.
        image_size: edge length of the square/cubic input, a power of two in [16, 1024].
        latent_size: length of the latent vector (the paper's best on MNIST: 1000).
        architecture: ``"resnet"`` or ``"conv"``.
        base_channels: channels at full resolution; doubled per level up to ``max_channels``.
        max_channels: cap on channels.
        num_res_units: residual units per level (``"resnet"`` only).
        norm: normalisation (MONAI name or ``(name, kwargs)``); the paper uses BatchNorm.
        dropout: dropout probability in the blocks.
        condition_channels: channels of a spatial condition (e.g. a one-hot label map) concatenated to the
            input after its channels, so that ``q(z | x, c)``; 0 for none.
        gradient_checkpointing: recompute each resolution level during backward instead of storing its
            activations (for 3D volumes; same outputs and gradients, about one extra forward pass).

    Raises:
        ValueError: unsupported ``spatial_dims``, ``image_size`` or ``architecture``.

    Example::

        enc = GVAEEncoder(spatial_dims=2, in_channels=1, image_size=32, latent_size=16)
        mu, logvar = enc(torch.zeros(4, 1, 32, 32))  # each (4, 16)
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        image_size: int,
        latent_size: int = 128,
        architecture: str = "resnet",
        base_channels: int = 32,
        max_channels: int = 256,
        num_res_units: int = 1,
        norm: str | tuple | None = "batch",
        dropout: float = 0.0,
        condition_channels: int = 0,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        _check_common(spatial_dims, in_channels, latent_size)
        _check_condition_channels(condition_channels)
        self.spatial_dims, self.in_channels, self.image_size = spatial_dims, in_channels, image_size
        self.latent_size = latent_size
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
        self.mu = nn.Linear(self.trunk.out_features, latent_size)
        self.logvar = nn.Linear(self.trunk.out_features, latent_size)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(mu, logvar)``, each ``(N, latent_size)``; ``condition`` only for a conditional encoder."""
        name = type(self).__name__
        check_input(x, self.spatial_dims, self.in_channels, self.image_size, name)
        check_condition(condition, x.shape[0], self.spatial_dims, self.condition_channels, self.image_size, name)
        h = self.trunk(x if condition is None else torch.cat([x, condition.to(x.dtype)], dim=1))
        return self.mu(h), self.logvar(h)


def _check_common(spatial_dims: int, in_channels: int, latent_size: int | None = None) -> None:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}.")
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}.")
    if latent_size is not None and (not isinstance(latent_size, int) or latent_size < 1):
        raise ValueError(f"latent_size must be a positive integer, got {latent_size!r}.")


def _check_condition_channels(condition_channels: int) -> None:
    if not isinstance(condition_channels, int) or condition_channels < 0:
        raise ValueError(f"condition_channels must be an integer >= 0, got {condition_channels!r}.")
