"""Few-label splits: the k labelled items a segmenter and its generator may see, and the unlabelled pool."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

__all__ = ["labelled_subset", "unlabelled_pool"]


def labelled_subset(items: Sequence[dict[str, Any]], k: int | None, seed: int = 0) -> list[dict[str, Any]]:
    """``k`` items drawn without replacement (``numpy.random.default_rng(seed)``), in their original order (the
    draw of ``examples/segmentation_benchmark.py``, so a bundle run and a benchmark seed see the same items).

    Args:
        items: the labelled training items (dicts).
        k: how many to keep; ``None`` keeps all.
        seed: seed of the draw (the same seed gives the same items).

    Returns:
        list of the chosen items (the dicts themselves, not copies).

    Raises:
        ValueError: ``k`` below 1 or above ``len(items)``.

    Example::

        labelled = labelled_subset(load_brain_slices("train"), k=5, seed=0)
    """
    if k is None:
        return list(items)
    if not 1 <= int(k) <= len(items):
        raise ValueError(f"k must be in [1, {len(items)}] (the number of items), got {k}.")
    chosen = np.sort(np.random.default_rng(seed).choice(len(items), size=int(k), replace=False))
    return [items[i] for i in chosen]


def unlabelled_pool(items: Sequence[dict[str, Any]], label_keys: Sequence[Hashable] = ("label",)) -> list[dict[str, Any]]:
    """The items with their labels removed (shallow copies): an image pool for unlabelled pre-training.

    Args:
        items: dicts, labelled or not.
        label_keys: keys to drop.

    Example::

        pool = unlabelled_pool(load_brain_slices("train"))  # [{"image": ..., "slice_index": ...}, ...]
    """
    return [{k: v for k, v in item.items() if k not in label_keys} for item in items]
