"""Metrics for generative models (tensor in, number or report out)."""

from .memorization import closest_pairs_grid, memorization_report, nearest_neighbours, save_closest_pairs

__all__ = ["closest_pairs_grid", "memorization_report", "nearest_neighbours", "save_closest_pairs"]
