"""``GVAEGeneratorWrapper``: latent -> image, the part of a GVAE that bundles verify and export."""

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from monai_gvae.networks.nets.gvae import GVAE

__all__ = ["GVAEGeneratorWrapper"]

# configuration entries that change the generator's weights or output (the encoder's clamp does not)
_GENERATOR_CONFIG = (
    "spatial_dims", "in_channels", "image_size", "latent_size", "architecture", "base_channels", "max_channels",
    "num_res_units", "norm", "dropout", "upsample",
)


class GVAEGeneratorWrapper(nn.Module):
    """The generator of a :class:`GVAE` as a stand-alone ``latent (N, L) -> image (N, C, S, S[, S])`` network.

    MONAI's ``verify_net_in_out`` and ``ckpt_export`` need a network with one tensor input and one tensor output;
    a ``GVAE`` returns ``(recon, mu, logvar)`` from an image. This wrapper shares the GVAE generator's trunk
    (parameters ``trunk.*``) and loads a whole ``GVAE`` state dict, as saved by ``CheckpointSaver`` under
    ``"gvae"`` (``generator.trunk.*`` is mapped to ``trunk.*``; the encoder's weights are skipped) after checking
    the generator configuration stored in the checkpoint against its own. It compiles with ``torch.jit.script``.

    Args:
        network: the ``GVAE`` whose generator is wrapped (shared, not copied); or ``None`` with ``gvae_kwargs``.
        gvae_kwargs: arguments of :class:`GVAE` when ``network`` is ``None``.

    Example::

        gen = GVAEGeneratorWrapper(GVAE(spatial_dims=2, in_channels=1, image_size=32, latent_size=16))
        gen.load_state_dict(torch.load("models/model.pt")["gvae"])
        images = gen(torch.randn(4, 16))  # (4, 1, 32, 32) in [-1, 1]
    """

    # class-level annotations: TorchScript types these attributes from them (no `from __future__ import annotations`
    # in this module, which would turn them into strings TorchScript cannot read)
    latent_size: int
    start_shape: list[int]

    def __init__(self, network: GVAE | None = None, **gvae_kwargs: Any) -> None:
        super().__init__()
        if network is None:
            network = GVAE(**gvae_kwargs)
        elif gvae_kwargs:
            raise ValueError("give either a GVAE network or GVAE arguments, not both.")
        if getattr(network, "condition_channels", 0):
            raise ValueError(
                "GVAEGeneratorWrapper exports latent -> image generators; a label-conditioned GVAE also needs its "
                "condition (label map), which this one-input wrapper cannot take."
            )
        # the generator's trunk itself (GVAEGenerator.forward formats errors in ways TorchScript cannot compile)
        self.trunk = network.generator.trunk
        self.gvae_config = dict(network.config)
        self.latent_size = int(network.latent_size)
        self.start_shape = [int(s) for s in network.generator.trunk.start_shape]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] from latents ``(N, latent_size)``.

        The generator's trunk is called step by step (not ``GVAEGenerator.forward``) so that ``torch.jit.script``
        compiles it: ``ckpt_export`` scripts by default.
        """
        if z.dim() != 2 or z.shape[1] != self.latent_size:
            raise ValueError("GVAEGeneratorWrapper expects latents of shape (N, latent_size)")
        h = self.trunk.project(z).view([z.shape[0]] + self.start_shape)
        return torch.tanh(self.trunk.body(h))

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """Load this wrapper's own state dict, or a whole ``GVAE`` state dict (only ``generator.*`` is used).

        Raises:
            ValueError: the GVAE state dict was saved for a different generator configuration, or holds no
                generator weights.
        """
        extra = state_dict.get("_extra_state")
        if isinstance(extra, dict) and "gvae_config" in extra:
            saved = extra["gvae_config"]
            mismatched = {
                k: (saved.get(k), self.gvae_config.get(k)) for k in _GENERATOR_CONFIG if saved.get(k) != self.gvae_config.get(k)
            }
            if mismatched:
                raise ValueError(f"checkpoint was saved for a different generator: {mismatched} (saved, this).")
        prefix = "generator.trunk."
        own = {k: v for k, v in state_dict.items() if k.startswith("trunk.")}
        own.update({"trunk." + k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)})
        if not own:
            raise ValueError(f"no generator weights ('generator.*') in the state dict; keys: {sorted(state_dict)[:5]}...")
        return super().load_state_dict(own, strict=strict, assign=assign)
