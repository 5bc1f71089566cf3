"""Dictionary transforms of monai-gvae, with MONAI's ``D``/``Dict`` aliases."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from monai.transforms import MapTransform

from monai_gvae.transforms.array import PackImageLabel

__all__ = ["PackImageLabeld", "PackImageLabelD", "PackImageLabelDict"]


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


PackImageLabelD = PackImageLabelDict = PackImageLabeld
