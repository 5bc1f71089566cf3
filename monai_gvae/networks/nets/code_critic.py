"""The code critic ``C(z) -> score`` of alpha-GAN: a Wasserstein critic on latent vectors."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import FullyConnectedNet
from torch import nn

__all__ = ["CodeCritic"]


class CodeCritic(nn.Module):
    """A small MLP that scores latent vectors: prior samples ``z ~ N(0, I)`` (real) against encoded images ``E(x)``
    (fake), the code discriminator of alpha-GAN.

    alpha-GAN (Rosca et al. 2017, "Variational Approaches for Auto-Encoding Generative Adversarial Networks") replaces
    the VAE's KL term by this critic: the encoder is deterministic and learns to make its codes indistinguishable from
    prior samples, so no posterior variance is needed. Here it is trained as a Wasserstein critic with a gradient
    penalty on interpolates between prior and encoded latents (WGAN-GP, Gulrajani et al. 2017), the form Kwon et al.
    2019 ("Generation of 3D Brain MRI Using Auto-Encoding Generative Adversarial Networks", MICCAI) use for 3D brain
    volumes; ``GVAETrainer(objective="alpha_gan")`` trains it. The output is one unbounded score per latent vector
    and there is no normalisation layer (the penalty is computed per sample).

    Args:
        latent_size: length of the latent vectors.
        hidden_channels: units of each hidden layer (default two layers of 512; Kwon et al. use wider layers for a
            1000-d code).
        dropout: dropout probability after each hidden layer (0: none).
        act: activation of the hidden layers, as MONAI's ``Act`` factory takes it (default LeakyReLU(0.2)).

    Raises:
        ValueError: ``latent_size`` is not a positive integer, or a hidden layer has no units.

    Example::

        critic = CodeCritic(latent_size=16)
        scores = critic(torch.randn(4, 16))  # (4, 1)
    """

    def __init__(
        self,
        latent_size: int,
        hidden_channels: Sequence[int] = (512, 512),
        dropout: float = 0.0,
        act: str | tuple = ("leakyrelu", {"negative_slope": 0.2}),
    ) -> None:
        super().__init__()
        if isinstance(latent_size, bool) or not isinstance(latent_size, int) or latent_size < 1:
            raise ValueError(f"latent_size must be a positive integer, got {latent_size!r}.")
        hidden = [int(c) for c in hidden_channels]
        if any(c < 1 for c in hidden):
            raise ValueError(f"hidden_channels must be positive integers, got {list(hidden_channels)!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
        self.latent_size = latent_size
        self.hidden_channels = tuple(hidden)
        self.net = FullyConnectedNet(latent_size, 1, hidden, dropout=dropout or None, act=act)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Return the scores ``(N, 1)`` of latent vectors ``z`` of shape ``(N, latent_size)``.

        Raises:
            ValueError: ``z`` is not a batch of ``latent_size``-vectors.
        """
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != self.latent_size:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"CodeCritic expects latent vectors of shape (N, {self.latent_size}), got {shape}.")
        return self.net(z)
