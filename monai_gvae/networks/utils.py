"""Network utilities shared by the layers above: the channels-last memory format of a network.

``prepare_network`` lives here rather than in ``engines`` because synthesis (``transforms``) uses it as well as
training; ``monai_gvae.engines`` re-exports it with its other speed settings (docs/performance.md).
"""

from __future__ import annotations

import torch
from torch import nn

from monai_gvae.utils import check_bool

__all__ = ["channels_last_format", "prepare_network"]


def channels_last_format(spatial_dims: int) -> torch.memory_format:
    """``torch.channels_last`` for 2D, ``torch.channels_last_3d`` for 3D.

    Raises:
        ValueError: ``spatial_dims`` is not 2 or 3.

    Example::

        x = x.contiguous(memory_format=channels_last_format(3))
    """
    if spatial_dims == 2:
        return torch.channels_last
    if spatial_dims == 3:
        return torch.channels_last_3d
    raise ValueError(f"channels-last memory formats exist for 2 or 3 spatial dims, got {spatial_dims!r}.")


def prepare_network(
    module: nn.Module,
    device: str | torch.device | None = None,
    channels_last: bool = False,
    spatial_dims: int | None = None,
) -> nn.Module:
    """Move a network to ``device`` and, optionally, to the channels-last memory format (in place).

    Convolutions whose weights are channels-last produce channels-last outputs, so converting the network is
    enough: input batches need no conversion. Do it before wrapping the network in ``DistributedDataParallel``.

    Args:
        module: the network (``GVAE``, ``GVAECritic``, ...).
        device: target device; ``None`` keeps the current one.
        channels_last: convert 4D/5D parameters to ``channels_last``/``channels_last_3d``.
        spatial_dims: 2 or 3; read from ``module.spatial_dims`` when not given.

    Returns:
        the same module.

    Raises:
        TypeError: ``channels_last`` is not a bool (e.g. the string ``"false"``).
        ValueError: ``channels_last`` is set and the spatial dims cannot be found or are not 2/3.

    Example::

        critic = prepare_network(GVAECritic(2, 5, 64), "cpu", channels_last=True)
    """
    if device is not None:
        module = module.to(device)
    if check_bool(channels_last, "channels_last"):
        dims = spatial_dims if spatial_dims is not None else getattr(module, "spatial_dims", None)
        if dims is None:
            raise ValueError(f"{type(module).__name__} has no spatial_dims attribute; pass spatial_dims=2 or 3.")
        module = module.to(memory_format=channels_last_format(dims))
    return module
