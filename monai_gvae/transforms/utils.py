"""Packing an image and its label into the GVAE's channel layout, and unpacking generated samples.

Layout (architecture.md, "Joint image+label synthesis"): image channels first, in [-1, 1]; then label
channels, one-hot over ``num_classes`` (or one foreground channel for 2 classes), mapped {0, 1} -> {-1, 1}.
Generated label channels are decoded by argmax (one-hot) or by a threshold at 0 (foreground channel).
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["pack_image_label", "unpack_image_label", "unpack_to_host", "to_model_range", "from_model_range"]


RANGE_TOLERANCE = 0.05
"""Image values may exceed ``intensity_range`` by this fraction of its width (noise augmentation, rounding); further
out, :func:`pack_image_label` raises instead of producing model inputs far outside [-1, 1]."""


def _check_intensity_range(intensity_range: tuple[float, float]) -> tuple[float, float]:
    """``(low, high)`` as floats: two finite numbers with ``high > low`` (the range itself; no image is checked)."""
    try:
        low, high = (float(v) for v in intensity_range)
    except (TypeError, ValueError) as e:
        raise TypeError(f"intensity_range must be two numbers (low, high), got {intensity_range!r}.") from e
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        raise ValueError(f"intensity_range must be finite (low, high) with high > low, got {intensity_range}.")
    return low, high


def _check_real(x: torch.Tensor, what: str) -> None:
    if x.is_complex():
        raise TypeError(f"{what} must be real-valued, got dtype {x.dtype}.")


def to_model_range(image: torch.Tensor, intensity_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Map intensities from ``intensity_range`` to [-1, 1].

    Raises:
        ValueError: ``intensity_range`` is not finite with ``high > low``.
    """
    low, high = _check_intensity_range(intensity_range)
    return (image.float() - low) / (high - low) * 2.0 - 1.0


def from_model_range(image: torch.Tensor, intensity_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Map [-1, 1] back to ``intensity_range`` (values outside [-1, 1] are clamped first).

    Raises:
        ValueError: ``intensity_range`` is not finite with ``high > low``.
    """
    low, high = _check_intensity_range(intensity_range)
    return (image.float().clamp(-1.0, 1.0) + 1.0) / 2.0 * (high - low) + low


def pack_image_label(
    image: torch.Tensor,
    label: torch.Tensor | None,
    num_classes: int | None,
    label_channels: str = "onehot",
    intensity_range: tuple[float, float] = (0.0, 1.0),
    image_channels: int | None = None,
    spatial_dims: int | None = None,
) -> torch.Tensor:
    """Concatenate an image ``(C, *spatial)`` and an index label ``(1, *spatial)`` into the model's layout.

    Args:
        image: channel-first image, intensities in ``intensity_range``.
        label: channel-first class-index map (one channel), or ``None`` for image-only models.
        num_classes: number of label classes (background included).
        label_channels: ``"onehot"`` (``num_classes`` channels) or ``"foreground"`` (one channel, 2 classes).
        intensity_range: the image's intensity range, mapped to [-1, 1].
        image_channels: expected number of image channels ``C`` (checked when given).
        spatial_dims: expected number of spatial dimensions (checked when given).

    Returns:
        float tensor ``(C + L, *spatial)`` in [-1, 1] (a ``MetaTensor`` keeps the image's metadata).

    Raises:
        TypeError: a complex or non-numeric image or label.
        ValueError: NaN/Inf in the image or label; an image without a channel axis, with an empty axis, with another
            number of channels or spatial dimensions than expected, or with values outside ``intensity_range``
            (beyond :data:`RANGE_TOLERANCE`); a label of another shape, with non-integer values or class indices
            outside ``[0, num_classes)``; an invalid ``num_classes``, ``label_channels`` or ``intensity_range``.

    Example::

        packed = pack_image_label(torch.rand(1, 64, 64), torch.randint(0, 4, (1, 64, 64)), num_classes=4)
    """
    image = _numeric_tensor(image, "image")
    low, high = _check_intensity_range(intensity_range)
    _check_image(image, (low, high), image_channels, spatial_dims)
    packed = to_model_range(image, (low, high))
    if label is None:
        return packed
    label = _numeric_tensor(label, "label")
    index, num_classes = _checked_label_index(label, tuple(image.shape), num_classes, label_channels)
    if label_channels == "onehot":
        onehot = torch.nn.functional.one_hot(index.as_subclass(torch.Tensor), num_classes).movedim(-1, 0).float()
    else:
        onehot = index.as_subclass(torch.Tensor)[None].float()
    return torch.cat([packed, (onehot * 2.0 - 1.0).to(packed.device)], dim=0)


def _numeric_tensor(x: Any, what: str) -> torch.Tensor:
    """``x`` as a real-valued tensor; a ``TypeError`` naming ``what`` otherwise."""
    try:
        x = torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{what} must be a numeric array or tensor, got {type(x).__name__}: {e}") from e
    _check_real(x, what)
    return x


def _check_image(
    image: torch.Tensor, intensity_range: tuple[float, float], image_channels: int | None, spatial_dims: int | None
) -> None:
    """An image ``(C, *spatial)`` of the expected channels and rank, finite, inside ``intensity_range`` (up to
    :data:`RANGE_TOLERANCE` of its width)."""
    low, high = intensity_range
    if image.ndim < 2:
        raise ValueError(f"image must be channel-first (C, *spatial), got shape {tuple(image.shape)}.")
    if image.numel() == 0:
        raise ValueError(f"image has an empty axis: shape {tuple(image.shape)}.")
    if image_channels is not None and image.shape[0] != image_channels:
        raise ValueError(
            f"image has {image.shape[0]} channels (shape {tuple(image.shape)}), expected {image_channels}; "
            "is it channel-first (EnsureChannelFirstd) with the model's number of channels?"
        )
    if spatial_dims is not None and image.ndim - 1 != spatial_dims:
        raise ValueError(
            f"image has {image.ndim - 1} spatial dimensions (shape {tuple(image.shape)}), expected {spatial_dims}."
        )
    if image.is_floating_point() and not torch.isfinite(image).all():
        raise ValueError("image contains NaN or Inf values.")
    values = image.float() if image.dtype == torch.bool else image
    lo, hi = float(values.min()), float(values.max())
    margin = RANGE_TOLERANCE * (high - low)
    if lo < low - margin or hi > high + margin:
        raise ValueError(
            f"image values [{lo:g}, {hi:g}] are outside intensity_range ({low:g}, {high:g}): scale the image "
            "(e.g. ScaleIntensityd) or set intensity_range to its range."
        )


def _checked_label_index(
    label: torch.Tensor, image_shape: tuple[int, ...], num_classes: Any, label_channels: str
) -> tuple[torch.Tensor, int]:
    """A one-channel class-index map matching the image, as ``(index map (spatial) int64, num_classes)``, after
    checking the label and the packing options."""
    if label.ndim != len(image_shape) or label.shape[0] != 1 or tuple(label.shape[1:]) != image_shape[1:]:
        raise ValueError(
            f"label must be a one-channel index map (1, *spatial) matching the image's spatial shape "
            f"{image_shape[1:]}, got {tuple(label.shape)}."
        )
    if num_classes is None or isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2 to pack a label, got {num_classes}.")
    num_classes = int(num_classes)
    if label_channels not in ("onehot", "foreground"):
        raise ValueError(f"label_channels must be 'onehot' or 'foreground', got {label_channels!r}.")
    if label_channels == "foreground" and num_classes != 2:
        raise ValueError(f"label_channels='foreground' needs num_classes=2, got {num_classes}.")
    if label.is_floating_point():
        if not torch.isfinite(label).all():
            raise ValueError("label contains NaN or Inf values.")
        if not torch.equal(label, label.round()):
            raise ValueError(
                "label holds non-integer values (interpolated? resample labels with mode='nearest'); "
                "expected class indices."
            )
    lo, hi = float(label.min()), float(label.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"label values must be class indices in [0, {num_classes}), got [{lo:g}, {hi:g}].")
    return label[0].long(), num_classes


def unpack_image_label(
    sample: torch.Tensor,
    image_channels: int,
    num_classes: int | None = None,
    intensity_range: tuple[float, float] = (0.0, 1.0),
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split a batch of generated samples into images and class-index labels.

    Args:
        sample: batch ``(N, C + L, *spatial)`` in [-1, 1] (add a leading axis for a single item).
        image_channels: number of leading image channels ``C``, ``1 <= C <= C + L``.
        num_classes: label classes; ``L`` must be ``num_classes`` (argmax) or 1 (threshold at 0, ``num_classes``
            2 or ``None``); ``None`` accepts any ``L``.
        intensity_range: range the image is mapped back to.

    Returns:
        ``(image, label)``: images in ``intensity_range``; labels ``int64`` ``(N, 1, *spatial)``, or ``None``.

    Raises:
        TypeError: a complex or non-numeric sample.
        ValueError: fewer than 2 spatial dimensions, NaN/Inf values (a diverged model), ``image_channels`` outside
            ``[1, C + L]``, or label channels that do not fit ``num_classes``.

    Example::

        image, label = unpack_image_label(model.sample(4), image_channels=1, num_classes=4)
    """
    try:
        sample = torch.as_tensor(sample)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"sample must be a numeric tensor, got {type(sample).__name__}: {e}") from e
    _check_real(sample, "sample")
    if sample.ndim < 4:
        raise ValueError(f"expected a batch (N, C, *spatial) with 2 or 3 spatial dims, got shape {tuple(sample.shape)}.")
    if isinstance(image_channels, bool) or int(image_channels) != image_channels or not 1 <= image_channels <= sample.shape[1]:
        raise ValueError(f"image_channels must be in [1, {sample.shape[1]}] for a sample of shape {tuple(sample.shape)}, got {image_channels}.")
    image_channels = int(image_channels)
    if num_classes is not None and (isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2):
        raise ValueError(f"num_classes must be an integer >= 2 or None, got {num_classes}.")
    if sample.is_floating_point() and not torch.isfinite(sample).all():
        raise ValueError("sample contains NaN or Inf values (has the model diverged?).")
    image = from_model_range(sample[:, :image_channels], intensity_range)
    label_channels = sample.shape[1] - image_channels
    if label_channels == 0:
        if num_classes is not None:
            raise ValueError(f"sample of shape {tuple(sample.shape)} has no label channels after {image_channels} image channels, but num_classes={num_classes}.")
        return image, None
    logits = sample[:, image_channels:]
    if label_channels == 1:
        if num_classes not in (None, 2):
            raise ValueError(f"1 label channel (foreground) but num_classes={num_classes}; expected 2 or {num_classes} channels.")
        return image, (logits > 0).long()
    if num_classes is not None and label_channels != num_classes:
        raise ValueError(f"{label_channels} label channels but num_classes={num_classes}.")
    # argmax along the last, contiguous axis: 5x faster on a CPU than along the channel axis (26 ms -> 5 ms for
    # 64 samples of 4 x 64 x 64); the same first-maximum indices
    return image, logits.movedim(1, -1).contiguous().argmax(dim=-1).unsqueeze(1)


def unpack_to_host(
    sample: torch.Tensor,
    image_channels: int,
    num_classes: int | None = None,
    intensity_range: tuple[float, float] = (0.0, 1.0),
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`unpack_image_label` on the sample's own device, then the image and label map copied to the host.

    On a GPU the label argmax runs there and an int64 label map crosses to the host instead of ``num_classes``
    float channels (pooled synthesis went from 5.5x to 21x per-item on an H200 with this order). Half-precision
    samples (autocast) are unpacked in float32.

    Example::

        image, label = unpack_to_host(model.decode(z), model.image_channels, model.num_classes)
    """
    image, label = unpack_image_label(torch.as_tensor(sample).float(), image_channels, num_classes, intensity_range)
    return image.cpu(), (label.cpu() if label is not None else None)
