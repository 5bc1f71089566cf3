"""Memorisation check: nearest-neighbour distances from synthetic samples to the training images.

A generative model that copies training images leaks them. Each synthetic sample's distance to its nearest
training image is compared with what "new real data" looks like: the nearest-neighbour distances of real
images to the training set (held-out images when given, else the training images themselves, leave one out).
A sample closer to a training image than the ``percentile``-th of those real distances is flagged; exact
copies (distance 0) are always flagged.

Distances are root-mean-square differences over all pixels (intensities in [0, 1]: 0 = identical, 1 = black
vs white everywhere). A ``feature_fn`` (images -> ``(N, F)`` vectors) adds the same analysis in a feature
space (RMS over feature dimensions).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch

__all__ = ["nearest_neighbours", "memorization_report", "closest_pairs_grid", "save_closest_pairs"]

EXACT_COPY_DISTANCE = 1e-6
"""Distances at or below this are exact copies (up to float error) and always flagged."""


def _flat(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x).detach().cpu().to(torch.float64)
    return x.reshape(x.shape[0], -1)


def nearest_neighbours(
    queries: torch.Tensor,
    references: torch.Tensor,
    exclude_self: bool = False,
    chunk_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Root-mean-square distance from each query to its nearest reference, and that reference's index.

    Args:
        queries: ``(N, ...)`` batch.
        references: ``(M, ...)`` batch of the same item shape.
        exclude_self: ``queries`` are ``references`` (same order): skip each item's own index (leave one out).
        chunk_size: queries compared at once (memory ``chunk_size x M`` doubles).

    Returns:
        ``(distances (N,) float64, indices (N,) int64)``.

    Raises:
        ValueError: different item sizes, or fewer than 2 references with ``exclude_self``.

    Example::

        d, i = nearest_neighbours(synthetic, training)
    """
    q, r = _flat(queries), _flat(references)
    if q.shape[1] != r.shape[1]:
        raise ValueError(
            f"queries and references differ in size: {tuple(queries.shape[1:])} vs {tuple(references.shape[1:])}."
        )
    if r.shape[0] < (2 if exclude_self else 1):
        raise ValueError(f"need at least {2 if exclude_self else 1} reference images, got {r.shape[0]}.")
    r_sq = (r * r).sum(1)
    distances, indices = [], []
    for start in range(0, q.shape[0], chunk_size):
        block = q[start : start + chunk_size]
        sq = ((block * block).sum(1)[:, None] + r_sq[None, :] - 2.0 * block @ r.T).clamp_min(0.0)
        if exclude_self:
            rows = torch.arange(block.shape[0])
            sq[rows, rows + start] = float("inf")
        d, i = sq.min(dim=1)
        distances.append((d / q.shape[1]).sqrt())
        indices.append(i)
    return torch.cat(distances), torch.cat(indices)


def _space_report(
    synthetic: torch.Tensor,
    training: torch.Tensor,
    holdout: torch.Tensor | None,
    percentile: float,
) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    if holdout is not None:
        ref, _ = nearest_neighbours(holdout, training)
        reference = "held-out real images to their nearest training image"
    else:
        ref, _ = nearest_neighbours(training, training, exclude_self=True)
        reference = "training images to their nearest other training image (leave one out)"
    ref = ref.numpy()
    threshold = float(np.percentile(ref, percentile))
    d, idx = nearest_neighbours(synthetic, training)
    d, idx = d.numpy(), idx.numpy()
    flagged = (d < threshold) | (d <= EXACT_COPY_DISTANCE)
    summary = {
        "percentile": float(percentile),
        "threshold": threshold,
        "reference": reference,
        "reference_distances": {
            "count": int(ref.size),
            "min": float(ref.min()),
            "median": float(np.median(ref)),
            "max": float(ref.max()),
        },
        "synthetic_distances": {"min": float(d.min()), "median": float(np.median(d)), "max": float(d.max())},
        "num_synthetic": int(d.size),
        "num_flagged": int(flagged.sum()),
        "fraction_flagged": float(flagged.mean()),
    }
    return summary, d, idx, flagged


def memorization_report(
    synthetic: torch.Tensor,
    training: torch.Tensor,
    holdout: torch.Tensor | None = None,
    percentile: float = 5.0,
    synthetic_names: Sequence[str] | None = None,
    training_names: Sequence[str] | None = None,
    feature_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    feature_name: str = "feature",
) -> dict:
    """Flag synthetic samples closer to a training image than real images usually are.

    Args:
        synthetic: ``(N, C, *spatial)`` synthetic images, intensities in [0, 1].
        training: ``(M, C, *spatial)`` training images, same preparation (M >= 2 without ``holdout``).
        holdout: optional ``(K, C, *spatial)`` real images not used in training: the reference distances are theirs
            to the training set (the better reference); otherwise training images leave one out.
        percentile: flag samples whose nearest-training distance is below this percentile of the reference
            distances (0-100).
        synthetic_names: names for the report (default ``"0"``, ``"1"``, ...).
        training_names: names for the report.
        feature_fn: optional map from images to ``(n, F)`` features for a second space.
        feature_name: the feature space's name in the report.

    Returns:
        a JSON-ready dict: ``spaces`` (per space: threshold, reference and synthetic distance summaries, number
        flagged), ``samples`` (per synthetic sample, nearest training image, distance(s), ``flagged`` in any space),
        ``flagged`` (names of flagged samples) and ``distance`` (its definition).

    Raises:
        ValueError: mismatched shapes, a percentile outside [0, 100] or too few training images.

    Example::

        report = memorization_report(samples, train_images, percentile=5)
        print(report["spaces"]["pixel"]["num_flagged"])
    """
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}.")
    if synthetic.shape[1:] != training.shape[1:] or (holdout is not None and holdout.shape[1:] != training.shape[1:]):
        raise ValueError(
            f"synthetic {tuple(synthetic.shape[1:])}, training {tuple(training.shape[1:])}"
            + (f" and holdout {tuple(holdout.shape[1:])}" if holdout is not None else "")
            + " images must have the same shape."
        )
    s_names = list(synthetic_names) if synthetic_names is not None else [str(i) for i in range(synthetic.shape[0])]
    t_names = list(training_names) if training_names is not None else [str(i) for i in range(training.shape[0])]
    spaces: dict = {}
    summary, d, idx, flagged = _space_report(synthetic, training, holdout, percentile)
    spaces["pixel"] = summary
    samples = [
        {
            "name": s_names[i],
            "nearest_training": t_names[int(idx[i])],
            "nearest_training_index": int(idx[i]),
            "pixel_distance": float(d[i]),
            "pixel_flagged": bool(flagged[i]),
        }
        for i in range(d.size)
    ]
    any_flagged = flagged.copy()
    if feature_fn is not None:
        with torch.no_grad():
            fs, ft = feature_fn(synthetic), feature_fn(training)
            fh = feature_fn(holdout) if holdout is not None else None
        f_summary, fd, fidx, fflag = _space_report(fs, ft, fh, percentile)
        spaces[feature_name] = f_summary
        for i, sample in enumerate(samples):
            sample[f"{feature_name}_nearest_training"] = t_names[int(fidx[i])]
            sample[f"{feature_name}_distance"] = float(fd[i])
            sample[f"{feature_name}_flagged"] = bool(fflag[i])
        any_flagged |= fflag
    for sample, f in zip(samples, any_flagged):
        sample["flagged"] = bool(f)
    return {
        "distance": "root-mean-square difference over all pixels (intensities in [0, 1]) or feature dimensions",
        "spaces": spaces,
        "flagged": [s["name"] for s in samples if s["flagged"]],
        "samples": samples,
    }


def _display(image: torch.Tensor) -> np.ndarray:
    """First channel of ``(C, *spatial)`` as a 2D array for viewing (middle slice of the third axis in 3D),
    rows along the second axis as in the PNG writer."""
    x = torch.as_tensor(image).detach().cpu().float()[0]
    if x.ndim == 3:
        x = x[:, :, x.shape[2] // 2]
    return x.numpy().T


def closest_pairs_grid(
    synthetic: torch.Tensor,
    training: torch.Tensor,
    report: dict,
    num_pairs: int = 8,
    scale: int = 2,
) -> np.ndarray:
    """RGB uint8 picture of the ``num_pairs`` synthetic samples closest to a training image (pixel space):
    one row per pair, synthetic on the left, its nearest training image on the right, flagged rows framed red.

    Args:
        synthetic: the images given to :func:`memorization_report`.
        training: the training images given to it.
        report: its result.
        num_pairs: rows.
        scale: nearest-neighbour upscaling.

    Returns:
        ``(H, W, 3)`` uint8.
    """
    order = sorted(range(len(report["samples"])), key=lambda i: report["samples"][i]["pixel_distance"])[:num_pairs]
    rows = []
    for i in order:
        sample = report["samples"][i]
        left = _display(synthetic[i])
        right = _display(training[sample["nearest_training_index"]])
        pair = np.concatenate([left, np.ones((left.shape[0], 2)), right], axis=1)
        rgb = np.repeat(np.clip(pair, 0, 1)[..., None] * 255.0, 3, axis=-1)
        frame = np.array([220.0, 20.0, 20.0]) if sample["flagged"] else np.array([255.0, 255.0, 255.0])
        rgb = np.pad(rgb, ((2, 2), (2, 2), (0, 0)), constant_values=0)
        rgb[:2], rgb[-2:], rgb[:, :2], rgb[:, -2:] = frame, frame, frame, frame
        rows.append(rgb)
    grid = np.concatenate(rows, axis=0).astype(np.uint8)
    return np.kron(grid, np.ones((scale, scale, 1), dtype=np.uint8)) if scale > 1 else grid


def save_closest_pairs(
    synthetic: torch.Tensor,
    training: torch.Tensor,
    report: dict,
    path: str | os.PathLike,
    num_pairs: int = 8,
    overwrite: bool = False,
) -> str:
    """Write :func:`closest_pairs_grid` as a PNG (atomically). It shows real training images: keep it with the
    training data, not with synthetic outputs.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from monai_gvae.utils import atomic_path

    info = PngInfo()
    info.add_text(
        "Description", "monai-gvae memorisation check: synthetic sample (left) | nearest training image (right)"
    )
    path = os.fspath(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        Image.fromarray(closest_pairs_grid(synthetic, training, report, num_pairs)).save(
            tmp, format="PNG", pnginfo=info
        )
    return path
