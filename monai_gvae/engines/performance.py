"""Speed settings for GVAE training and synthesis, one function per knob, each usable from a bundle config.

Measured effects on a CPU and the reasons for the defaults are in ``docs/performance.md``
(``examples/benchmarks/throughput.py`` produces the figures).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# re-exported with the other speed settings; they live in networks because synthesis uses them too
from monai_gvae.networks.utils import channels_last_format, prepare_network
from monai_gvae.utils import check_bool

__all__ = ["channels_last_format", "configure_backends", "maybe_compile", "prepare_network"]


def maybe_compile(module: nn.Module | None, enabled: bool = False, **compile_kwargs: Any) -> nn.Module | None:
    """``torch.compile(module, **compile_kwargs)`` when ``enabled``, else the module itself.

    For ``GVAETrainer(encoder=..., generator=...)``. Do not compile the critic: its gradient penalty
    differentiates twice, which ``torch.compile`` does not support ("does not currently support double
    backward"). ``GVAETrainer`` checkpoints and EMA see through the wrapper (``unwrap``).

    Example::

        trainer = GVAETrainer(..., network=gvae, encoder=maybe_compile(gvae.encoder, True),
                              generator=maybe_compile(gvae.generator, True))
    """
    if not check_bool(enabled, "enabled") or module is None:
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
    cudnn_benchmark, tf32 = check_bool(cudnn_benchmark, "cudnn_benchmark"), check_bool(tf32, "tf32")
    if torch.device(device).type != "cuda":
        return {}
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    return {"cudnn.benchmark": cudnn_benchmark, "float32_matmul_precision": "high" if tf32 else "highest"}
