"""Helpers for handlers attached to GVAE engines."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["LOSS_KEYS", "loss_terms"]

LOSS_KEYS = ("loss_d", "loss_g", "loss_rec", "loss_kl", "loss_adv", "gp", "wasserstein")


def loss_terms(output: Mapping) -> dict[str, float]:
    """The scalar loss terms of a ``GVAETrainer`` output, for ``StatsHandler``/``TensorBoardStatsHandler``
    (``output_transform=monai_gvae.engines.loss_terms``)."""
    return {k: float(output[k]) for k in LOSS_KEYS if k in output}
