"""Segmentation consistency: a segmenter must find in a generated image the label map it was generated for."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from monai.losses import DiceCELoss
from torch import nn

__all__ = ["SegmentationConsistencyLoss", "SegmentationGradientMatchingLoss"]


def _to_input_range(images: torch.Tensor, input_range: tuple[float, float]) -> torch.Tensor:
    """Images in [-1, 1] (the generator's ``tanh``) mapped to the intensity range a segmenter was trained on."""
    low, high = input_range
    return (images.float() + 1) / 2 * (high - low) + low


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

    objective = "consistency"
    needs_real_images = False  # GVAETrainer passes the real pairs only to a term that compares with them

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
        logits = self.segmenter(_to_input_range(images, self.input_range))
        return self.weight * self.loss(logits, condition.argmax(1, keepdim=True))

    def segmenter_step(self) -> None:
        """Nothing: this term's segmenter is frozen (GVAETrainer calls it after every generator step, as for
        :class:`SegmentationGradientMatchingLoss`, whose segmenter copy trains)."""


class SegmentationGradientMatchingLoss(nn.Module):
    """Generated images must teach a segmenter what the real images of the same label maps teach it.

    A closer form of GenSeg's bi-level objective than :class:`SegmentationConsistencyLoss`: GenSeg updates the
    generator so that a segmenter *trained on its images* does better on real pairs. To first order in the
    segmenter's step, that is the alignment of two parameter gradients of the segmentation loss, one from the
    generated pairs and one from the real pairs (the gradient-matching objective of dataset condensation, Zhao et
    al., ICLR 2021). The term is ``weight * mean over weight tensors of (1 - cos(g_generated, g_real))`` in
    ``[0, 2 * weight]``, scale-free, so the segmenter's learning rate does not enter it; gradients reach the
    generator through the images (a double backward through the segmenter).

    The segmenter is this module's own copy (the network given is not modified) and keeps training: after each
    term, :meth:`segmenter_step` takes one Adam step on the real and the (detached) generated pairs, so the
    gradients are matched along a training trajectory rather than at one point, as GenSeg's lower level trains
    its segmenter on both. ``segmenter_lr=0`` keeps it fixed.

    Args:
        segmenter: a network mapping images ``(N, C, *spatial)`` in ``input_range`` to class logits (e.g. the UNet
            trained on the real labelled pairs); copied.
        weight: the term's weight, ``>= 0``.
        input_range: the intensity range the segmenter was trained on; images in [-1, 1] are mapped to it.
        segmenter_lr: Adam learning rate of the copy's own training (``0``: fixed).

    Raises:
        ValueError: a negative weight or learning rate, or an empty ``input_range``.

    Example::

        matching = SegmentationGradientMatchingLoss(unet_trained_on_k_pairs, weight=1.0)
        term = matching(fakes, fake_conditions, real_images, real_conditions)  # added to the generator's loss
        matching.segmenter_step()  # after the generator's step
    """

    objective = "gradient_matching"
    needs_real_images = True

    def __init__(
        self,
        segmenter: nn.Module,
        weight: float = 1.0,
        input_range: tuple[float, float] = (0.0, 1.0),
        segmenter_lr: float = 1e-4,
    ) -> None:
        super().__init__()
        if weight < 0 or segmenter_lr < 0:
            raise ValueError(f"weight and segmenter_lr must be >= 0, got {weight} and {segmenter_lr}.")
        low, high = float(input_range[0]), float(input_range[1])
        if not high > low:
            raise ValueError(f"input_range must be (low, high) with high > low, got {input_range}.")
        self.segmenter = copy.deepcopy(segmenter).train().requires_grad_(True)
        self.weight = float(weight)
        self.input_range = (low, high)
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True)
        self.segmenter_lr = float(segmenter_lr)
        self._optimizer = torch.optim.Adam(self.segmenter.parameters(), self.segmenter_lr) if segmenter_lr > 0 else None
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None

    def _segment_loss(self, images: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        logits = self.segmenter(_to_input_range(images, self.input_range))
        return self.loss(logits, condition.argmax(1, keepdim=True))

    def forward(
        self, images: torch.Tensor, condition: torch.Tensor, real_images: torch.Tensor, real_condition: torch.Tensor
    ) -> torch.Tensor:
        """``images`` generated for the one-hot ``condition`` maps, ``real_images`` of ``real_condition`` (all in
        [-1, 1] / ``(N, classes, *spatial)``). Returns the weighted scalar term (differentiable in ``images``)."""
        for name, imgs, cond in (("images", images, condition), ("real_images", real_images, real_condition)):
            if imgs.shape[0] != cond.shape[0] or imgs.shape[2:] != cond.shape[2:]:
                raise ValueError(f"{name} {tuple(imgs.shape)} and its conditions {tuple(cond.shape)} must have the "
                                 "same batch and spatial sizes.")
        params = [p for p in self.segmenter.parameters() if p.ndim > 1]  # weight tensors (biases add little)
        real_grads = torch.autograd.grad(self._segment_loss(real_images.detach(), real_condition), params)
        fake_grads = torch.autograd.grad(self._segment_loss(images, condition), params, create_graph=True)
        distance = torch.stack([1 - torch.nn.functional.cosine_similarity(f.flatten(), r.flatten(), dim=0, eps=1e-12)
                                for f, r in zip(fake_grads, real_grads)]).mean()
        self._pending = (torch.cat([real_images.detach(), images.detach()]).float(),
                         torch.cat([real_condition.detach(), condition.detach()]).float())
        return self.weight * distance

    def segmenter_step(self) -> None:
        """One Adam step of the copy on the last call's real and generated pairs (nothing when fixed or not called)."""
        if self._optimizer is None or self._pending is None:
            return
        images, condition = self._pending
        self._pending = None
        self._optimizer.zero_grad(set_to_none=True)
        self._segment_loss(images, condition).backward()
        self._optimizer.step()
