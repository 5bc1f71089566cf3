"""New label maps from the k labelled ones, for a label-conditioned GVAE to render.

A label-conditioned GVAE makes the image *for* a label map, so the anatomy of its synthetic pairs is the
anatomy of the label maps it is given. Deforming the k real maps (affine, elastic) moves their structures but
adds no anatomy between them; interpolating the signed distance maps of two similar label maps gives shapes in
between (e.g. the slice levels between two labelled slices), which the GVAE then renders.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms.utils import distance_transform_edt

from .filtering import foreground_dice

__all__ = ["signed_distance_maps", "interpolate_label_maps", "nearest_label_maps"]


def _check_label(label: torch.Tensor, num_classes: int, what: str) -> torch.Tensor:
    label = torch.as_tensor(label)
    if label.ndim < 3 or label.shape[0] != 1:
        raise ValueError(f"{what} must be a channel-first label map of shape (1, *spatial), got {tuple(label.shape)}.")
    if label.is_floating_point() and not torch.equal(label, label.round()):
        raise ValueError(f"{what} must hold integer class indices, got non-integer values.")
    if label.numel() and (int(label.min()) < 0 or int(label.max()) >= num_classes):
        raise ValueError(f"{what} holds classes outside [0, {num_classes - 1}]: {torch.unique(label).tolist()}.")
    return label.long()


def signed_distance_maps(label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per class, the Euclidean distance to the class outside it minus the distance to its border inside.

    Negative inside the class, positive outside. A class absent from ``label`` gets the map's diagonal length
    everywhere (farther than any present class), so it never wins an interpolation it is absent from at both ends.

    Args:
        label: ``(1, *spatial)`` class indices.
        num_classes: number of classes, background included.

    Returns:
        ``(num_classes, *spatial)`` float32 signed distances in pixels.

    Raises:
        ValueError: ``label`` is not a ``(1, *spatial)`` map of classes in ``[0, num_classes)``.
    """
    label = _check_label(label, num_classes, "label")
    spatial = label.shape[1:]
    far = float(np.sqrt(sum(s * s for s in spatial)))
    out = torch.full((num_classes, *spatial), far, dtype=torch.float32)
    for c in range(num_classes):
        mask = (label[0] == c).numpy()
        if not mask.any():
            continue
        # MONAI's transform wants a channel axis (it runs per channel on scipy, or cupy on a GPU)
        outside = np.asarray(distance_transform_edt(~mask[None]), dtype=np.float32)[0]
        inside = np.asarray(distance_transform_edt(mask[None]), dtype=np.float32)[0]
        out[c] = torch.from_numpy(outside - inside)
    return out


def interpolate_label_maps(label_a: torch.Tensor, label_b: torch.Tensor, weight: float,
                           num_classes: int) -> torch.Tensor:
    """A label map between ``label_a`` (``weight`` 0) and ``label_b`` (``weight`` 1).

    Each class's signed distance map is interpolated linearly and every pixel takes the class of smallest
    interpolated distance, so structures shrink, grow and move continuously from one map to the other
    (shape-based interpolation, as used between the slices of a segmentation).

    Args:
        label_a: ``(1, *spatial)`` class indices.
        label_b: ``(1, *spatial)`` class indices, same shape.
        weight: in ``[0, 1]``.
        num_classes: number of classes, background included.

    Returns:
        ``(1, *spatial)`` int64 class indices; ``label_a`` itself at ``weight`` 0, ``label_b`` at 1.

    Raises:
        ValueError: shapes differ, ``weight`` is outside ``[0, 1]``, or a map is not a valid label map.

    Example::

        >>> a = torch.zeros(1, 32, 32, dtype=torch.long); a[0, 8:16, 8:16] = 1
        >>> b = torch.zeros(1, 32, 32, dtype=torch.long); b[0, 8:24, 8:24] = 1
        >>> int((interpolate_label_maps(a, b, 0.5, 2) == 1).sum())  # 12 x 12 with its corners rounded off
        121
    """
    if not 0.0 <= float(weight) <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}.")
    if tuple(label_a.shape) != tuple(label_b.shape):
        raise ValueError(f"label maps differ in shape: {tuple(label_a.shape)} vs {tuple(label_b.shape)}.")
    sdf = (1.0 - weight) * signed_distance_maps(label_a, num_classes) + weight * signed_distance_maps(label_b, num_classes)
    return sdf.argmin(0, keepdim=True)


def nearest_label_maps(labels: torch.Tensor, num_classes: int, neighbours: int = 1) -> torch.Tensor:
    """For each label map, the indices of the ``neighbours`` most similar others (mean foreground Dice).

    Interpolating between similar maps (e.g. neighbouring slice levels) gives plausible anatomy; between very
    different ones it would not, hence the pairing.

    Args:
        labels: ``(N, 1, *spatial)`` class indices, ``N >= 2``.
        num_classes: number of classes, background included.
        neighbours: how many neighbours per map, at most ``N - 1``.

    Returns:
        ``(N, neighbours)`` int64 indices, most similar first.

    Raises:
        ValueError: fewer than two maps, or ``neighbours`` outside ``[1, N - 1]``.
    """
    n = labels.shape[0]
    if n < 2:
        raise ValueError(f"need at least two label maps to pair, got {n}.")
    if not 1 <= neighbours <= n - 1:
        raise ValueError(f"neighbours must be in [1, {n - 1}], got {neighbours}.")
    labels = labels.long()
    similarity = torch.full((n, n), -1.0)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        dice = foreground_dice(labels[others], labels[i : i + 1].expand(len(others), *labels.shape[1:]), num_classes)
        similarity[i, others] = dice.float()
    return similarity.argsort(1, descending=True)[:, :neighbours]
