"""Plots of benchmark figures, drawn with Pillow (already a dependency; no plotting library needed)."""

from __future__ import annotations

import os
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from monai_gvae.utils import atomic_path

__all__ = ["PLOT_COLOURS", "plot_dice_against_k", "CurveSeries", "CurvePanel", "plot_curves", "images_side_by_side"]

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


@dataclass
class CurveSeries:
    """One line of a :class:`CurvePanel`: ``points`` ``(x, y)`` joined in order, in ``colour``; ``label`` (or
    ``None``: not in the legend, e.g. one seed of a model whose mean is labelled); ``width`` in pixels."""

    label: str | None
    colour: tuple[int, int, int]
    points: Sequence[tuple[float, float]]
    width: int = 1


@dataclass
class CurvePanel:
    """One plot of :func:`plot_curves`: a title (what the y axis shows), its lines and a logarithmic y axis
    (``log_y``, used only when every value is positive)."""

    title: str
    series: list[CurveSeries] = field(default_factory=list)
    log_y: bool = False


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    """Tick values: 1, 2, 5 x 10^k inside [lo, hi] on a log axis (evenly spaced in log if fewer than 3 fit), five
    evenly spaced values on a linear one."""
    if log:
        decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        for mantissas in ((1, 2, 5), (1,)):  # fewer labels when the range spans many decades
            ticks = [m * 10.0**e for e in decades for m in mantissas if lo <= m * 10.0**e <= hi]
            if len(ticks) <= 8:
                break
        return ticks if len(ticks) >= 3 else list(np.geomspace(lo, hi, 4))
    return list(np.linspace(lo, hi, 5))


def _round_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` ticks at multiples of 1, 2 or 5 x 10^k inside [lo, hi] (iterations: 0, 500, 1000, ...)."""
    raw = (hi - lo) / max(1, count - 1)
    if raw <= 0:
        return [lo]
    step = min((m * 10.0 ** math.floor(math.log10(raw)) for m in (1, 2, 5, 10)), key=lambda v: abs(v - raw))
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _draw_panel(panel: CurvePanel, x_label: str, size: tuple[int, int], font: Any) -> Image.Image:
    width, height, left, top, bottom, right = size[0], size[1], 80, 34, 50, 28
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    points = [p for s in panel.series for p in s.points if math.isfinite(p[0]) and math.isfinite(p[1])]
    draw.text((left, 10), panel.title, fill="black", font=font)
    pw, ph = width - left - right, height - top - bottom
    draw.rectangle([left, top, left + pw, top + ph], outline="black")
    if not points:
        draw.text((left + 10, top + 10), "no points", fill="black", font=font)
        return img
    log = panel.log_y and min(y for _, y in points) > 0
    x0, x1 = min(x for x, _ in points), max(x for x, _ in points)
    y0, y1 = min(y for _, y in points), max(y for _, y in points)
    if x1 <= x0:
        x0, x1 = x0 - 1, x1 + 1
    if log:
        y0, y1 = y0 / 1.2, y1 * 1.2
    else:
        pad = 0.05 * (y1 - y0) if y1 > y0 else max(abs(y0) * 0.1, 1e-6)
        y0, y1 = y0 - pad, y1 + pad

    def yv(v: float) -> float:
        return math.log10(v) if log else v

    def xy(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * pw, top + (1 - (yv(y) - yv(y0)) / (yv(y1) - yv(y0))) * ph)

    for t in _ticks(y0, y1, log):
        _, y = xy(x0, t)
        draw.line([left, y, left + pw, y], fill=(225, 225, 225))
        draw.line([left - 4, y, left, y], fill="black")
        draw.text((4, y - 6), f"{t:.3g}", fill="black", font=font)
    for t in _round_ticks(x0, x1):
        x, _ = xy(t, y0)
        draw.line([x, top + ph, x, top + ph + 4], fill="black")
        draw.text((x - 14, top + ph + 8), f"{t:g}", fill="black", font=font)
    draw.text((left + pw / 2 - 30, height - 20), x_label, fill="black", font=font)
    for series in sorted(panel.series, key=lambda s: s.width):  # thick (labelled) lines on top
        pts = [xy(x, y) for x, y in series.points if math.isfinite(x) and math.isfinite(y) and (y > 0 or not log)]
        if len(pts) > 1:
            draw.line(pts, fill=series.colour, width=series.width)
        for x, y in pts:
            r = 1 + series.width
            draw.ellipse([x - r, y - r, x + r, y + r], fill=series.colour)
    return img


def plot_curves(
    panels: Sequence[CurvePanel],
    path: str | os.PathLike,
    overwrite: bool,
    x_label: str = "iterations",
    title: str = "",
    panel_size: tuple[int, int] = (420, 320),
    legend_width: int = 200,
) -> None:
    """Draw metric curves (e.g. a validation score against training iterations) as panels side by side in one PNG,
    with one legend on the right (the labelled series of all panels).

    Args:
        panels: the plots, left to right.
        path: the PNG to write (atomically).
        overwrite: replace an existing ``path``.
        x_label: the x axis of every panel.
        title: text above the panels.
        panel_size: pixels per panel.
        legend_width: pixels right of the panels for the legend.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        ValueError: no panels.

    Example::

        panel = CurvePanel("Gaussian MMD^2 (validation)", [CurveSeries("GVAE", PLOT_COLOURS[1], [(250, 0.2),
                           (500, 0.1)], width=3)], log_y=True)
        plot_curves([panel], "curves.png", overwrite=True)
    """
    if not panels:
        raise ValueError("plot_curves needs at least one panel.")
    font = ImageFont.load_default(size=13)
    head = 28 if title else 0
    img = Image.new("RGB", (panel_size[0] * len(panels) + legend_width, panel_size[1] + head), "white")
    draw = ImageDraw.Draw(img)
    if title:
        draw.text((10, 8), title, fill="black", font=font)
    for i, panel in enumerate(panels):
        img.paste(_draw_panel(panel, x_label, panel_size, font), (i * panel_size[0], head))
    legend: dict[str, tuple[int, int, int]] = {}
    for panel in panels:
        for series in panel.series:
            if series.label is not None:
                legend.setdefault(series.label, series.colour)
    lx = panel_size[0] * len(panels) + 10
    for j, (label, colour) in enumerate(legend.items()):
        ly = head + 40 + j * 20
        draw.line([lx, ly + 6, lx + 25, ly + 6], fill=colour, width=3)
        draw.text((lx + 31, ly), label, fill="black", font=font)
    with atomic_path(path, overwrite=overwrite) as tmp:
        img.save(tmp, format="PNG")


def images_side_by_side(
    images: Sequence[tuple[str, str | os.PathLike]],
    path: str | os.PathLike,
    overwrite: bool,
    title: str = "",
    gap: int = 12,
) -> None:
    """Paste PNG files (e.g. the sample grids of several models) left to right into one PNG, each under its
    label, so that a reader compares them at the same scale.

    Args:
        images: ``(label, png path)`` pairs, left to right.
        path: the PNG to write (atomically).
        overwrite: replace an existing ``path``.
        title: text above the labels.
        gap: white pixels between the images.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        ValueError: no images.

    Example::

        images_side_by_side([("real", "real_test_images.png"), ("GVAE", "samples_gvae_z1000_seed0.png")],
                            "samples_side_by_side.png", overwrite=True)
    """
    if not images:
        raise ValueError("images_side_by_side needs at least one image.")
    font = ImageFont.load_default(size=13)
    tiles = []
    for label, file in images:
        with Image.open(file) as im:
            tiles.append((label, im.convert("RGB")))
    head = (22 if title else 0) + 20
    width = sum(t.width for _, t in tiles) + gap * (len(tiles) + 1)
    img = Image.new("RGB", (width, max(t.height for _, t in tiles) + head + gap), "white")
    draw = ImageDraw.Draw(img)
    if title:
        draw.text((gap, 4), title, fill="black", font=font)
    x = gap
    for label, tile in tiles:
        draw.text((x, head - 18), label, fill="black", font=font)
        img.paste(tile, (x, head))
        x += tile.width + gap
    with atomic_path(path, overwrite=overwrite) as tmp:
        img.save(tmp, format="PNG")
