"""``GVAEEvaluator``: deterministic reconstructions ``G(mu(x))`` of a validation set, for MONAI metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from monai.engines import Evaluator
from monai.engines.utils import default_metric_cmp_fn, default_prepare_batch

from monai_gvae.networks.nets.gvae import GVAE

from .utils import GVAEKeys, split_condition

__all__ = ["GVAEEvaluator"]


class GVAEEvaluator(Evaluator):
    """Runs ``G(mu(x))`` over a validation loader; the output holds ``image``/``label`` (the input) and
    ``pred`` (the reconstruction; for a label-conditioned GVAE, ``G(mu(x, c), c)`` with the batch's last
    ``condition_channels`` channels as ``c``, and ``image``/``label`` the image part), so MONAI/Ignite metrics such as ``monai.handlers.MeanAbsoluteError``
    (``output_transform=from_engine(["pred", "label"])``) attach as to any evaluator. Use it with
    ``monai.handlers.ValidationHandler`` on the ``GVAETrainer``.

    Args:
        device: device to evaluate on.
        val_data_loader: loader of dicts (the same pre-processing as training).
        network: the ``GVAE`` (not a DDP wrapper).
        prepare_batch, epoch_length, non_blocking, iteration_update, postprocessing, key_val_metric,
        additional_metrics, metric_cmp_fn, val_handlers, amp, decollate, to_kwargs, amp_kwargs:
        as in ``monai.engines.SupervisedEvaluator``.

    Example::

        evaluator = GVAEEvaluator("cpu", val_loader, gvae,
                                  key_val_metric={"val_mae": MeanAbsoluteError(output_transform=from_engine(["pred", "label"]))})
        evaluator.run()
    """

    def __init__(
        self,
        device: str | torch.device,
        val_data_loader: Iterable,
        network: GVAE,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        prepare_batch: Callable = default_prepare_batch,
        iteration_update: Callable | None = None,
        postprocessing: Callable | None = None,
        key_val_metric: dict | None = None,
        additional_metrics: dict | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        val_handlers: Sequence | None = None,
        amp: bool = False,
        decollate: bool = False,
        to_kwargs: dict | None = None,
        amp_kwargs: dict | None = None,
    ) -> None:
        super().__init__(
            device=device,
            val_data_loader=val_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=prepare_batch,
            iteration_update=iteration_update,
            postprocessing=postprocessing,
            key_val_metric=key_val_metric,
            additional_metrics=additional_metrics,
            metric_cmp_fn=metric_cmp_fn,
            val_handlers=val_handlers,
            amp=amp,
            decollate=decollate,
            to_kwargs=to_kwargs,
            amp_kwargs=amp_kwargs,
        )
        self.network = network

    def _iteration(self, engine: GVAEEvaluator, batchdata: dict | Sequence) -> dict[str, Any]:
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        # a label-conditioned GVAE: the batch's last channels are the condition
        x, condition = split_condition(
            x,
            int(getattr(engine.network, "condition_channels", 0) or 0),
            getattr(getattr(engine.network, "generator", None), "out_channels", None),
        )
        engine.network.eval()
        with torch.no_grad(), torch.autocast(engine.state.device.type, enabled=engine.amp, **engine.amp_kwargs):
            mu, logvar = engine.network.encode(x, condition)
            recon = engine.network.decode(mu, condition)
        return {GVAEKeys.IMAGE: x, GVAEKeys.LABEL: x, GVAEKeys.PRED: recon.float(), GVAEKeys.MU: mu, GVAEKeys.LOGVAR: logvar}
