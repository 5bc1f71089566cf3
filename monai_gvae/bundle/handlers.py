"""Ignite handlers for GVAE training: PNG grids of samples during and after training."""

from __future__ import annotations

import os

import torch
from ignite.engine import Engine, Events

from monai_gvae.bundle.visualize import save_sample_grid
from monai_gvae.networks.nets.gvae import GVAE

__all__ = ["SampleGridHandler"]


class SampleGridHandler:
    """Writes a PNG grid of prior samples from a ``GVAE`` every ``interval`` epochs and when training completes.

    The same seeded latents are used every time, so successive grids show the same samples improving.
    Only rank 0 writes (in a DDP run attach it on every rank; the others skip).

    Args:
        network: the ``GVAE`` (unwrapped).
        output_dir: folder of the PNGs.
        num_samples: samples in the grid.
        interval: epochs between grids (0: only at the end).
        seed: seed of the latents.
        filename: name of the final grid; intermediate ones are ``samples_epoch{N}.png``.
        keep_intermediate: keep every intermediate grid (otherwise only the latest, overwritten).
        condition: for a label-conditioned GVAE, the conditions ``(N, condition_channels, *spatial)`` of the
            grid's samples (``num_samples`` is then ``N``); each cell shows the image generated for the
            condition beside the condition's label drawn over it. ``None`` with a conditional GVAE: the
            conditions of the trainer's latest batch (its last ``condition_channels`` channels, at most
            ``num_samples`` of them) are used.

    Raises:
        ValueError: a condition for an unconditional GVAE; at write time, a conditional GVAE with no condition
            given and no batch seen.

    Example::

        SampleGridHandler(gvae, output_dir="runs/x", num_samples=16).attach(trainer)
    """

    def __init__(
        self,
        network: GVAE,
        output_dir: str,
        num_samples: int = 16,
        interval: int = 1,
        seed: int = 0,
        filename: str = "samples.png",
        keep_intermediate: bool = False,
        condition: torch.Tensor | None = None,
    ) -> None:
        self.conditional = bool(getattr(network, "condition_channels", 0))
        if condition is not None and not self.conditional:
            raise ValueError("SampleGridHandler: `condition` given but the GVAE is not conditional.")
        self.condition = None if condition is None else torch.as_tensor(condition).float()
        self._batch_condition: torch.Tensor | None = None
        if self.condition is not None:
            num_samples = int(self.condition.shape[0])
        self.network, self.output_dir, self.num_samples = network, output_dir, num_samples
        self.interval, self.seed, self.filename, self.keep_intermediate = interval, seed, filename, keep_intermediate
        self.written: list[str] = []

    def attach(self, engine: Engine) -> None:
        if self.interval > 0:
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self._epoch)
        engine.add_event_handler(Events.COMPLETED, self._final)

    def _epoch(self, engine: Engine) -> None:
        self._remember_batch(engine)
        name = f"samples_epoch{engine.state.epoch}.png" if self.keep_intermediate else "samples_latest.png"
        self.write(os.path.join(self.output_dir, name))

    def _final(self, engine: Engine) -> None:
        self._remember_batch(engine)
        self.write(os.path.join(self.output_dir, self.filename))

    def _remember_batch(self, engine: Engine) -> None:
        """A conditional GVAE without fixed conditions: keep those of the trainer's latest batch."""
        if not self.conditional or self.condition is not None:
            return
        batch = engine.state.batch
        x = batch.get("image") if isinstance(batch, dict) else (batch[0] if isinstance(batch, (list, tuple)) else batch)
        if isinstance(x, torch.Tensor):
            channels = int(self.network.condition_channels)
            self._batch_condition = x[: self.num_samples, -channels:].detach().float().cpu()

    @torch.no_grad()
    def write(self, path: str) -> str | None:
        """Draw the seeded samples and write the grid to ``path`` (rank 0 only)."""
        if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
            return None
        was_training = self.network.training
        self.network.eval()
        rng = torch.Generator().manual_seed(self.seed)
        condition = self.condition if self.condition is not None else self._batch_condition
        if self.conditional and condition is None:
            raise ValueError("SampleGridHandler: a label-conditioned GVAE needs `condition`, or a trainer batch to take it from.")
        try:
            if condition is None:
                samples = self.network.sample(self.num_samples, generator=rng)
            else:
                device = next(self.network.parameters()).device
                samples = self.network.sample(condition.shape[0], generator=rng, condition=condition.to(device))
                samples = torch.cat([samples.float().cpu(), condition.cpu()], dim=1)
        finally:
            self.network.train(was_training)
        save_sample_grid(samples, path, self.network.image_channels, self.network.num_classes)
        self.written.append(path)
        return path
