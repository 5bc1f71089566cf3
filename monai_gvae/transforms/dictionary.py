"""Dictionary transforms of monai-gvae, with MONAI's ``D``/``Dict`` aliases."""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import MAX_SEED
from torch import nn

from monai_gvae.transforms.array import GVAESynthesize, PackImageLabel
from monai_gvae.transforms.pool import SYNTHETIC_FLAG, GVAESamplePool

__all__ = [
    "PackImageLabeld",
    "PackImageLabelD",
    "PackImageLabelDict",
    "GVAESynthesized",
    "GVAESynthesizeD",
    "GVAESynthesizeDict",
]


class PackImageLabeld(MapTransform):
    """Dictionary version of :class:`PackImageLabel`: writes the packed model input to ``output_key``.

    Args:
        image_key: key of the image.
        label_key: key of the index label, or ``None`` for image-only models.
        num_classes, label_channels, intensity_range, image_channels, spatial_dims: as in :class:`PackImageLabel`.
        output_key: where the packed tensor goes (``"image"`` by default: what ``GVAETrainer`` reads).
        allow_missing_keys: don't raise for a missing label.

    Example::

        PackImageLabeld(image_key="image", label_key="label", num_classes=4)
    """

    def __init__(
        self,
        image_key: Hashable = "image",
        label_key: Hashable | None = "label",
        num_classes: int | None = None,
        label_channels: str = "onehot",
        intensity_range: tuple[float, float] = (0.0, 1.0),
        output_key: Hashable = "image",
        allow_missing_keys: bool = False,
        image_channels: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        keys = [image_key] + ([label_key] if label_key is not None else [])
        super().__init__(keys, allow_missing_keys)
        self.image_key, self.label_key, self.output_key = image_key, label_key, output_key
        self.packer = PackImageLabel(num_classes, label_channels, intensity_range, image_channels, spatial_dims)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        label = d.get(self.label_key) if self.label_key is not None else None
        if self.label_key is not None and label is None and not self.allow_missing_keys:
            raise KeyError(f"key {self.label_key!r} not found in the item; keys: {sorted(map(str, d))}.")
        if self.image_key not in d:
            raise KeyError(f"key {self.image_key!r} not found in the item; keys: {sorted(map(str, d))}.")
        d[self.output_key] = self.packer(d[self.image_key], label)
        return d


class GVAESynthesized(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`~monai_gvae.transforms.GVAESynthesize`: with probability ``prob`` the item's
    image (and label) are replaced by a GVAE-synthesised pair in the same format.

    ``keys`` names the image, then optionally the label: ``("image", "label")``. Other keys of the item are
    passed through unchanged. Besides the ``synthetic`` meta flag on the outputs, the item gets
    ``synthetic_key`` (``True``/``False``), which collates to a boolean tensor even with ``track_meta`` off.

    Args:
        keys: ``(image_key,)`` or ``(image_key, label_key)``.
        model: a ``GVAE``, checkpoint file, bundle folder or shared :class:`GVAESamplePool`.
        prob: probability that an item is replaced.
        mode, sigma, intensity_range, label_format, resize, pool_size, batch_size, refresh_every, device,
        checkpoint_key, sample_filter, amp: as in :class:`~monai_gvae.transforms.GVAESynthesize` (``mode="conditional"``
        with a label-conditioned GVAE keeps the item's label and generates a new image for it).
        synthetic_key: item key receiving the flag; ``None`` to add none.
        allow_missing_keys: a missing label key makes an image-only synthesis (a missing image leaves the item
            unchanged) instead of raising ``KeyError``.

    Raises:
        ValueError: more than two keys (and what :class:`~monai_gvae.transforms.GVAESynthesize` raises).

    Example::

        train_transforms = Compose([
            LoadImaged(keys=["image", "label"]), EnsureChannelFirstd(keys=["image", "label"]),
            ScaleIntensityd(keys="image"),
            GVAESynthesized(keys=["image", "label"], model="bundles/gvae_brain2d", prob=0.5,
                            intensity_range=(0.0, 1.0)),
            RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=1),
        ])
    """

    backend = GVAESynthesize.backend

    def __init__(
        self,
        keys: KeysCollection,
        model: nn.Module | str | os.PathLike | GVAESamplePool,
        prob: float = 0.5,
        mode: str = "prior",
        sigma: float = 0.5,
        intensity_range: tuple[float, float] | None = None,
        label_format: str = "auto",
        resize: bool = False,
        pool_size: int = 64,
        batch_size: int = 16,
        refresh_every: int | None = None,
        device: str | torch.device = "cpu",
        checkpoint_key: str = "gvae",
        sample_filter: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor] | None = None,
        amp: bool = False,
        synthetic_key: Hashable | None = SYNTHETIC_FLAG,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        if not 1 <= len(self.keys) <= 2:
            raise ValueError(f"keys must be (image_key,) or (image_key, label_key), got {self.keys}.")
        self.image_key = self.keys[0]
        self.label_key = self.keys[1] if len(self.keys) == 2 else None
        self.synthetic_key = synthetic_key
        self.synthesizer = GVAESynthesize(
            model, prob=1.0, mode=mode, sigma=sigma, intensity_range=intensity_range, label_format=label_format,
            resize=resize, pool_size=pool_size, batch_size=batch_size, refresh_every=refresh_every, device=device,
            checkpoint_key=checkpoint_key, sample_filter=sample_filter, amp=amp,
        )

    @property
    def pool(self) -> GVAESamplePool:
        return self.synthesizer.pool

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> GVAESynthesized:
        """Reseed this transform, then the wrapped :class:`GVAESynthesize` from it (distinct streams)."""
        super().set_random_state(seed, state)
        self.synthesizer.set_random_state(int(self.R.randint(MAX_SEED)))
        return self

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self.synthesizer.randomize(None)

    def __call__(self, data: Mapping[Hashable, Any], randomize: bool = True) -> dict[Hashable, Any]:
        if randomize:
            self.randomize()
        return self._apply(data, bool(self._do_transform))

    def mark_real(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """The item unchanged but flagged real (``synthetic=False`` in meta and ``synthetic_key``), without
        drawing random numbers: what :class:`~monai_gvae.data.SyntheticMixDataset` applies to real items so that
        real and synthetic items collate alike."""
        return self._apply(data, False)

    def _apply(self, data: Mapping[Hashable, Any], synthesize: bool) -> dict[Hashable, Any]:
        d = dict(data)
        if self.image_key not in d:
            if self.allow_missing_keys:
                return d
            raise KeyError(f"key {self.image_key!r} not found in the item; keys: {sorted(map(str, d))}.")
        label_key = self.label_key
        if label_key is not None and label_key not in d:
            if not self.allow_missing_keys:
                raise KeyError(f"key {label_key!r} not found in the item; keys: {sorted(map(str, d))}.")
            label_key = None
        label = d[label_key] if label_key is not None else None
        outcome = self.synthesizer.synthesize if synthesize else self.synthesizer.mark_real
        out = outcome(d[self.image_key], label)
        if label_key is None:
            d[self.image_key] = out
        else:
            d[self.image_key], d[label_key] = out
        if self.synthetic_key is not None:
            d[self.synthetic_key] = bool(synthesize and self.synthesizer.last_synthetic)
        return d


PackImageLabelD = PackImageLabelDict = PackImageLabeld
GVAESynthesizeD = GVAESynthesizeDict = GVAESynthesized
