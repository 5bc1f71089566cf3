"""Seeded prior latents that do not depend on how they are batched.

Synthesis (``monai-gvae synthesize``, the bundles' ``inference.yaml``) and evaluation
(:func:`monai_gvae.metrics.evaluate`) draw their prior samples here, so sample ``i`` of a seed is the same
latent in a manifest, in a sample grid and in an evaluation.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["sample_latents"]


@torch.no_grad()
def sample_latents(latent_size: int, seed: int, start: int, count: int) -> torch.Tensor:
    """Latents ``start .. start + count - 1`` of ``seed``: ``(count, latent_size)`` from ``N(0, I)``.

    Latent ``i`` of seed ``s`` comes from its own CPU ``torch.Generator`` seeded with a hash of ``(s, i)``
    (``numpy.random.SeedSequence``), so it does not depend on the batch size, the number of samples drawn
    or the device: ``(seed, index)`` in a manifest reproduces one sample.

    Args:
        latent_size: dimension of each latent.
        seed: the seed of the sequence.
        start: index of the first latent.
        count: how many latents (``>= 0``).

    Returns:
        float32 CPU tensor ``(count, latent_size)``.

    Example::

        z = sample_latents(128, seed=1, start=0, count=8)
        torch.equal(z[4:], sample_latents(128, seed=1, start=4, count=4))  # True
    """
    rows = []
    for index in range(start, start + count):
        state = int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0])
        rows.append(torch.randn(latent_size, generator=torch.Generator().manual_seed(state)))
    if not rows:
        return torch.empty(0, latent_size)
    return torch.stack(rows)
