"""``GVAE``: encoder + generator as one inference model, with its configuration kept in its state dict."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from monai_gvae.networks.nets.gvae_encoder import GVAEEncoder
from monai_gvae.networks.blocks.trunks import check_condition_mode, check_upsample
from monai_gvae.networks.nets.gvae_generator import GVAEGenerator

__all__ = ["GVAE", "reparameterize"]

# Bounds on log-variance: exp(20 / 2) ~ 2e4 and exp(-30 / 2) ~ 3e-7 are far outside any useful posterior,
# and clamping there keeps exp() finite when a batch makes the encoder's head spike.
LOGVAR_CLAMP = (-30.0, 20.0)


def reparameterize(
    mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw ``z = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)`` (the reparameterisation trick)."""
    eps = torch.randn(mu.shape, generator=generator, device=generator.device if generator else mu.device)
    return mu + torch.exp(0.5 * logvar) * eps.to(device=mu.device, dtype=mu.dtype)


class GVAE(nn.Module):
    """Generative Variational Autoencoder: a VAE encoder and a generator trained against a WGAN-GP critic.

    The critic is a separate network (:class:`GVAECritic`) used only in training. Channels are the image
    channels followed by label channels for joint image+label synthesis; ``image_channels`` and
    ``num_classes`` record that split so that loaders, transforms and writers can decode samples.

    The constructor arguments are stored in the module's extra state, so every checkpoint of a ``GVAE``
    (``state_dict()``) carries what is needed to rebuild it: see :func:`monai_gvae.networks.load_gvae`.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels plus label channels (output channels are the same).
        image_size: edge length, a power of two in [16, 1024].
        latent_size: length of the latent vector (the paper's best on MNIST: 1000).
        architecture: ``"resnet"`` or ``"conv"``.
        base_channels: channels at full resolution.
        max_channels: cap on channels.
        num_res_units: residual units per level (``"resnet"`` only).
        norm: normalisation of encoder and generator (the paper: BatchNorm).
        dropout: dropout in the blocks.
        image_channels: how many leading channels are image; the rest are label channels. Defaults to all.
        num_classes: label classes encoded in the label channels (one-hot: ``num_classes`` channels;
            one foreground channel: 2 classes). ``None`` without labels.
        logvar_clamp: ``(min, max)`` applied to the encoder's log-variance.
        condition_channels: channels of a spatial condition ``c`` for a label-conditioned GVAE (0: none).
            Encoder ``q(z | x, c)`` and generator ``G(z, c)`` take it by concatenation (the generator at every
            level); ``encode``/``decode``/``forward``/``sample`` then need ``condition``. With a one-hot label
            map as condition (``condition_channels = num_classes``, ``in_channels = image_channels``), the GVAE
            synthesises images for given label maps, which are exact by construction. ``num_classes`` then
            records the condition's classes.
        gradient_checkpointing: recompute each resolution level of encoder and generator during backward
            instead of storing its activations (3D volumes). A run-time setting: not stored in the configuration
            (a checkpoint loads the same either way); switch it later with :meth:`set_gradient_checkpointing`.
        upsample: the generator's upsampling, ``"transposed"``, ``"nearest"`` or ``"linear"`` (upsampling then a
            3x3 convolution: no checkerboard artefacts, 4x the generator's convolution FLOPs); ``None`` for the
            architecture's own (conv: transposed; resnet: nearest, its only mode). Stored in the configuration.
        condition_mode: a conditional generator's use of the condition: ``"concat"`` (default) or ``"spade"``
            (spatially-adaptive normalisation by the label map: sharper, label-faithful images). Stored in the
            configuration when not the default.

    Example::

        model = GVAE(spatial_dims=2, in_channels=2, image_size=64, latent_size=128, architecture="resnet")
        recon, mu, logvar = model(torch.zeros(4, 2, 64, 64))
        samples = model.sample(8, generator=torch.Generator().manual_seed(0))

        # label-conditioned: an image (1 channel) for a one-hot 4-class label map
        cond = GVAE(spatial_dims=2, in_channels=1, image_size=64, num_classes=4, condition_channels=4)
        images = cond.sample(2, condition=torch.nn.functional.one_hot(labels, 4).movedim(-1, 1) * 2.0 - 1)
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
        image_channels: int | None = None,
        num_classes: int | None = None,
        logvar_clamp: tuple[float, float] = LOGVAR_CLAMP,
        condition_channels: int = 0,
        gradient_checkpointing: bool = False,
        upsample: str | None = None,
        condition_mode: str = "concat",
    ) -> None:
        super().__init__()
        upsample = check_upsample(upsample, architecture)
        check_condition_mode(condition_mode)
        image_channels = in_channels if image_channels is None else image_channels
        if not 1 <= image_channels <= in_channels:
            raise ValueError(f"image_channels must be in [1, in_channels={in_channels}], got {image_channels}.")
        label_channels = in_channels - image_channels
        if label_channels and num_classes is None:
            raise ValueError(f"{label_channels} label channel(s) given but num_classes is None.")
        if label_channels and label_channels not in (1, num_classes):
            raise ValueError(
                f"label channels ({label_channels}) must be 1 (foreground) or num_classes ({num_classes}) (one-hot)."
            )
        if not isinstance(condition_channels, int) or condition_channels < 0:
            raise ValueError(f"condition_channels must be an integer >= 0, got {condition_channels!r}.")
        self.config: dict[str, Any] = {
            "spatial_dims": spatial_dims,
            "in_channels": in_channels,
            "image_size": image_size,
            "latent_size": latent_size,
            "architecture": architecture,
            "base_channels": base_channels,
            "max_channels": max_channels,
            "num_res_units": num_res_units,
            "norm": list(norm) if isinstance(norm, tuple) else norm,
            "dropout": float(dropout),
            "image_channels": image_channels,
            "num_classes": num_classes if (label_channels or condition_channels) else None,
            "logvar_clamp": [float(logvar_clamp[0]), float(logvar_clamp[1])],
        }
        if condition_channels:
            # stored only when used, so checkpoints of unconditional models keep their earlier configuration
            self.config["condition_channels"] = condition_channels
        if upsample != check_upsample(None, architecture):
            self.config["upsample"] = upsample  # likewise stored only when not the architecture's default
        if condition_mode != "concat":
            self.config["condition_mode"] = condition_mode  # likewise
        shared = ("spatial_dims", "image_size", "latent_size", "architecture", "base_channels", "max_channels",
                  "num_res_units", "dropout")
        common = {k: self.config[k] for k in shared}
        common["norm"] = norm
        self.encoder = GVAEEncoder(in_channels=in_channels, condition_channels=condition_channels,
                                   gradient_checkpointing=gradient_checkpointing, **common)
        self.generator = GVAEGenerator(out_channels=in_channels, condition_channels=condition_channels,
                                       gradient_checkpointing=gradient_checkpointing, upsample=upsample,
                                       condition_mode=condition_mode, **common)

    def set_gradient_checkpointing(self, enabled: bool = True) -> "GVAE":
        """Switch per-level gradient checkpointing of encoder and generator on or off; returns ``self``."""
        self.encoder.trunk.gradient_checkpointing = bool(enabled)
        self.generator.trunk.gradient_checkpointing = bool(enabled)
        return self

    # --- properties read by trainers, transforms and writers
    @property
    def spatial_dims(self) -> int:
        return self.config["spatial_dims"]

    @property
    def latent_size(self) -> int:
        return self.config["latent_size"]

    @property
    def image_size(self) -> int:
        return self.config["image_size"]

    @property
    def image_channels(self) -> int:
        return self.config["image_channels"]

    @property
    def label_channels(self) -> int:
        return self.config["in_channels"] - self.config["image_channels"]

    @property
    def num_classes(self) -> int | None:
        return self.config["num_classes"]

    @property
    def condition_channels(self) -> int:
        """Channels of the condition of a label-conditioned GVAE (0 for an unconditional one)."""
        return self.config.get("condition_channels", 0)

    @property
    def is_conditional(self) -> bool:
        return self.condition_channels > 0

    # --- the VAE interface
    def encode(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(mu, logvar)`` of ``q(z|x[, c])``, log-variance clamped to ``logvar_clamp``."""
        mu, logvar = self.encoder(x, condition)
        low, high = self.config["logvar_clamp"]
        return mu, logvar.clamp(low, high)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``z = mu + exp(logvar / 2) * eps``; see :func:`reparameterize`."""
        return reparameterize(mu, logvar, generator)

    def decode(self, z: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Generate images in [-1, 1] from latents ``(N, latent_size)`` (and a condition, when conditional)."""
        return self.generator(z, condition)

    def forward(
        self, x: torch.Tensor, condition: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(reconstruction, mu, logvar)`` for a batch ``x`` in [-1, 1] (and its condition)."""
        mu, logvar = self.encode(x, condition)
        return self.decode(self.reparameterize(mu, logvar), condition), mu, logvar

    def sample(
        self,
        num_samples: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decode ``num_samples`` latents drawn from the prior ``N(0, I)``.

        Args:
            num_samples: how many samples.
            generator: a seeded ``torch.Generator`` for reproducible samples (any device: the latents are
                drawn on its device, then moved to the model's).
            device: device of the output; defaults to the model's.
            condition: ``(num_samples, condition_channels, *spatial)`` for a conditional GVAE (one condition
                per sample), else ``None``.

        Returns:
            tensor ``(num_samples, in_channels, S, S[, S])`` in [-1, 1]. The caller chooses train/eval mode;
            use ``model.eval()`` and ``torch.no_grad()`` for synthesis.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
        model_device = next(self.parameters()).device
        draw_device = generator.device if generator is not None else model_device
        z = torch.randn(num_samples, self.latent_size, generator=generator, device=draw_device)
        if condition is not None:
            condition = condition.to(model_device)
        out = self.decode(z.to(model_device), condition)
        return out if device is None else out.to(device)

    # --- configuration travels with the weights
    def get_extra_state(self) -> dict[str, Any]:
        return {"gvae_config": dict(self.config), "format_version": 1}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        saved = state.get("gvae_config", {})
        mismatched = {k: (v, self.config.get(k)) for k, v in saved.items() if self.config.get(k) != v}
        if mismatched:
            raise ValueError(f"checkpoint was saved for a different GVAE configuration: {mismatched} (saved, this).")

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, Any]) -> "GVAE":
        """Rebuild a ``GVAE`` from its ``state_dict()`` alone (the configuration is inside)."""
        extra = state_dict.get("_extra_state")
        if not isinstance(extra, dict) or "gvae_config" not in extra:
            raise ValueError("state dict carries no GVAE configuration ('_extra_state'); was it saved by a GVAE?")
        config = dict(extra["gvae_config"])
        config["logvar_clamp"] = tuple(config["logvar_clamp"])
        model = cls(**config)
        model.load_state_dict(state_dict)
        return model

