"""Real and synthetic training items at a fixed ratio per epoch.

:class:`SyntheticMixDataset` lays out each epoch as ``num_real`` real positions followed by ``num_synthetic``
synthetic ones, ``num_synthetic = round(synthetic_fraction * len(self))``: the ratio holds exactly per
epoch; a shuffling ``DataLoader`` spreads it over the batches. Which real (and pre-generated synthetic)
items fill the positions is a seeded function of ``(seed, epoch)`` (the same in every ``DataLoader``
worker); call :meth:`SyntheticMixDataset.set_epoch` to move on, as with ``DistributedSampler``.

The synthetic side is either

* a transform applied to a real item, such as ``GVAESynthesized(keys, model, prob=1.0)`` drawing from a
  shared sample pool (the real item supplies the format and geometry, never its pixels or label); a
  transform with a ``mark_real(item)`` method (``GVAESynthesized`` has one) also flags the real items, so
  both kinds carry the same meta keys and collate together, or
* a sequence of ready items, e.g. the NIfTI files written by
  :func:`monai_gvae.bundle.synthesize_to_nifti` listed by :func:`load_synthetic_manifest` (load them with
  ``LoadImaged`` in ``synthetic_transform``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.transforms import apply_transform
from torch.utils.data import Dataset

__all__ = ["SyntheticMixDataset", "load_synthetic_manifest"]


def load_synthetic_manifest(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """List the synthetic image(+label) files of a folder written by ``synthesize_to_nifti``.

    Args:
        folder: the folder holding ``manifest.json``.

    Returns:
        one dict per sample: ``"image"`` (and ``"label"``) absolute paths, ``"synthetic": True``,
        ``"model_sha256"``.

    Raises:
        FileNotFoundError: no ``manifest.json``, or a listed file is missing.
        ValueError: the manifest does not say its files are synthetic.

    Example::

        items = load_synthetic_manifest("bundles/gvae_brain2d/output")
    """
    folder = os.fspath(folder)
    path = os.path.join(folder, "manifest.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no manifest.json in {folder}; write one with monai_gvae.bundle.synthesize_to_nifti.")
    with open(path) as f:
        manifest = json.load(f)
    if manifest.get("synthetic") is not True:
        raise ValueError(f"{path} does not declare its files synthetic ('synthetic': true); refusing to mix them as such.")
    items = []
    for entry in manifest.get("files", []):
        item: dict[str, Any] = {"synthetic": True, "model_sha256": manifest.get("model_sha256")}
        for key in ("image", "label"):
            if key in entry:
                file = os.path.join(folder, entry[key])
                if not os.path.isfile(file):
                    raise FileNotFoundError(f"{path} lists {entry[key]}, which is missing from {folder}.")
                item[key] = file
        items.append(item)
    return items


class SyntheticMixDataset(Dataset):
    """Real items and synthetic items at a fixed ratio per epoch.

    Args:
        data: the real items (dicts), a list or a dataset (a MONAI ``Dataset`` applies its own transform).
        synthetic: the synthetic side: a callable making a synthetic item from a copy of a real item (e.g.
            ``GVAESynthesized(keys=["image", "label"], model=..., prob=1.0)``), or a sequence of synthetic items
            (dicts, e.g. from :func:`load_synthetic_manifest`). ``None`` only with ``synthetic_fraction=0``.
        synthetic_fraction: share of synthetic items in each epoch, in ``[0, 1)``.
        transform: applied to every item after the real/synthetic choice (e.g. classical augmentation).
        synthetic_transform: applied to items of a synthetic *sequence* before ``transform`` (e.g.
            ``LoadImaged`` for file paths).
        epoch_length: items per epoch; default ``round(len(data) / (1 - synthetic_fraction))`` (every real item
            once). Real items are cycled through seeded permutations when the epoch needs more of them.
        seed: seed of the per-epoch layout.
        synthetic_key: item key set to ``True``/``False``.

    Raises:
        ValueError: a fraction outside ``[0, 1)``, a missing or empty synthetic side, a synthesising transform
            with ``prob < 1`` (it would leave some synthetic positions real) or with ``synthetic_transform`` (which
            only a sequence's items pass through), or an empty ``data``.

    Example::

        synth = GVAESynthesized(keys=["image", "label"], model="bundles/gvae_brain2d", prob=1.0,
                                intensity_range=(0.0, 1.0))
        mixed = SyntheticMixDataset(load_brain_slices("train"), synth, synthetic_fraction=0.5)
        loader = monai.data.DataLoader(mixed, batch_size=8, shuffle=True)
        for epoch in range(10):
            mixed.set_epoch(epoch)
            for batch in loader:
                ...  # batch["synthetic"]: bool tensor, half of the epoch's items True
    """

    def __init__(
        self,
        data: Sequence[Mapping[Hashable, Any]],
        synthetic: Callable[[dict], Mapping] | Sequence[Mapping[Hashable, Any]] | None = None,
        synthetic_fraction: float = 0.5,
        transform: Callable | None = None,
        synthetic_transform: Callable | None = None,
        epoch_length: int | None = None,
        seed: int = 0,
        synthetic_key: Hashable = "synthetic",
    ) -> None:
        if not 0.0 <= synthetic_fraction < 1.0:
            raise ValueError(f"synthetic_fraction must be in [0, 1), got {synthetic_fraction}.")
        if len(data) == 0:
            raise ValueError("data (the real items) is empty.")
        if synthetic_fraction > 0:
            if synthetic is None:
                raise ValueError(f"synthetic_fraction={synthetic_fraction} needs a synthetic side (a transform or items).")
            if not callable(synthetic) and len(synthetic) == 0:
                raise ValueError("the synthetic item sequence is empty.")
            if callable(synthetic) and getattr(synthetic, "prob", 1.0) < 1.0:
                raise ValueError(
                    f"the synthesising transform has prob={synthetic.prob}; use prob=1.0 (the mixer sets the ratio)."
                )
        if synthetic_transform is not None and callable(synthetic):
            # it would be silently skipped: only items of a sequence pass through it
            raise ValueError("synthetic_transform applies to pre-generated synthetic pairs (a sequence), not to a "
                             "synthesising transform: compose the two instead.")
        if epoch_length is not None and epoch_length < 1:
            raise ValueError(f"epoch_length must be >= 1, got {epoch_length}.")
        self.data = data
        self.synthetic = synthetic
        self.synthetic_fraction = float(synthetic_fraction)
        self.transform = transform
        self.synthetic_transform = synthetic_transform
        total = epoch_length if epoch_length is not None else int(round(len(data) / (1.0 - self.synthetic_fraction)))
        self.num_synthetic = int(round(self.synthetic_fraction * total))
        self.num_real = total - self.num_synthetic
        self.seed = int(seed)
        self.synthetic_key = synthetic_key
        self.epoch = 0
        self._plan()

    def __len__(self) -> int:
        return self.num_real + self.num_synthetic

    def set_epoch(self, epoch: int) -> None:
        """Lay out epoch ``epoch`` (which real and pre-generated items fill the positions)."""
        self.epoch = int(epoch)
        self._plan()

    def _plan(self) -> None:
        rng = np.random.default_rng([self.seed, self.epoch])
        self._real_index = _cycled_permutation(rng, len(self.data), self.num_real)
        # the real item that lends its format to a synthesised item, or the pre-generated item to use
        source = len(self.data) if callable(self.synthetic) or self.synthetic is None else len(self.synthetic)
        self._synthetic_index = _cycled_permutation(rng, source, self.num_synthetic)

    def is_synthetic(self, index: int) -> bool:
        """Whether position ``index`` of the epoch is a synthetic item."""
        return _normalise(index, len(self)) >= self.num_real

    def __getitem__(self, index: int) -> Any:
        index = _normalise(index, len(self))
        if index < self.num_real:
            item = _as_dict(self.data[int(self._real_index[index])])
            if callable(getattr(self.synthetic, "mark_real", None)):
                item = _as_dict(self.synthetic.mark_real(item))  # meta flags too, so both kinds collate alike
            item[self.synthetic_key] = False
        else:
            j = int(self._synthetic_index[index - self.num_real])
            if callable(self.synthetic):
                item = _as_dict(self.synthetic(_as_dict(self.data[j])))
            else:
                item = _as_dict(self.synthetic[j])
                if self.synthetic_transform is not None:
                    item = _as_dict(apply_transform(self.synthetic_transform, item))
            item[self.synthetic_key] = True
        return apply_transform(self.transform, item) if self.transform is not None else item


def _cycled_permutation(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    """``length`` indices in ``[0, n)``: concatenated random permutations, so each index appears evenly."""
    if length == 0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    reps = -(-length // n)
    return np.concatenate([rng.permutation(n) for _ in range(reps)])[:length]


def _normalise(index: int, length: int) -> int:
    if not -length <= index < length:
        raise IndexError(f"index {index} out of range for a mixed epoch of {length} items.")
    return index % length


def _as_dict(item: Any) -> dict:
    if not isinstance(item, Mapping):
        raise TypeError(f"items must be dictionaries (MONAI style), got {type(item).__name__}.")
    return dict(item)
