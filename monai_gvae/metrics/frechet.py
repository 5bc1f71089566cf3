"""Frechet distance in the feature space of a small classifier trained on the dataset itself.

The usual FID uses Inception-v3 features; those weights cannot be downloaded here, and Inception is a poor
feature extractor for 28x28 grey images anyway. Instead :func:`train_feature_classifier` trains a small CNN
(:class:`FeatureClassifier`) on the *training* split's class labels, and the distance is computed between
the Gaussians fitted to its penultimate features of generated and real images (MONAI's
:func:`monai.metrics.fid.get_fid_score`). The numbers are therefore comparable only between models scored
with the same classifier (same dataset, same classifier weights): state it as "FD (own classifier)", not FID.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.metrics import Cumulative
from monai.metrics.fid import get_fid_score
from torch import nn

from monai_gvae.metrics.utils import stack_batch, to_unit_range

__all__ = ["FeatureClassifier", "train_feature_classifier", "classifier_accuracy", "frechet_distance", "FrechetDistanceMetric"]


class FeatureClassifier(nn.Module):
    """A small CNN classifier whose penultimate activations serve as features for the Frechet distance.

    Three stride-2 ``3x3(x3)`` convolutions with LeakyReLU, global average pooling to ``feature_size``
    features, then a linear layer to the classes. Inputs in [0, 1].

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        num_classes: classes of the training labels.
        channels: convolution channels (the last is the feature size).

    Example::

        clf = FeatureClassifier(2, 1, 10)
        logits = clf(torch.rand(4, 1, 28, 28)); feats = clf.features(torch.rand(4, 1, 28, 28))  # (4, 64)
    """

    def __init__(self, spatial_dims: int, in_channels: int, num_classes: int, channels: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}.")
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        pool = nn.AdaptiveAvgPool2d if spatial_dims == 2 else nn.AdaptiveAvgPool3d
        layers: list[nn.Module] = []
        prev = in_channels
        for ch in channels:
            layers += [conv(prev, ch, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            prev = ch
        layers += [pool(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(prev, num_classes)
        self.spatial_dims, self.in_channels, self.num_classes = spatial_dims, in_channels, num_classes
        self.feature_size = prev

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, feature_size)`` penultimate features."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def train_feature_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int | None = None,
    epochs: int = 2,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    channels: tuple[int, ...] = (16, 32, 64),
) -> FeatureClassifier:
    """Train a :class:`FeatureClassifier` on *training* images (never the test images the distance is
    reported on).

    Args:
        images: ``(N, C, spatial...)`` in [0, 1] (float) or uint8 (divided by 255).
        labels: ``(N,)`` integer class labels.
        num_classes: default ``labels.max() + 1``.
        epochs: passes over the data.
        batch_size: minibatch size.
        lr: Adam learning rate.
        seed: seed of initialisation and shuffling.
        channels: see :class:`FeatureClassifier`.

    Returns:
        the classifier in eval mode.
    """
    images = torch.as_tensor(images)
    labels = torch.as_tensor(labels).long().reshape(-1)
    if images.ndim not in (4, 5) or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"need images (N, C, spatial...) and labels (N,), got {tuple(images.shape)} and {tuple(labels.shape)}."
        )
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = FeatureClassifier(images.ndim - 2, images.shape[1], num_classes, channels)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(images.shape[0], generator=gen)
        for start in range(0, images.shape[0], batch_size):
            idx = order[start : start + batch_size]
            loss = loss_fn(model(_as_unit(images[idx])), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def _as_unit(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


@torch.no_grad()
def classifier_accuracy(model: FeatureClassifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy of the classifier (report it beside the distance, on held-out images)."""
    model.eval()
    correct = 0
    for start in range(0, images.shape[0], batch_size):
        pred = model(_as_unit(images[start : start + batch_size])).argmax(1)
        correct += int((pred == torch.as_tensor(labels[start : start + batch_size]).long()).sum())
    return correct / max(1, images.shape[0])


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> torch.Tensor:
    """Frechet distance between Gaussians fitted to two feature sets (MONAI's ``get_fid_score``).

    Args:
        features_a: ``(N, F)``, ``N >= 2``.
        features_b: ``(M, F)``, ``M >= 2``.

    Returns:
        scalar (float64).
    """
    a, b = torch.as_tensor(features_a), torch.as_tensor(features_b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(a.shape[0], b.shape[0]) < 2:
        raise ValueError(f"need two (N >= 2, F) feature sets with the same F, got {tuple(a.shape)} and {tuple(b.shape)}.")
    return get_fid_score(a, b)


class _FeatureBuffer(Cumulative):
    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        return self.get_buffer()


class FrechetDistanceMetric(Cumulative):
    """Accumulates classifier features of generated (``y_pred``) and real (``y``) batches; ``aggregate()``
    returns their Frechet distance.

    Use with ``monai.handlers.IgniteMetricHandler`` (it calls ``metric(y_pred, y)`` then ``aggregate()``), or
    directly. Generated and real batches may differ in size, and either may be ``None``.

    Args:
        classifier: a trained :class:`FeatureClassifier` (see :func:`train_feature_classifier`).
        value_range: range of the incoming images (mapped to the classifier's [0, 1]).

    Example::

        metric = FrechetDistanceMetric(clf)
        for fake, real in zip(fake_batches, real_batches):
            metric(fake, real)
        fd = metric.aggregate().item()
    """

    def __init__(self, classifier: FeatureClassifier, value_range: tuple[float, float] = (0.0, 1.0)) -> None:
        self.fake_features, self.real_features = _FeatureBuffer(), _FeatureBuffer()
        super().__init__()
        self.classifier = classifier.eval()
        self.value_range = (float(value_range[0]), float(value_range[1]))

    def reset(self) -> None:
        super().reset()
        self.fake_features.reset()
        self.real_features.reset()

    @torch.no_grad()
    def _features(self, x: Any) -> torch.Tensor:
        x = to_unit_range(stack_batch(x), self.value_range)
        device = next(self.classifier.parameters()).device
        return self.classifier.features(x.to(device)).double().cpu()

    def __call__(self, y_pred: Any, y: Any = None) -> None:
        """Add a batch of generated images and (optionally) a batch of real images."""
        if y_pred is not None:
            self.fake_features.extend(self._features(y_pred))
        if y is not None:
            self.real_features.extend(self._features(y))

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        """The Frechet distance between all generated and all real features seen."""
        fake, real = self.fake_features.get_buffer(), self.real_features.get_buffer()
        if fake is None or real is None or min(len(fake), len(real)) < 2:
            raise RuntimeError("FrechetDistanceMetric needs at least 2 generated and 2 real images before aggregate().")
        return frechet_distance(fake, real)
