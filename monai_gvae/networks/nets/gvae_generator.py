"""The GVAE generator ``G(z) -> x`` (the VAE decoder and the GAN generator at once)."""

from __future__ import annotations

import torch
from torch import nn

from monai_gvae.networks.blocks.trunks import UpsamplingTrunk, as_tuple_norm, check_condition, check_image_size
from monai_gvae.networks.nets.gvae_encoder import _check_common, _check_condition_channels

__all__ = ["GVAEGenerator"]


class GVAEGenerator(nn.Module):
    """Generator of the GVAE: a latent vector to an image (plus label channels) in [-1, 1] (``tanh``).

    Args:
        spatial_dims: 2 or 3.
        out_channels: image channels plus label channels.
        image_size: edge length of the output, a power of two in [16, 1024].
        latent_size: length of the latent vector.
        architecture: ``"resnet"`` (paper Table 1 generalised) or ``"conv"`` (mirror of four stride-2 convs).
        base_channels: channels at full resolution; doubled per level up to ``max_channels``.
        max_channels: cap on channels.
        num_res_units: residual units per level (``"resnet"`` only).
        norm: normalisation (MONAI name or ``(name, kwargs)``).
        dropout: dropout probability in the blocks (the paper's Table 1 uses 0.3; default 0 here because
            dropout makes the decoder stochastic at training time and slowed convergence in our runs).
        condition_channels: channels of a spatial condition ``c`` (e.g. a one-hot label map) so that
            ``G(z, c)`` follows it: resized and concatenated at every level, see
            :class:`~monai_gvae.networks.blocks.trunks.UpsamplingTrunk`; 0 for none.
        gradient_checkpointing: recompute each resolution level during backward instead of storing its
            activations (for 3D volumes; same outputs and gradients, about one extra forward pass).
        upsample: ``"transposed"`` (stride-2 transposed convolutions), ``"nearest"`` (nearest-neighbour
            upsampling then a 3x3 convolution: no checkerboard artefacts, 4x the convolution FLOPs) or
            ``"linear"`` (bi/trilinear upsampling then a 3x3 convolution; conv architecture only); ``None``
            for the architecture's own (conv: transposed; resnet: nearest, its only mode).
        condition_mode: how a conditional generator takes its condition: ``"concat"`` (concatenated at every
            level) or ``"spade"`` (spatially-adaptive normalisation, :class:`~monai_gvae.networks.blocks.SPADE`,
            sharper label boundaries); see :class:`~monai_gvae.networks.blocks.trunks.UpsamplingTrunk`.

    Example::

        gen = GVAEGenerator(spatial_dims=3, out_channels=1, image_size=32, latent_size=16, architecture="conv")
        x = gen(torch.randn(2, 16))  # (2, 1, 32, 32, 32)
    """

    def __init__(
        self,
        spatial_dims: int,
        out_channels: int,
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
        upsample: str | None = None,
        condition_mode: str = "concat",
    ) -> None:
        super().__init__()
        _check_common(spatial_dims, out_channels, latent_size)
        _check_condition_channels(condition_channels)
        check_image_size(image_size, architecture)
        self.spatial_dims, self.out_channels, self.image_size = spatial_dims, out_channels, image_size
        self.latent_size = latent_size
        self.condition_channels = condition_channels
        self.trunk = UpsamplingTrunk(
            spatial_dims,
            latent_size,
            out_channels,
            image_size,
            architecture,
            base_channels,
            max_channels,
            num_res_units,
            as_tuple_norm(norm),
            dropout,
            condition_channels,
            gradient_checkpointing,
            upsample,
            condition_mode,
        )

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Decode ``z`` of shape ``(N, latent_size)`` to ``(N, out_channels, S, S[, S])`` in [-1, 1].

        ``condition`` ``(N, condition_channels, S, S[, S])``, only for a conditional generator.
        """
        if z.ndim != 2 or z.shape[1] != self.latent_size:
            raise ValueError(f"GVAEGenerator expects latents of shape (N, {self.latent_size}), got {tuple(z.shape)}.")
        check_condition(condition, z.shape[0], self.spatial_dims, self.condition_channels, self.image_size,
                        type(self).__name__)
        return self.trunk(z, condition)
