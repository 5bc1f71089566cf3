"""Plots of benchmark figures, drawn with Pillow (already a dependency; no plotting library needed)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from monai_gvae.utils import atomic_path

__all__ = ["PLOT_COLOURS", "plot_dice_against_k"]

PLOT_COLOURS: list[tuple[int, int, int]] = [
    (90, 90, 90), (0, 158, 115), (213, 94, 0), (0, 114, 178), (204, 121, 167), (150, 150, 150), (230, 159, 0),
    (86, 180, 233),
]
"""Colour-blind-safe (Okabe-Ito) colours, grey first for the baseline."""


def plot_dice_against_k(
    stats: Mapping[tuple[Any, str], tuple[float, float]],
    ks: Sequence[Any],
    k_text: Mapping[Any, str],
    arms: Sequence[str],
    names: Mapping[str, str],
    colours: Mapping[str, tuple[int, int, int]],
    title: str,
    path: str | os.PathLike,
    overwrite: bool,
    legend_width: int = 330,
) -> None:
    """Draw mean ± std per arm against k as a PNG.

    Args:
        stats: ``{(k, arm): (mean, std)}``; missing cells are skipped.
        ks: the x positions, in order; ``k_text[k]`` labels each.
        arms: the lines, in legend order; ``names[arm]`` labels each, drawn in ``colours[arm]``.
        title: text above the plot.
        path: the PNG to write (atomically).
        overwrite: replace an existing ``path``.
        legend_width: pixels right of the plot for the legend.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.

    Example::

        plot_dice_against_k({(5, "a"): (0.7, 0.02)}, [5], {5: "k=5"}, ["a"], {"a": "arm a"},
                            {"a": PLOT_COLOURS[0]}, "Dice", "dice.png", overwrite=True)
    """
    width, height, left, top, bottom = 490 + legend_width, 440, 70, 40, 60
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=13)
    y0 = max(0.0, np.floor(min(m - s for m, s in stats.values()) * 20) / 20)
    y1 = min(1.0, np.ceil(max(m + s for m, s in stats.values()) * 20) / 20)
    if y1 <= y0:
        y0, y1 = max(0.0, y0 - 0.05), min(1.0, y1 + 0.05)
    pw, ph = width - left - legend_width, height - top - bottom

    def xy(i: int, v: float, offset: float = 0.0) -> tuple[float, float]:
        return left + (i + 0.5 + offset) * pw / len(ks), top + (1 - (v - y0) / (y1 - y0)) * ph

    draw.rectangle([left, top, left + pw, top + ph], outline="black")
    for t in np.linspace(y0, y1, 6):
        _, y = xy(0, t)
        draw.line([left - 4, y, left, y], fill="black")
        draw.line([left, y, left + pw, y], fill=(225, 225, 225))
        draw.text((left - 40, y - 6), f"{t:.2f}", fill="black", font=font)
    for i, k in enumerate(ks):
        x, _ = xy(i, y0)
        draw.text((x - 15, top + ph + 8), k_text[k], fill="black", font=font)
    draw.text((left, 12), title, fill="black", font=font)
    draw.text((left + pw / 2 - 60, height - 25), "labelled training slices", fill="black", font=font)
    for a, arm in enumerate(arms):
        colour = colours[arm]
        offset = (a - (len(arms) - 1) / 2) * 0.05
        points = []
        for i, k in enumerate(ks):
            if (k, arm) not in stats:
                continue
            m, s = stats[(k, arm)]
            x, y = xy(i, m, offset)
            _, lo = xy(i, max(y0, m - s), offset)
            _, hi = xy(i, min(y1, m + s), offset)
            draw.line([x, lo, x, hi], fill=colour, width=2)
            draw.line([x - 4, lo, x + 4, lo], fill=colour)
            draw.line([x - 4, hi, x + 4, hi], fill=colour)
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colour)
            points.append((x, y))
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        ly = top + 10 + a * 20
        draw.line([left + pw + 15, ly + 6, left + pw + 40, ly + 6], fill=colour, width=3)
        draw.text((left + pw + 46, ly), names[arm], fill="black", font=font)
    with atomic_path(path, overwrite=overwrite) as tmp:
        img.save(tmp, format="PNG")
