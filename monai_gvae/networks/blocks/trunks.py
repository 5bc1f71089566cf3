"""Convolutional trunks shared by the GVAE encoder, generator and critic.

Two families are built here:

* ``"resnet"`` -- the paper's Tables 1-2 generalised to any power-of-two size: a residual unit per level,
  average pooling (down) or nearest upsampling (up) between levels, from the image size down to a
  ``4 x 4`` (or ``4 x 4 x 4``) feature map. The paper's 128x128 generator starts from ``S/4``; going
  down to 4 instead keeps the linear layer between latent and features small at any size (a linear
  layer from a 1000-d latent to ``256 x 32 x 32`` alone would hold 262M weights).
* ``"conv"`` -- the paper's 3D variant (section 4.2): four stride-2 ``3x3(x3)`` convolutions, each
  followed by normalisation and LeakyReLU, mirrored by four stride-2 transposed convolutions.

Both are built from MONAI blocks (``Convolution``, ``ResidualUnit``, ``UpSample``).

Both trunks take ``gradient_checkpointing=True`` to trade compute for memory (3D volumes): each resolution level
runs under :func:`torch.utils.checkpoint.checkpoint`, so only the level inputs are kept for backward and the rest
is recomputed. Outputs, gradients and normalisation running statistics are the same as without it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution, ResidualUnit, UpSample
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.utils.checkpoint import checkpoint

from monai_gvae.networks.blocks.spade import SPADE

__all__ = [
    "DownsamplingTrunk",
    "UpsamplingTrunk",
    "channel_schedule",
    "check_image_size",
    "check_condition",
    "resize_condition",
    "ARCHITECTURES",
    "UPSAMPLE_MODES",
    "check_upsample",
    "CONDITION_MODES",
    "check_condition_mode",
]

ARCHITECTURES = ("resnet", "conv")
# generator upsampling: "transposed" (stride-2 transposed convolutions, the conv architecture's default) or
# "nearest" (nearest-neighbour upsampling then a 3x3 convolution: no checkerboard artefacts, Odena et al. 2016;
# what the resnet architecture always does) or "linear" (bilinear/trilinear upsampling then a 3x3 convolution:
# no checkerboard and none of the blocky 2x2 steps that nearest upsampling leaves; conv architecture only)
UPSAMPLE_MODES = ("transposed", "nearest", "linear")
# how a conditional generator takes its label map: "concat" (concatenated to the input of every upsampling
# convolution) or "spade" (spatially-adaptive normalisation after it, SPADE)
CONDITION_MODES = ("concat", "spade")
LEAKY_RELU = ("leakyrelu", {"negative_slope": 0.2, "inplace": False})
MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 1024
RESNET_MIN_RESOLUTION = 4
CONV_NUM_LAYERS = 4


def check_image_size(image_size: int, architecture: str) -> None:
    """Raise ``ValueError`` unless ``image_size`` is a power of two the architecture can take.

    Args:
        image_size: edge length of the square/cubic image.
        architecture: ``"resnet"`` or ``"conv"``.

    Raises:
        ValueError: unknown architecture, or a size that is not a power of two in [16, 1024].
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}.")
    if (
        not isinstance(image_size, int)
        or image_size < MIN_IMAGE_SIZE
        or image_size > MAX_IMAGE_SIZE
        or image_size & (image_size - 1)
    ):
        raise ValueError(
            f"image_size must be a power of two between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} for the "
            f"{architecture!r} architecture, got {image_size!r} (pad or resize the images, e.g. 28 -> 32)."
        )


def check_upsample(upsample: str | None, architecture: str) -> str:
    """The generator's upsampling mode: ``None`` gives the architecture's own ("transposed" for conv, "nearest"
    for resnet).

    Raises:
        ValueError: an unknown mode, or a mode other than "nearest" for the resnet architecture.
    """
    if upsample is None:
        return "nearest" if architecture == "resnet" else "transposed"
    if upsample not in UPSAMPLE_MODES:
        raise ValueError(f"upsample must be one of {UPSAMPLE_MODES} or None, got {upsample!r}.")
    if architecture == "resnet" and upsample != "nearest":
        raise ValueError("the resnet architecture upsamples with 'nearest' (upsampling then convolution) only.")
    return upsample


def _interpolating_upsample(spatial_dims: int, upsample: str) -> nn.Module:
    """A factor-2 upsampling without weights: nearest neighbour, or (bi/tri)linear for ``"linear"``."""
    if upsample == "linear":
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[spatial_dims]
        return UpSample(spatial_dims, scale_factor=2, mode="nontrainable", interp_mode=mode, align_corners=False)
    return UpSample(spatial_dims, scale_factor=2, mode="nontrainable", interp_mode="nearest", align_corners=None)


def check_condition_mode(condition_mode: str) -> str:
    """Raise ``ValueError`` for a condition mode other than :data:`CONDITION_MODES`; return it."""
    if condition_mode not in CONDITION_MODES:
        raise ValueError(f"condition_mode must be one of {CONDITION_MODES}, got {condition_mode!r}.")
    return condition_mode


class SPADEConvolution(nn.Module):
    """An upsampling level's convolution for ``condition_mode="spade"``: convolution, then :class:`SPADE` of
    the label map (in place of the normalisation), dropout and LeakyReLU."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        condition_channels: int,
        strides: int = 1,
        is_transposed: bool = False,
        dropout: float = 0.0,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        self.conv = Convolution(spatial_dims, in_channels, out_channels, strides=strides, kernel_size=3,
                                is_transposed=is_transposed, conv_only=True)
        self.spade = SPADE(spatial_dims, out_channels, condition_channels, norm=norm)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.act = nn.LeakyReLU(LEAKY_RELU[1]["negative_slope"])

    def forward(self, h: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(self.spade(self.conv(h), condition)))


def channel_schedule(image_size: int, architecture: str, base_channels: int, max_channels: int) -> list[int]:
    """Channels per level, from full resolution down to the smallest feature map.

    The number of channels doubles each time the resolution halves, capped at ``max_channels``.

    Returns:
        list of channel counts, one per level (``resnet``: log2(size) - 1 levels; ``conv``: 4 layers).
    """
    check_image_size(image_size, architecture)
    if architecture == "resnet":
        num_levels = int(math.log2(image_size // RESNET_MIN_RESOLUTION)) + 1
    else:
        num_levels = CONV_NUM_LAYERS
    return [min(max_channels, base_channels * 2**i) for i in range(num_levels)]


def final_resolution(image_size: int, architecture: str) -> int:
    """Edge length of the smallest feature map (where the linear layers connect)."""
    return RESNET_MIN_RESOLUTION if architecture == "resnet" else image_size // 2**CONV_NUM_LAYERS


class _CheckpointedBody(nn.Module):
    """Base of the trunks: runs ``self.body`` (an ``nn.Sequential``) level by level, optionally checkpointed.

    ``self.levels`` holds the ``(start, stop)`` indices of each resolution level in ``self.body``; the state dict
    is the same with or without checkpointing. The checkpointed path is left out of TorchScript (exported
    networks run the plain path, as inference does).
    """

    def run_body(self, h: torch.Tensor) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return self._checkpointed_body(h)
        return self.body(h)

    @torch.jit.unused
    def _checkpointed_body(self, h):  # no annotations: TorchScript types the stub it compiles in its place
        for start, stop in self.levels:
            h = _checkpointed_segment(self.body[start:stop], h)
        return h

    @property
    def num_levels(self) -> int:
        """The number of resolution levels of the body (what :meth:`run_levels` counts)."""
        return len(self.levels)

    @torch.jit.unused
    def run_levels(self, h: torch.Tensor, num_levels: int) -> torch.Tensor:
        """The feature map after the first ``num_levels`` resolution levels of the body (checkpointed as
        :meth:`run_body` when ``gradient_checkpointing``): intermediate features, e.g. for a feature-matching loss.

        Raises:
            ValueError: ``num_levels`` is not in ``[1, self.num_levels]``.
        """
        if isinstance(num_levels, bool) or not isinstance(num_levels, int) or not 1 <= num_levels <= self.num_levels:
            raise ValueError(f"num_levels must be an integer in [1, {self.num_levels}], got {num_levels!r}.")
        if self.gradient_checkpointing and torch.is_grad_enabled():
            for start, stop in self.levels[:num_levels]:
                h = _checkpointed_segment(self.body[start:stop], h)
            return h
        return self.body[: self.levels[num_levels - 1][1]](h)


def _checkpointed_segment(segment: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """``segment(h)`` under activation checkpointing, normalisation running statistics updated once."""
    keep_stats = _KeepRunningStats(segment)
    return checkpoint(segment, h, use_reentrant=False, context_fn=lambda ks=keep_stats: (contextlib.nullcontext(), ks))


class _KeepRunningStats:
    """Keeps normalisation running statistics out of a checkpoint's recomputation, which would update them a
    second time: the recomputation writes into scratch copies and the real buffers are put back untouched (not
    even their autograd version changes, so graphs that saved them stay valid). Re-entrant: a recomputation can
    run more than once (the double backward of a gradient penalty)."""

    NAMES = ("running_mean", "running_var", "num_batches_tracked")

    def __init__(self, module: nn.Module) -> None:
        self.norms = [m for m in module.modules() if isinstance(m, _NormBase) and m.track_running_stats]
        self.saved: list[list[tuple[nn.Module, str, torch.Tensor]]] = []

    def __enter__(self) -> None:
        originals = []
        for m in self.norms:
            for name in self.NAMES:
                buf = getattr(m, name, None)
                if buf is not None:
                    originals.append((m, name, buf))
                    setattr(m, name, buf.detach().clone())
        self.saved.append(originals)

    def __exit__(self, *exc: object) -> None:
        for m, name, buf in self.saved.pop():
            setattr(m, name, buf)


def _level_bounds(sizes: list[int]) -> list[tuple[int, int]]:
    """``(start, stop)`` of consecutive runs of ``sizes`` layers, empty runs dropped."""
    bounds, start = [], 0
    for n in sizes:
        if n:
            bounds.append((start, start + n))
        start += n
    return bounds


class DownsamplingTrunk(_CheckpointedBody):
    """Image -> flattened feature vector (shared body of encoder and critic).

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the input (image plus label channels).
        image_size: edge length of the input.
        architecture: ``"resnet"`` or ``"conv"``.
        base_channels: channels at full resolution.
        max_channels: cap on the channel count.
        num_res_units: residual units per level (``resnet`` only).
        norm: MONAI normalisation name/tuple, or ``None``.
        dropout: dropout probability inside the blocks.
        gradient_checkpointing: recompute each level in backward instead of keeping its activations (saves
            memory on 3D volumes, costs about one extra forward). Only active while gradients are enabled.
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
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        channels = channel_schedule(image_size, architecture, base_channels, max_channels)
        layers: list[nn.Module] = []
        level_sizes: list[int] = []
        if architecture == "resnet":
            layers.append(Convolution(spatial_dims, in_channels, channels[0], kernel_size=3, act=LEAKY_RELU, norm=None))
            for level, ch in enumerate(channels[:-1]):
                for _ in range(num_res_units):
                    layers.append(_residual_unit(spatial_dims, ch, norm, dropout))
                layers.append(_avg_pool(spatial_dims))
                layers.append(Convolution(spatial_dims, ch, channels[level + 1], kernel_size=1, conv_only=True))
                # the stem convolution belongs to the first level
                level_sizes.append(num_res_units + 2 + (1 if level == 0 else 0))
            for _ in range(num_res_units):
                layers.append(_residual_unit(spatial_dims, channels[-1], norm, dropout))
            level_sizes.append(num_res_units)
        else:
            prev = in_channels
            for ch in channels:
                layers.append(
                    Convolution(
                        spatial_dims, prev, ch, strides=2, kernel_size=3, act=LEAKY_RELU, norm=norm, dropout=dropout
                    )
                )
                level_sizes.append(1)
                prev = ch
        self.body = nn.Sequential(*layers)
        self.levels = _level_bounds(level_sizes)
        self.gradient_checkpointing = bool(gradient_checkpointing)
        self.out_features = channels[-1] * final_resolution(image_size, architecture) ** spatial_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.run_body(x), 1)


class UpsamplingTrunk(_CheckpointedBody):
    """Latent vector -> image in [-1, 1] (the generator body), mirroring :class:`DownsamplingTrunk`.

    Args:
        spatial_dims: 2 or 3.
        latent_size: length of the latent vector.
        out_channels: channels of the generated image (image plus label channels).
        image_size: edge length of the output.
        architecture: ``"resnet"`` or ``"conv"``.
        base_channels: channels at full resolution.
        max_channels: cap on the channel count.
        num_res_units: residual units per level (``resnet`` only).
        norm: MONAI normalisation name/tuple, or ``None``.
        dropout: dropout probability inside the blocks (the paper uses 0.3).
        condition_channels: channels of a spatial condition (e.g. a one-hot label map) the output must follow;
            0 for none. The condition, resized to each level's resolution (area interpolation), is concatenated
            to the features entering every convolution that follows an upsampling step (``"resnet"``) or to
            every transposed convolution (``"conv"``), and a residual head at full resolution refines the
            output from ``[output, condition]``. The condition's channels come after the features, and the
            head's last convolution starts at zero, so an unconditional trunk's weights load into a
            conditional one (zero weights on the new input channels) and compute the same function until
            fine-tuned.
        gradient_checkpointing: recompute each level in backward instead of keeping its activations.
        upsample: ``"transposed"`` (stride-2 transposed convolutions), ``"nearest"`` (nearest-neighbour
            upsampling, then a 3x3 convolution: no checkerboard artefacts, 4x the generator's convolution FLOPs),
            ``"linear"`` (bilinear in 2D, trilinear in 3D, then a 3x3 convolution; conv architecture only) or
            ``None`` for the architecture's own (conv: transposed; resnet: nearest, its only mode).
        condition_mode: ``"concat"`` (above) or ``"spade"``: each upsampling convolution except the last is
            followed by :class:`~monai_gvae.networks.blocks.spade.SPADE` of the condition instead of its
            normalisation (``norm`` "batch" or "instance"; the condition is not concatenated there), and the
            refinement head concatenates it as in ``"concat"``. Only for a conditional trunk.
    """

    def __init__(
        self,
        spatial_dims: int,
        latent_size: int,
        out_channels: int,
        image_size: int,
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
        upsample = check_upsample(upsample, architecture)
        spade = check_condition_mode(condition_mode) == "spade"
        if spade and not condition_channels:
            raise ValueError("condition_mode='spade' needs a conditional generator (condition_channels > 0).")
        spade_norm = as_tuple_norm(norm)
        spade_norm = spade_norm[0] if isinstance(spade_norm, tuple) else spade_norm
        if spade and spade_norm not in ("batch", "instance"):
            raise ValueError(f"condition_mode='spade' normalises with 'batch' or 'instance', got norm={norm!r}.")
        if not isinstance(condition_channels, int) or condition_channels < 0:
            raise ValueError(f"condition_channels must be an integer >= 0, got {condition_channels!r}.")
        if condition_channels and gradient_checkpointing:
            raise ValueError("gradient_checkpointing is not implemented for a conditional generator (condition_channels > 0).")
        self.condition_channels = cc = condition_channels
        channels = channel_schedule(image_size, architecture, base_channels, max_channels)[::-1]
        level_sizes: list[int] = []
        start = final_resolution(image_size, architecture)
        self.start_shape = (channels[0],) + (start,) * spatial_dims
        self.project = nn.Linear(latent_size, channels[0] * start**spatial_dims)
        layers: list[nn.Module] = []
        # indices of the layers whose input gets the (resized) condition concatenated
        self._condition_at: set[int] = set()
        if architecture == "resnet":
            for level, ch in enumerate(channels[:-1]):
                for _ in range(num_res_units):
                    layers.append(_residual_unit(spatial_dims, ch, norm, dropout))
                layers.append(_interpolating_upsample(spatial_dims, upsample))  # resnet: always "nearest"
                if spade:
                    layers.append(SPADEConvolution(spatial_dims, ch, channels[level + 1], cc, dropout=0.0, norm=spade_norm))
                else:
                    if cc:
                        self._condition_at.add(len(layers))
                    layers.append(
                        Convolution(spatial_dims, ch + cc, channels[level + 1], kernel_size=3, act=LEAKY_RELU, norm=norm)
                    )
                level_sizes.append(num_res_units + 2)
            for _ in range(num_res_units):
                layers.append(_residual_unit(spatial_dims, channels[-1], norm, dropout))
            head_cc = 0 if spade else cc
            if head_cc:
                self._condition_at.add(len(layers))
            layers.append(Convolution(spatial_dims, channels[-1] + head_cc, out_channels, kernel_size=3, conv_only=True))
            level_sizes.append(num_res_units + 1)
        else:
            transposed = upsample == "transposed"
            for level, ch in enumerate(channels):
                last = level == len(channels) - 1
                if not transposed:
                    layers.append(_interpolating_upsample(spatial_dims, upsample))
                if spade and not last:
                    layers.append(SPADEConvolution(spatial_dims, ch, channels[level + 1], cc, strides=2 if transposed else 1,
                                                   is_transposed=transposed, dropout=dropout, norm=spade_norm))
                    level_sizes.append(1 if transposed else 2)
                    continue
                level_cc = 0 if spade else cc
                if level_cc:
                    self._condition_at.add(len(layers))
                layers.append(
                    Convolution(
                        spatial_dims,
                        ch + level_cc,
                        out_channels if last else channels[level + 1],
                        strides=2 if transposed else 1,
                        kernel_size=3,
                        is_transposed=transposed,
                        act=LEAKY_RELU,
                        norm=norm,
                        dropout=dropout,
                        conv_only=last,
                    )
                )
                level_sizes.append(1 if transposed else 2)
        self.body = nn.Sequential(*layers)
        self.refine: nn.Module | None = None
        if cc:
            hidden = channels[-1]
            head_out = Convolution(spatial_dims, hidden, out_channels, kernel_size=3, conv_only=True)
            nn.init.zeros_(head_out.conv.weight)
            nn.init.zeros_(head_out.conv.bias)
            self.refine = nn.Sequential(
                Convolution(spatial_dims, out_channels + cc, hidden, kernel_size=3, act=LEAKY_RELU, norm=None),
                head_out,
            )
        self.levels = _level_bounds(level_sizes)
        self.gradient_checkpointing = bool(gradient_checkpointing)

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        h = self.project(z).view(z.shape[0], *self.start_shape)
        if condition is None:
            if self.condition_channels:
                raise ValueError("this generator is conditional (condition_channels > 0): pass a condition.")
            return torch.tanh(self.run_body(h))
        return self._conditional_body(h, condition)

    @torch.jit.unused
    def _conditional_body(self, h, condition):  # no annotations: TorchScript compiles a stub in its place
        """The body with the condition concatenated at each level, then the full-resolution refinement head."""
        if not self.condition_channels:
            raise ValueError("this generator is not conditional (condition_channels=0) but a condition was given.")
        condition = condition.to(h.dtype)
        for i, layer in enumerate(self.body):
            if isinstance(layer, SPADEConvolution):
                h = layer(h, condition)
                continue
            if i in self._condition_at:
                h = torch.cat([h, resize_condition(condition, h.shape[2:])], dim=1)
            h = layer(h)
        h = h + self.refine(torch.cat([h, condition], dim=1))
        return torch.tanh(h)


def _residual_unit(spatial_dims: int, channels: int, norm: str | tuple | None, dropout: float) -> nn.Module:
    return ResidualUnit(
        spatial_dims,
        channels,
        channels,
        kernel_size=3,
        subunits=2,
        act=LEAKY_RELU,
        norm=norm,
        dropout=dropout if dropout > 0 else None,
    )


def _avg_pool(spatial_dims: int) -> nn.Module:
    return nn.AvgPool2d(2) if spatial_dims == 2 else nn.AvgPool3d(2)


def as_tuple_norm(norm: str | Sequence | None) -> str | tuple | None:
    """Bundle configs give lists for tuples; MONAI's factories want tuples."""
    if isinstance(norm, list):
        return tuple(norm)
    return norm


def check_input(x: torch.Tensor, spatial_dims: int, in_channels: int, image_size: int, name: str) -> None:
    """Raise ``ValueError`` naming the problem when ``x`` is not ``(N, in_channels, S, S[, S])``."""
    expected = (in_channels,) + (image_size,) * spatial_dims
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} expects a torch.Tensor, got {type(x).__name__}.")
    if x.ndim != spatial_dims + 2:
        raise ValueError(
            f"{name} expects a {spatial_dims + 2}-d batch (N, C, {', '.join(['S'] * spatial_dims)}) "
            f"of shape (N, {', '.join(map(str, expected))}), got shape {tuple(x.shape)}."
        )
    if x.shape[1] != in_channels:
        raise ValueError(
            f"{name} was built for {in_channels} input channel(s) (image + label channels), "
            f"got {x.shape[1]} in a batch of shape {tuple(x.shape)}."
        )
    if tuple(x.shape[2:]) != (image_size,) * spatial_dims:
        raise ValueError(
            f"{name} was built for spatial size {(image_size,) * spatial_dims}, got {tuple(x.shape[2:])} "
            "(resize, pad or crop the images to the configured image_size)."
        )


def resize_condition(condition: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
    """A condition ``(N, C, *spatial)`` at ``spatial_shape``: unchanged at full size, else area-averaged
    (a one-hot label map becomes class fractions per cell)."""
    if tuple(condition.shape[2:]) == tuple(spatial_shape):
        return condition
    return nn.functional.interpolate(condition, size=tuple(spatial_shape), mode="area")


def check_condition(
    condition: torch.Tensor | None,
    batch_size: int,
    spatial_dims: int,
    condition_channels: int,
    image_size: int,
    name: str,
) -> None:
    """Raise ``ValueError`` naming the problem when ``condition`` does not fit a network's condition.

    Args:
        condition: the condition batch, or ``None``.
        batch_size: batch size it must match (latents or images).
        spatial_dims: 2 or 3.
        condition_channels: channels the network was built for (0: unconditional, no condition allowed).
        image_size: edge length it must have.
        name: the network's name, for the message.
    """
    if not condition_channels:
        if condition is not None:
            raise ValueError(
                f"{name} was built without a condition (condition_channels=0) but a condition was given; build it "
                "with condition_channels > 0 or pass condition=None."
            )
        return
    if condition is None:
        raise ValueError(f"{name} is conditional ({condition_channels} condition channels): pass a condition.")
    check_input(condition, spatial_dims, condition_channels, image_size, f"{name} (condition)")
    if condition.shape[0] != batch_size:
        raise ValueError(
            f"{name}: the condition batch has {condition.shape[0]} item(s) but the input has {batch_size}."
        )
