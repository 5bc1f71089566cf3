"""Speed settings for GVAE training and synthesis, one function per knob, each usable from a bundle config.

Measured effects on a CPU and the reasons for the defaults are in ``docs/performance.md``
(``examples/benchmarks/throughput.py`` produces the figures).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["channels_last_format", "configure_backends", "maybe_compile", "prepare_network"]


def channels_last_format(spatial_dims: int) -> torch.memory_format:
    """``torch.channels_last`` for 2D, ``torch.channels_last_3d`` for 3D.

    Raises:
        ValueError: ``spatial_dims`` is not 2 or 3.
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
        ValueError: ``channels_last`` is set and the spatial dims cannot be found or are not 2/3.

    Example::

        critic = prepare_network(GVAECritic(2, 5, 64), "cpu", channels_last=True)
    """
    if device is not None:
        module = module.to(device)
    if channels_last:
        dims = spatial_dims if spatial_dims is not None else getattr(module, "spatial_dims", None)
        if dims is None:
            raise ValueError(f"{type(module).__name__} has no spatial_dims attribute; pass spatial_dims=2 or 3.")
        module = module.to(memory_format=channels_last_format(dims))
    return module


def maybe_compile(module: nn.Module | None, enabled: bool = False, **compile_kwargs: Any) -> nn.Module | None:
    """``torch.compile(module, **compile_kwargs)`` when ``enabled``, else the module itself.

    For ``GVAETrainer(encoder=..., generator=...)``. Do not compile the critic: its gradient penalty
    differentiates twice, which ``torch.compile`` does not support ("does not currently support double
    backward"). ``GVAETrainer`` checkpoints and EMA see through the wrapper (``unwrap``).

    Example::

        trainer = GVAETrainer(..., network=gvae, encoder=maybe_compile(gvae.encoder, True),
                              generator=maybe_compile(gvae.generator, True))
    """
    if not enabled or module is None:
        return module
    return torch.compile(module, **compile_kwargs)


def configure_backends(
    device: str | torch.device, cudnn_benchmark: bool = True, tf32: bool = True
) -> dict[str, Any]:
    """Set the process-wide CUDA backend flags that speed up training; does nothing on other devices.

    Call it after ``monai.utils.set_determinism`` (which switches ``cudnn.benchmark`` off).

    Args:
        device: the training device.
        cudnn_benchmark: let cuDNN time its algorithms for each new input shape (the shapes of a GVAE run are
            fixed, so the search is paid once). With ``cudnn.deterministic`` set by ``set_determinism``,
            only deterministic algorithms are searched.
        tf32: TensorFloat-32 matrix multiplications on Ampere or newer GPUs
            (``torch.set_float32_matmul_precision("high")``); convolutions use TF32 by PyTorch's default.

    Returns:
        the flags set (empty on a CPU), for logging.
    """
    if torch.device(device).type != "cuda":
        return {}
    torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    return {"cudnn.benchmark": bool(cudnn_benchmark), "float32_matmul_precision": "high" if tf32 else "highest"}
