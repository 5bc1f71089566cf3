"""Quality control of synthetic image+label pairs: filtering by critic score or segmenter agreement, and
the calibration of posterior perturbations.

:class:`SyntheticPairFilter` has the ``sample_filter`` signature of the synthesis pool
(``f(images, labels) -> bool tensor (N,)``, images in [-1, 1], labels class indices), so it plugs into
``GVAESynthesize(..., sample_filter=...)``; it can also be called on any batch of pairs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from torch import nn

from monai_gvae.transforms.conditioning import encode_pairs, label_to_condition
from monai_gvae.transforms.utils import from_model_range, unpack_image_label
from monai_gvae.utils import module_device

__all__ = ["DICE_REDUCTIONS", "class_dice", "foreground_dice", "SyntheticPairFilter", "calibrate_posterior_sigma"]

logger = logging.getLogger(__name__)

DICE_REDUCTIONS = ("mean", "min")
"""How :func:`foreground_dice` and :class:`SyntheticPairFilter` reduce the per-class Dice of an item."""


def class_dice(pred: torch.Tensor, label: torch.Tensor, num_classes: int, min_pixels: int = 0) -> torch.Tensor:
    """Dice per item and foreground class between two class-index maps ``(N, 1, *spatial)``.

    Args:
        pred, label: class-index maps ``(N, 1, *spatial)``.
        num_classes: classes, background included.
        min_pixels: classes of which ``label`` holds fewer pixels are left out (NaN): the Dice of a fragment of a
            few pixels is noise. 0: a class counts wherever either map holds it.

    Returns:
        float tensor ``(N, num_classes - 1)``: column ``c - 1`` holds class ``c``'s Dice, NaN where the class is
        absent from both maps of the item (or below ``min_pixels`` in ``label``).

    Raises:
        ValueError: the two maps' shapes differ.

    Example::

        class_dice(prediction, label, num_classes=4)[:, 2]  # class 3's Dice per item (NaN where absent)
    """
    pred, label = torch.as_tensor(pred).long(), torch.as_tensor(label).long()
    if pred.shape != label.shape:
        raise ValueError(f"prediction and label shapes differ: {tuple(pred.shape)} vs {tuple(label.shape)}.")
    n = pred.shape[0]
    columns = []
    for c in range(1, num_classes):
        p = (pred == c).reshape(n, -1)
        t = (label == c).reshape(n, -1)
        denom = (p.sum(1) + t.sum(1)).float()
        dice = 2.0 * (p & t).sum(1).float() / denom.clamp(min=1)
        counted = (denom > 0) & (t.sum(1) >= min_pixels)
        columns.append(torch.where(counted, dice, torch.full_like(dice, float("nan"))))
    return torch.stack(columns, 1) if columns else torch.zeros(n, 0)


def foreground_dice(
    pred: torch.Tensor, label: torch.Tensor, num_classes: int, reduction: str = "mean", min_pixels: int = 0
) -> torch.Tensor:
    """Foreground Dice per item between two class-index maps ``(N, 1, *spatial)``, over classes.

    Classes 1..``num_classes - 1`` absent from both maps of an item are left out; an item with no foreground in
    either map scores 1.

    Args:
        pred, label: class-index maps ``(N, 1, *spatial)``.
        num_classes: classes, background included.
        reduction: ``"mean"`` over the item's classes, or ``"min"``: its worst class (a pair whose one structure
            is wrong scores low even when the others are right).
        min_pixels: as :func:`class_dice` (0: every class either map holds counts).

    Returns:
        float tensor ``(N,)``.

    Raises:
        ValueError: the shapes differ, or an unknown reduction.

    Example::

        foreground_dice(label, label, num_classes=4)  # tensor([1., 1., ...])
    """
    if reduction not in DICE_REDUCTIONS:
        raise ValueError(f"reduction must be one of {DICE_REDUCTIONS}, got {reduction!r}.")
    dice = class_dice(pred, label, num_classes, min_pixels)
    present = ~dice.isnan()
    if reduction == "min":  # classes absent from both maps do not count against the item
        return torch.where(present, dice, torch.ones_like(dice)).amin(1) if dice.shape[1] else torch.ones(len(dice))
    count = present.sum(1)
    total = torch.where(present, dice, torch.zeros_like(dice)).sum(1)
    return torch.where(count > 0, total / count.clamp(min=1), torch.ones(len(dice)))


class SyntheticPairFilter:
    """Accept or reject synthetic image+label pairs by critic score and/or agreement with a segmenter.

    * **Critic**: a trained ``GVAECritic`` scores each pair (a joint critic on image + one-hot label channels,
      a label-conditioned critic on the image given the label as condition, an image-only critic on the
      image); pairs scoring below ``critic_threshold`` are rejected. :meth:`fit_critic_threshold` sets the
      threshold from real pairs (a low quantile of their scores).
    * **Segmenter**: a segmentation network trained on the k real labelled items predicts a label for the
      synthetic image; pairs whose label's foreground Dice against that prediction is below ``min_dice``
      are rejected (the generated label disagrees with its image). ``reduction="mean"`` averages the classes
      present; ``"min"`` asks it of every class, so that an image that renders one structure as a flat blob is
      rejected even when the others agree.

    A pair is kept when it passes every configured test. ``acceptance_rate`` is the kept fraction of all
    pairs seen so far.

    Args:
        num_classes: label classes, background included.
        critic: the critic, or ``None``.
        critic_threshold: minimum critic score (set it, or call :meth:`fit_critic_threshold`).
        segmenter: a module or callable from images (in ``segmenter_range``) ``(N, C, *spatial)`` to logits
            ``(N, num_classes, *spatial)`` (argmax taken) or class indices ``(N, 1, *spatial)``; or ``None``.
        min_dice: minimum foreground Dice between label and segmenter prediction.
        reduction: how the segmenter test reduces classes, ``"mean"`` (of the classes present) or ``"min"``
            (every class present must reach ``min_dice``).
        min_class_pixels: the segmenter test leaves out classes of which a pair's label holds fewer pixels
            (fragments whose Dice is noise); 0: none left out.
        segmenter_range: intensity range the segmenter was trained on (images arrive in [-1, 1]).
        batch_size: pairs per forward pass.

    Raises:
        ValueError: no test configured, an unknown reduction, or a critic without threshold at call time.

    Example::

        keep = SyntheticPairFilter(num_classes=4, segmenter=unet, min_dice=0.6)
        synth = GVAESynthesize(model, prob=0.5, sample_filter=keep)
        ...
        keep.acceptance_rate
    """

    def __init__(
        self,
        num_classes: int,
        critic: nn.Module | None = None,
        critic_threshold: float | None = None,
        segmenter: nn.Module | Callable[[torch.Tensor], torch.Tensor] | None = None,
        min_dice: float | None = None,
        segmenter_range: tuple[float, float] = (0.0, 1.0),
        batch_size: int = 32,
        reduction: str = "mean",
        min_class_pixels: int = 0,
    ) -> None:
        if critic is None and segmenter is None:
            raise ValueError("SyntheticPairFilter needs a critic, a segmenter or both.")
        if segmenter is not None and min_dice is None:
            raise ValueError("a segmenter filter needs min_dice (the Dice below which a pair is rejected).")
        if min_dice is not None and not 0.0 <= min_dice <= 1.0:
            raise ValueError(f"min_dice must be in [0, 1], got {min_dice}.")
        if reduction not in DICE_REDUCTIONS:
            raise ValueError(f"reduction must be one of {DICE_REDUCTIONS}, got {reduction!r}.")
        self.num_classes = int(num_classes)
        self.critic = critic
        self.critic_threshold = critic_threshold
        self.segmenter = segmenter
        self.min_dice = min_dice
        self.segmenter_range = tuple(segmenter_range)
        self.batch_size = int(batch_size)
        self.reduction = reduction
        self.min_class_pixels = int(min_class_pixels)
        self.num_seen = 0
        self.num_accepted = 0
        self.last_scores: dict[str, torch.Tensor] = {}

    @property
    def acceptance_rate(self) -> float | None:
        """Kept fraction of the pairs seen so far (``None`` before any)."""
        return self.num_accepted / self.num_seen if self.num_seen else None

    def reset_stats(self) -> None:
        self.num_seen = self.num_accepted = 0

    # --- scores
    @torch.no_grad()
    def critic_scores(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Critic scores ``(N,)`` of pairs (images in [-1, 1], labels class indices)."""
        if self.critic is None:
            raise ValueError("no critic configured.")
        critic = self.critic
        device = module_device(critic)
        was_training = critic.training
        critic.eval()
        in_channels = int(getattr(critic, "in_channels", images.shape[1]))
        cond_channels = int(getattr(critic, "condition_channels", 0) or 0)
        out = []
        try:
            for start in range(0, images.shape[0], self.batch_size):
                x = images[start : start + self.batch_size].to(device, torch.float32)
                lab = None if labels is None else labels[start : start + self.batch_size]
                if cond_channels:
                    cond = label_to_condition(self._need(lab), self.num_classes, cond_channels).to(device)
                    out.append(critic(x, cond).reshape(-1).float().cpu())
                    continue
                extra = in_channels - x.shape[1]
                if extra > 0:
                    x = torch.cat([x, label_to_condition(self._need(lab), self.num_classes, extra).to(device)], 1)
                out.append(critic(x).reshape(-1).float().cpu())
        finally:
            critic.train(was_training)
        return torch.cat(out)

    @staticmethod
    def _need(labels: torch.Tensor | None) -> torch.Tensor:
        if labels is None:
            raise ValueError("this critic scores image+label pairs: the pairs need labels.")
        return labels

    @torch.no_grad()
    def segmenter_dice(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Foreground Dice ``(N,)`` between each label and the segmenter's prediction for its image (over classes
        as ``reduction`` says)."""
        if self.segmenter is None:
            raise ValueError("no segmenter configured.")
        seg = self.segmenter
        was_training = getattr(seg, "training", None)
        if isinstance(seg, nn.Module):
            seg.eval()
        device = module_device(seg)
        preds = []
        try:
            for start in range(0, images.shape[0], self.batch_size):
                x = from_model_range(images[start : start + self.batch_size], self.segmenter_range).to(device)
                out = torch.as_tensor(seg(x)).float().cpu()
                preds.append(out.argmax(1, keepdim=True) if out.shape[1] > 1 else out.round().long())
        finally:
            if isinstance(seg, nn.Module) and was_training is not None:
                seg.train(was_training)
        return foreground_dice(torch.cat(preds), labels, self.num_classes, self.reduction, self.min_class_pixels)

    def fit_critic_threshold(self, images: torch.Tensor, labels: torch.Tensor | None, quantile: float = 0.1) -> float:
        """Set ``critic_threshold`` to the ``quantile`` of the critic's scores of real pairs, and return it.

        Args:
            images: real images in [-1, 1] ``(N, C, *spatial)`` (e.g. the k labelled items).
            labels: their class-index labels ``(N, 1, *spatial)`` (``None`` for an image-only critic).
            quantile: in [0, 1]; 0.1 rejects synthetic pairs the critic finds less real than 90 % of real ones.
        """
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {quantile}.")
        scores = self.critic_scores(images, labels)
        self.critic_threshold = float(torch.quantile(scores, quantile))
        return self.critic_threshold

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Boolean ``(N,)``: which pairs to keep (images in [-1, 1], labels ``(N, 1, *spatial)`` indices)."""
        images = torch.as_tensor(images)
        keep = torch.ones(images.shape[0], dtype=torch.bool)
        self.last_scores = {}
        if self.critic is not None:
            if self.critic_threshold is None:
                raise ValueError("critic_threshold is not set: pass it or call fit_critic_threshold(real pairs).")
            scores = self.critic_scores(images, labels)
            self.last_scores["critic"] = scores
            keep &= scores >= self.critic_threshold
        if self.segmenter is not None:
            if labels is None:
                raise ValueError("the segmenter test compares generated labels with predictions: pass the labels.")
            dice = self.segmenter_dice(images, torch.as_tensor(labels))
            self.last_scores["dice"] = dice
            keep &= dice >= self.min_dice
        self.num_seen += int(keep.numel())
        self.num_accepted += int(keep.sum())
        return keep


@torch.no_grad()
def calibrate_posterior_sigma(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    sigmas: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0),
    min_dice: float = 0.8,
    draws: int = 4,
    generator: torch.Generator | None = None,
) -> tuple[float, dict[float, float]]:
    """The largest posterior perturbation ``sigma`` whose variants keep labels close to the source labels.

    For each ``sigma``, every real pair is encoded (``mu``), ``draws`` latents ``mu + sigma * eps`` are decoded
    by the joint GVAE, and the generated label is compared with the pair's own label (mean foreground Dice).
    The chosen sigma is the largest whose mean Dice is at least ``min_dice``: variants that move as far from
    the real anatomy as the model allows while their labels still describe it. Calibrate on the labelled
    training items only (never on held-out data).

    Args:
        model: a joint image+label ``GVAE`` (eval mode is set here and restored).
        images: real images in [-1, 1] ``(N, C, *spatial)``.
        labels: their class indices ``(N, 1, *spatial)``.
        sigmas: candidates, in units of the prior's standard deviation.
        min_dice: Dice the variants' labels must keep on average.
        draws: perturbations per item and sigma.
        generator: CPU generator of the perturbations.

    Returns:
        ``(sigma, table)`` with ``table[sigma]`` the mean Dice. If no candidate reaches ``min_dice``, the
        smallest candidate is returned (and a warning logged): the model does not even reconstruct the labels.

    Raises:
        ValueError: a model without label channels (a label-conditioned model's labels are exact anyway).

    Example::

        sigma, table = calibrate_posterior_sigma(gvae, images, labels, min_dice=0.8)
        synth = GVAESynthesize(gvae, mode="posterior", sigma=sigma)
    """
    if not getattr(model, "label_channels", 0):
        raise ValueError(
            "calibrate_posterior_sigma needs a GVAE that generates labels (label channels); a label-conditioned "
            "GVAE keeps the given label exactly, so any sigma keeps it."
        )
    if draws < 1 or not len(sigmas):
        raise ValueError("need at least one sigma and one draw.")
    was_training = model.training
    model.eval()
    device = module_device(model)
    try:
        mu, _ = encode_pairs(model, images, labels)
        table: dict[float, float] = {}
        for sigma in sorted(float(s) for s in sigmas):
            dices = []
            for _ in range(draws if sigma > 0 else 1):
                z = mu + sigma * torch.randn(mu.shape, generator=generator)
                out = model.decode(z.to(device)).float().cpu()
                _, gen_labels = unpack_image_label(out, model.image_channels, model.num_classes)
                dices.append(foreground_dice(gen_labels, labels, model.num_classes))
            table[sigma] = float(torch.cat(dices).mean())
    finally:
        model.train(was_training)
    ok = [s for s, d in table.items() if d >= min_dice]
    if not ok:
        best = min(table)
        logger.warning(
            "no sigma keeps a mean label Dice >= %.2f (table %s); returning sigma=%s", min_dice, table, best
        )
        return best, table
    return max(ok), table
