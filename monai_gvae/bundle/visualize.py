"""PNG grids of generated samples: each image beside its generated label drawn over it."""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from monai_gvae.transforms.utils import unpack_image_label
from monai_gvae.utils import atomic_path

__all__ = ["sample_grid", "save_sample_grid", "LABEL_PALETTE"]

# Class 0 (background) is left transparent; the others cycle through distinguishable colours.
LABEL_PALETTE = np.array(
    [[0, 0, 0], [230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240]],
    dtype=np.float32,
)


def _middle_slice(t: torch.Tensor) -> torch.Tensor:
    """(N, C, D, H, W) -> (N, C, H, W) at the middle of the first spatial axis; 2D passes through."""
    return t[:, :, t.shape[2] // 2] if t.ndim == 5 else t


def sample_grid(
    samples: torch.Tensor,
    image_channels: int,
    num_classes: int | None = None,
    nrow: int = 8,
    alpha: float = 0.45,
) -> np.ndarray:
    """Arrange samples in [-1, 1] as an RGB uint8 grid; with labels, each cell is ``image | overlay``.

    Args:
        samples: ``(N, C + L, H, W)`` or ``(N, C + L, D, H, W)`` (the middle slice is shown).
        image_channels: number of image channels (the first is shown in grey).
        num_classes: label classes, or ``None`` when there are no label channels.
        nrow: cells per row.
        alpha: label overlay opacity.

    Returns:
        ``(H_grid, W_grid, 3)`` uint8 array.
    """
    image, label = unpack_image_label(_middle_slice(samples.detach().float().cpu()), image_channels, num_classes)
    grey = image[:, 0].numpy()
    cells = []
    for i in range(grey.shape[0]):
        rgb = np.repeat(grey[i][..., None] * 255.0, 3, axis=-1)
        if label is None:
            cells.append(rgb)
            continue
        idx = label[i, 0].numpy()
        colours = LABEL_PALETTE[1:][(idx - 1) % (len(LABEL_PALETTE) - 1)]
        overlay = np.where((idx > 0)[..., None], (1 - alpha) * rgb + alpha * colours, rgb)
        cells.append(np.concatenate([rgb, np.full((rgb.shape[0], 2, 3), 255.0), overlay], axis=1))
    h, w = cells[0].shape[:2]
    ncol = min(nrow, len(cells))
    nrows = -(-len(cells) // ncol)
    pad = 4
    grid = np.full((nrows * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255.0, dtype=np.float32)
    for k, cell in enumerate(cells):
        r, c = divmod(k, ncol)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = cell
    return np.clip(grid, 0, 255).astype(np.uint8)


def save_sample_grid(
    samples: torch.Tensor,
    path: str | os.PathLike,
    image_channels: int,
    num_classes: int | None = None,
    nrow: int = 8,
    scale: int = 2,
) -> str:
    """Write :func:`sample_grid` as a PNG (atomically: a temporary file, then a rename).

    Args:
        samples: see :func:`sample_grid`.
        path: PNG file to write; its folder is created.
        image_channels: number of image channels.
        num_classes: label classes or ``None``.
        nrow: cells per row.
        scale: integer upscaling (nearest) so small images stay visible.

    Returns:
        the path written.
    """
    grid = sample_grid(samples, image_channels, num_classes, nrow)
    img = Image.fromarray(grid)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path = os.fspath(path)
    with atomic_path(path, overwrite=True) as tmp:
        img.save(tmp, format="PNG")
    return path
