"""Helpers shared by the metric modules: stacking decollated batches and scaling images to [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["stack_batch", "to_unit_range"]


def stack_batch(x: Any) -> Any:
    """A decollated batch (a list or tuple of items, as MONAI's ``decollate_batch`` gives) stacked into one tensor.

    Anything else (a tensor, ``None``) is returned unchanged, so metrics accept both forms.

    Args:
        x: a batch tensor ``(N, ...)``, or a sequence of ``N`` items of equal shape.

    Returns:
        ``x`` itself, or ``torch.stack`` of its items as tensors.

    Example::

        stack_batch([torch.zeros(1, 8, 8), torch.ones(1, 8, 8)]).shape  # (2, 1, 8, 8)
    """
    if isinstance(x, (list, tuple)):
        return torch.stack([torch.as_tensor(t) for t in x])
    return x


def to_unit_range(x: torch.Tensor, value_range: Sequence[float]) -> torch.Tensor:
    """``x`` in float32, mapped linearly from ``value_range`` to [0, 1] and clipped there.

    Args:
        x: images in ``value_range``.
        value_range: ``(low, high)`` of the images, e.g. ``(-1, 1)`` for raw network outputs.

    Example::

        to_unit_range(torch.tensor([-1.0, 0.0, 1.0]), (-1, 1))  # tensor([0.0, 0.5, 1.0])
    """
    lo, hi = value_range
    return ((torch.as_tensor(x).float() - lo) / (hi - lo)).clamp(0.0, 1.0)
