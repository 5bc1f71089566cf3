"""Segmentation consistency: a segmenter must find in a generated image the label map it was generated for."""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.losses import DiceCELoss
from torch import nn

__all__ = ["SegmentationConsistencyLoss"]


class SegmentationConsistencyLoss(nn.Module):
    """``weight * loss(segmenter(G(z, c)), argmax(c))`` for a label-conditioned generator.

    A simplified form of GenSeg's idea (Zhang et al., "Generative AI enables medical image segmentation in
    ultra low-data regimes", Nature Communications 2025): segmentation performance drives the mask-to-image
    generator. Here a segmenter trained on the real labelled pairs is frozen, segments the generated images, and its
    DiceCE against the conditioning label map is added to the encoder-generator loss, so that the generator is
    pushed to draw the boundaries its label map claims (a pair whose image does not show its label teaches a
    segmenter the wrong thing). Gradients reach the generator through the images only; the segmenter is not
    trained (its parameters are frozen and it is kept in eval mode).

    Args:
        segmenter: a network mapping images ``(N, C, *spatial)`` in ``input_range`` to class logits
            ``(N, num_classes, *spatial)`` (e.g. MONAI's ``UNet``).
        weight: the term's weight, ``>= 0``.
        loss: the segmentation loss taking ``(logits, class-index target (N, 1, *spatial))``; default
            ``DiceCELoss(to_onehot_y=True, softmax=True)``.
        input_range: the intensity range the segmenter was trained on; generated images (``tanh``, [-1, 1]) are
            mapped to it.

    Raises:
        ValueError: a negative weight or an empty ``input_range``.

    Example::

        consistency = SegmentationConsistencyLoss(unet_trained_on_k_pairs, weight=0.5)
        term = consistency(fakes, one_hot_conditions)  # added to the generator's loss
    """

    def __init__(
        self,
        segmenter: nn.Module,
        weight: float = 1.0,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        input_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__()
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}.")
        low, high = float(input_range[0]), float(input_range[1])
        if not high > low:
            raise ValueError(f"input_range must be (low, high) with high > low, got {input_range}.")
        self.segmenter = segmenter.eval().requires_grad_(False)
        self.weight = float(weight)
        self.loss = loss if loss is not None else DiceCELoss(to_onehot_y=True, softmax=True)
        self.input_range = (low, high)

    def train(self, mode: bool = True) -> SegmentationConsistencyLoss:
        """The frozen segmenter stays in eval mode (its normalisation statistics are those it was trained with)."""
        super().train(mode)
        self.segmenter.eval()
        return self

    def forward(self, images: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """``images`` ``(N, C, *spatial)`` in [-1, 1]; ``condition`` the one-hot label maps ``(N, classes, *spatial)``
        they were generated for. Returns the weighted scalar loss."""
        if images.shape[0] != condition.shape[0] or images.shape[2:] != condition.shape[2:]:
            raise ValueError(
                f"images {tuple(images.shape)} and conditions {tuple(condition.shape)} must have the same batch and "
                "spatial sizes."
            )
        low, high = self.input_range
        logits = self.segmenter((images.float() + 1) / 2 * (high - low) + low)
        return self.weight * self.loss(logits, condition.argmax(1, keepdim=True))
