"""Packing an image and its label into the GVAE's channel layout, and unpacking generated samples.

Layout (architecture.md, "Joint image+label synthesis"): image channels first, in [-1, 1]; then label
channels, one-hot over ``num_classes`` (or one foreground channel for 2 classes), mapped {0, 1} -> {-1, 1}.
Generated label channels are decoded by argmax (one-hot) or by a threshold at 0 (foreground channel).
"""

from __future__ import annotations

import torch

__all__ = ["pack_image_label", "unpack_image_label", "to_model_range", "from_model_range"]


def to_model_range(image: torch.Tensor, intensity_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Map intensities from ``intensity_range`` to [-1, 1]."""
    low, high = intensity_range
    if high <= low:
        raise ValueError(f"intensity_range must be (low, high) with high > low, got {intensity_range}.")
    return (image.float() - low) / (high - low) * 2.0 - 1.0


def from_model_range(image: torch.Tensor, intensity_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Map [-1, 1] back to ``intensity_range``."""
    low, high = intensity_range
    return (image.float().clamp(-1.0, 1.0) + 1.0) / 2.0 * (high - low) + low


def pack_image_label(
    image: torch.Tensor,
    label: torch.Tensor | None,
    num_classes: int | None,
    label_channels: str = "onehot",
    intensity_range: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """Concatenate an image ``(C, *spatial)`` and an index label ``(1, *spatial)`` into the model's layout.

    Args:
        image: channel-first image, intensities in ``intensity_range``.
        label: channel-first class-index map (one channel), or ``None`` for image-only models.
        num_classes: number of label classes (background included).
        label_channels: ``"onehot"`` (``num_classes`` channels) or ``"foreground"`` (one channel, 2 classes).
        intensity_range: the image's intensity range, mapped to [-1, 1].

    Returns:
        float tensor ``(C + L, *spatial)`` in [-1, 1].

    Raises:
        ValueError: NaN in the image, a label of another shape, or class indices outside ``[0, num_classes)``.
    """
    image = torch.as_tensor(image)
    if not torch.isfinite(image).all():
        raise ValueError("image contains NaN or Inf values.")
    packed = to_model_range(image, intensity_range)
    if label is None:
        return packed
    label = torch.as_tensor(label)
    if label.shape[0] != 1 or label.shape[1:] != image.shape[1:]:
        raise ValueError(
            f"label must be a one-channel index map (1, *spatial) matching the image's spatial shape "
            f"{tuple(image.shape[1:])}, got {tuple(label.shape)}."
        )
    if num_classes is None or num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 to pack a label, got {num_classes}.")
    index = label[0].round().long()
    if index.min() < 0 or index.max() >= num_classes:
        raise ValueError(f"label values must be class indices in [0, {num_classes}), got [{index.min()}, {index.max()}].")
    if label_channels == "onehot":
        onehot = torch.nn.functional.one_hot(index, num_classes).movedim(-1, 0).float()
    elif label_channels == "foreground":
        if num_classes != 2:
            raise ValueError(f"label_channels='foreground' needs num_classes=2, got {num_classes}.")
        onehot = index[None].float()
    else:
        raise ValueError(f"label_channels must be 'onehot' or 'foreground', got {label_channels!r}.")
    return torch.cat([packed, onehot * 2.0 - 1.0], dim=0)


def unpack_image_label(
    sample: torch.Tensor,
    image_channels: int,
    num_classes: int | None = None,
    intensity_range: tuple[float, float] = (0.0, 1.0),
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split a batch of generated samples into images and class-index labels.

    Args:
        sample: batch ``(N, C + L, *spatial)`` in [-1, 1] (add a leading axis for a single item).
        image_channels: number of leading image channels ``C``.
        num_classes: label classes; ``L`` must be ``num_classes`` (argmax) or 1 (threshold at 0).
        intensity_range: range the image is mapped back to.

    Returns:
        ``(image, label)``: images in ``intensity_range``; labels ``int64`` ``(N, 1, *spatial)``, or ``None``.

    Example::

        image, label = unpack_image_label(model.sample(4), image_channels=1, num_classes=4)
    """
    if sample.ndim < 4:
        raise ValueError(f"expected a batch (N, C, *spatial), got shape {tuple(sample.shape)}.")
    image = from_model_range(sample[:, :image_channels], intensity_range)
    label_channels = sample.shape[1] - image_channels
    if label_channels <= 0:
        return image, None
    logits = sample[:, image_channels:]
    if label_channels == 1:
        return image, (logits > 0).long()
    if num_classes is not None and label_channels != num_classes:
        raise ValueError(f"{label_channels} label channels but num_classes={num_classes}.")
    return image, logits.argmax(dim=1, keepdim=True)
