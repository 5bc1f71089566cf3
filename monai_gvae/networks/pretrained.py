"""Starting a network from a checkpoint of a related one: pre-training on images, adaptation to labels.

A GVAE pre-trained on unlabelled images (``in_channels = image_channels``) is adapted to joint image+label
synthesis (label channels added to encoder input, generator output and critic input) or to label-conditioned
synthesis (a condition concatenated to encoder, generator levels and critic). The adapted network's layers
have more input or output channels than the pre-trained ones; :func:`load_pretrained_weights` copies every
weight that fits and the overlapping part of every weight that grew, and initialises what is new so that
the adapted network starts from the pre-trained function:

* new **input** channels of a convolution or linear layer get zero weights (the layer ignores the new
  inputs until fine-tuning teaches it to use them);
* new **output** channels keep the fresh initialisation of the new network (e.g. the generator's label
  channels, learnt from the pre-trained features);
* layers absent from the checkpoint (e.g. the conditional generator's refinement head, whose last
  convolution starts at zero) keep their initialisation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["load_pretrained_weights"]

logger = logging.getLogger(__name__)


def _input_dim(module: nn.Module, param_name: str) -> int | None:
    """Axis of a weight that indexes the layer's inputs (``None`` for biases, norms and other tensors)."""
    if param_name != "weight":
        return None
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return 0  # (in, out, *kernel)
    if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
        return 1  # (out, in, *kernel)
    return None


def _read_state(source: str | os.PathLike | Mapping[str, Any], key: str | None) -> Mapping[str, Any]:
    if isinstance(source, Mapping):
        state = source
        origin = "the given state dict"
    else:
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"pretrained checkpoint not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for a corrupt or foreign file
            raise ValueError(f"cannot read pretrained checkpoint {path}: {e}") from e
        origin = path
    if not isinstance(state, Mapping):
        raise ValueError(f"{origin} does not hold a state dict.")
    if key is not None and key in state and isinstance(state[key], Mapping):
        return state[key]
    if any(isinstance(v, torch.Tensor) for v in state.values()):
        return state
    raise ValueError(f"{origin} has no entry {key!r} and is not a state dict itself; entries: {sorted(state)}.")


@torch.no_grad()
def load_pretrained_weights(
    network: nn.Module,
    source: str | os.PathLike | Mapping[str, Any],
    key: str | None = "gvae",
    min_loaded_fraction: float = 0.5,
) -> dict[str, list[str]]:
    """Load a related network's weights into ``network``, growing channels where shapes differ.

    Args:
        network: the network to initialise (``GVAE``, ``GVAECritic`` or any module), modified in place; its
            own configuration is kept (the checkpoint's stored GVAE configuration is not imposed).
        source: a checkpoint file (a bare state dict, or a ``CheckpointSaver`` dict of state dicts) or a
            state dict.
        key: entry of a multi-network checkpoint (``"gvae"``, ``"critic"``, ``"gvae_ema"``...).
        min_loaded_fraction: raise when fewer than this fraction of ``network``'s tensors could be loaded
            fully or partially: the checkpoint is then probably of another kind of network.

    Returns:
        report ``{"loaded": [...], "partial": [...], "missing": [...], "unexpected": [...], "mismatched": [...]}``
        of tensor names: copied as is; grown (overlap copied, new input channels zeroed); absent from the
        checkpoint (left as initialised); in the checkpoint but not in ``network``; present in both with
        incompatible shapes (left as initialised).

    Raises:
        FileNotFoundError: no such checkpoint file.
        ValueError: an unreadable checkpoint, no ``key`` entry, or too little that fits.

    Example::

        pretrained = GVAE(spatial_dims=2, in_channels=1, image_size=64)            # images only
        adapted = GVAE(spatial_dims=2, in_channels=5, image_size=64, image_channels=1, num_classes=4)
        report = load_pretrained_weights(adapted, pretrained.state_dict())
        report["partial"]  # encoder's first convolution, generator's last one
    """
    state = _read_state(source, key)
    report: dict[str, list[str]] = {"loaded": [], "partial": [], "missing": [], "unexpected": [], "mismatched": []}
    used: set[str] = set()
    total = 0
    for module_name, module in network.named_modules():
        tensors = list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))
        for name, target in tensors:
            if target is None:
                continue
            full = f"{module_name}.{name}" if module_name else name
            total += 1
            src = state.get(full)
            if not isinstance(src, torch.Tensor):
                report["missing"].append(full)
                continue
            used.add(full)
            src = src.to(device=target.device, dtype=target.dtype)
            if src.shape == target.shape:
                target.copy_(src)
                report["loaded"].append(full)
                continue
            if src.ndim != target.ndim or any(s > t for s, t in zip(src.shape, target.shape)):
                report["mismatched"].append(full)
                continue
            grown = target.detach().clone()
            axis = _input_dim(module, name)
            if axis is not None and target.shape[axis] > src.shape[axis]:
                grown.narrow(axis, src.shape[axis], target.shape[axis] - src.shape[axis]).zero_()
            grown[tuple(slice(0, n) for n in src.shape)] = src
            target.copy_(grown)
            report["partial"].append(full)
    report["unexpected"] = sorted(k for k, v in state.items() if isinstance(v, torch.Tensor) and k not in used)
    fitted = len(report["loaded"]) + len(report["partial"])
    if total and fitted / total < min_loaded_fraction:
        raise ValueError(
            f"only {fitted} of {total} tensors of {type(network).__name__} fit the pretrained checkpoint "
            f"(entry {key!r}); is it a checkpoint of the same kind of network (architecture, sizes)? "
            f"mismatched: {report['mismatched'][:5]}, missing: {report['missing'][:5]}"
        )
    logger.info(
        "pretrained weights into %s: %d loaded, %d grown (%s), %d new, %d unused, %d mismatched",
        type(network).__name__, len(report["loaded"]), len(report["partial"]), ", ".join(report["partial"]),
        len(report["missing"]), len(report["unexpected"]), len(report["mismatched"]),
    )
    return report
