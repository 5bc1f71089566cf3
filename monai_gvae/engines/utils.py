"""What the GVAE engines and the handlers attached to them share: the keys of the engines' outputs, the list of loss
terms, and the split of a batch into the model's input and its condition channels."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from monai.utils import StrEnum

__all__ = ["GVAEKeys", "LOSS_KEYS", "loss_terms", "lower_is_better", "split_condition"]


class GVAEKeys(StrEnum):
    """Keys of the output dicts of ``GVAETrainer`` and ``GVAEEvaluator`` (``engine.state.output``), as MONAI's
    ``GanKeys``/``CommonKeys``; each key is a ``str``, so ``output["loss_g"]`` and ``output[GVAEKeys.LOSS_G]`` are
    the same entry.

    * ``IMAGE``, ``LABEL``: the input batch (image part of a conditional batch); ``LABEL`` is the reconstruction
      target, i.e. the input again. ``PRED``: its reconstruction (the prior samples for ``objective="wgan_gp"``).
    * ``MU``, ``LOGVAR``: the encoder's posterior (evaluator).
    * ``LOSS_D`` (critic loss), ``GP`` (gradient penalty), ``WASSERSTEIN`` (``E[D(real)] - E[D(fake)]``),
      ``LOSS_G`` (encoder-generator loss) and its terms ``LOSS_REC``, ``LOSS_KL``, ``LOSS_ADV``, ``LOSS_SEG`` (the
      segmentation-consistency term, 0.0 without one); ``KL_WEIGHT``: the KL weight of the iteration (warm-up).
    * alpha-GAN's code critic (``objective="alpha_gan"``; 0.0 otherwise): ``LOSS_CODE_CRITIC`` (its loss),
      ``CODE_GP`` (its gradient penalty on latent interpolates) and the encoder's term ``LOSS_CODE``
      (``-E[C(E(x))]``, part of ``LOSS_G``).

    Example::

        trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: print(e.state.output[GVAEKeys.LOSS_G]))
    """

    IMAGE = "image"  # the values of MONAI's CommonKeys, so that MONAI's handlers find them
    LABEL = "label"
    PRED = "pred"
    MU = "mu"
    LOGVAR = "logvar"
    LOSS_D = "loss_d"
    GP = "gp"
    WASSERSTEIN = "wasserstein"
    LOSS_G = "loss_g"
    LOSS_REC = "loss_rec"
    LOSS_KL = "loss_kl"
    LOSS_ADV = "loss_adv"
    LOSS_SEG = "loss_seg"
    LOSS_CODE = "loss_code"
    LOSS_CODE_CRITIC = "loss_code_critic"
    CODE_GP = "code_gp"
    KL_WEIGHT = "kl_weight"


LOSS_KEYS: tuple[GVAEKeys, ...] = (
    GVAEKeys.LOSS_D,
    GVAEKeys.LOSS_G,
    GVAEKeys.LOSS_REC,
    GVAEKeys.LOSS_KL,
    GVAEKeys.LOSS_ADV,
    GVAEKeys.LOSS_SEG,
    GVAEKeys.GP,
    GVAEKeys.WASSERSTEIN,
    GVAEKeys.LOSS_CODE,
    GVAEKeys.LOSS_CODE_CRITIC,
    GVAEKeys.CODE_GP,
)
"""The loss terms of a ``GVAETrainer`` output (the critic's, then the encoder-generator's; terms an objective does
not use are 0.0)."""


def loss_terms(output: Any, keys: Iterable[str] = LOSS_KEYS) -> dict[str, float]:
    """The scalar loss terms of a ``GVAETrainer`` output as floats, for ``StatsHandler``/``TensorBoardStatsHandler``
    (``output_transform=monai_gvae.engines.loss_terms``) or a progress bar.

    Args:
        output: ``engine.state.output``.
        keys: the terms to read (default :data:`LOSS_KEYS`); those absent or ``None`` in ``output`` are left out.

    Returns:
        ``{key: float}``; empty when ``output`` is not a mapping (an engine that has not run an iteration).

    Example::

        StatsHandler(output_transform=loss_terms).attach(trainer)
        ProgressBar().attach(trainer, output_transform=lambda o: loss_terms(o, (GVAEKeys.LOSS_G, GVAEKeys.LOSS_D)))
    """
    if not isinstance(output, Mapping):
        return {}
    return {str(k): float(output[k]) for k in keys if output.get(k) is not None}


def split_condition(
    batch: torch.Tensor, condition_channels: int, image_channels: int | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(model input, condition)`` of a batch for a label-conditioned GVAE: the condition is the batch's last
    ``condition_channels`` channels (``PackImageLabeld``'s one-hot label after the image).

    Args:
        batch: ``(N, C, *spatial)``.
        condition_channels: channels of the condition; 0 for an unconditional model (the batch is returned as is).
        image_channels: the model's input channels (the generator's ``out_channels``); ``None`` takes all channels
            before the condition.

    Returns:
        ``(batch[:, :image_channels], batch[:, image_channels:])``, or ``(batch, None)`` without a condition.

    Raises:
        ValueError: the batch does not have ``image_channels + condition_channels`` channels.

    Example::

        x, condition = split_condition(batch, gvae.condition_channels, gvae.generator.out_channels)
    """
    if not condition_channels:
        return batch, None
    channels = batch.shape[1] - condition_channels if image_channels is None else int(image_channels)
    if channels < 1 or batch.shape[1] != channels + condition_channels:
        raise ValueError(
            f"a conditional GVAE with {channels if image_channels is not None else 'at least 1'} image channel(s) and "
            f"{condition_channels} condition channel(s) needs batches of "
            f"{channels + condition_channels if image_channels is not None else f'more than {condition_channels}'} "
            "channels (image first, then the condition, e.g. PackImageLabeld's one-hot label), got shape "
            f"{tuple(batch.shape)}."
        )
    return batch[:, :channels], batch[:, channels:]


def lower_is_better(current_metric: float, prev_best: float) -> bool:
    """``metric_cmp_fn`` of MONAI workflows for a key metric where lower is better (an error such as the bundles'
    ``val_reconstruction_mae``): ``current_metric < prev_best``.

    MONAI's default, ``monai.engines.utils.default_metric_cmp_fn``, keeps the largest value as the best one, so a
    falling error would log its first value as ``best value`` and checkpoint on the wrong epochs.

    Args:
        current_metric: the metric of this validation.
        prev_best: the best metric so far.

    Returns:
        whether ``current_metric`` is the new best.

    Example::

        evaluator = GVAEEvaluator("cpu", val_loader, gvae, key_val_metric={"val_mae": mae},
                                  metric_cmp_fn=lower_is_better)
    """
    return current_metric < prev_best
