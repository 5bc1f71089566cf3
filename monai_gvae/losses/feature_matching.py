"""VAE-GAN's reconstruction loss: the error between a critic's features of an image and of its reconstruction."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FeatureMatchingLoss", "FEATURE_DISTANCES"]

FEATURE_DISTANCES = ("mse", "l1")
"""``"mse"``: mean squared error (the Gaussian observation model of Larsen et al.); ``"l1"``: mean absolute error."""


class FeatureMatchingLoss(nn.Module):
    """The feature-wise reconstruction error of VAE-GAN: ``mean((D_l(x_rec) - D_l(x))^2) / mean(D_l(x)^2)`` at a
    chosen layer ``l`` of the critic, in place of a pixel-wise error.

    Larsen et al. 2016 ("Autoencoding beyond pixels using a learned similarity metric", ICML) replace the VAE's
    pixel reconstruction likelihood by a Gaussian likelihood of the discriminator's ``l``-th layer
    representation: images are compared by the features a network trained to tell real from generated finds,
    which tolerates small translations that a pixel loss punishes (sharper reconstructions). With
    ``GVAETrainer(objective="vaegan")`` the discriminator is the same Wasserstein critic with gradient penalty as
    GVAE's, so VAE-GAN differs from GVAE only in this reconstruction loss (GVAE: L1 on pixels).

    The error is divided by the mean square of the real image's features (``normalize=True``, the default), which
    makes it a relative error: a Wasserstein critic's features have no fixed scale (at initialisation the deepest
    level's are about 1e-3 of the pixels' and they grow as the critic trains), so an unnormalised error would weigh
    the reconstruction against the KL and adversarial terms differently from one iteration to the next. Larsen et
    al.'s Gaussian likelihood with a fixed variance is ``normalize=False``.

    The critic must have a ``features(x, condition=None, layer=...)`` method returning its intermediate feature map
    (:meth:`monai_gvae.networks.GVAECritic.features`). The target's features are computed without a graph: the
    loss reaches the generator (and encoder) through the reconstruction only, never through the real image. The
    critic is not frozen here; the trainer freezes it in the encoder-generator step, so that this loss never
    trains it (in Larsen et al. the discriminator is trained on the GAN objective only).

    Args:
        layer: the critic's feature layer (:meth:`~monai_gvae.networks.GVAECritic.features`: counted from the
            input, or from the deepest when negative). Default -2, the level before the deepest (for the conv
            architecture 1/8 of the input's resolution): deep enough to tolerate small shifts, fine enough to keep
            the image's layout (the deepest map of a 32x32 conv critic is 2x2).
        distance: ``"mse"`` (default) or ``"l1"``, averaged over every feature of every item.
        normalize: divide by the mean square (``"mse"``) or mean absolute value (``"l1"``) of the real image's
            features (detached), over the batch: a relative error (default); ``False``: the plain error.

    Raises:
        ValueError: an unknown ``distance`` or a ``layer`` that is not an integer.

    Example::

        critic = GVAECritic(spatial_dims=2, in_channels=1, image_size=32, architecture="conv")
        loss_fn = FeatureMatchingLoss(layer=-2)
        rec = loss_fn(critic, recon, x)  # a scalar with a graph into `recon`
    """

    def __init__(self, layer: int = -2, distance: str = "mse", normalize: bool = True) -> None:
        super().__init__()
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise ValueError(f"layer must be an integer, got {layer!r}.")
        if distance not in FEATURE_DISTANCES:
            raise ValueError(f"distance must be one of {FEATURE_DISTANCES}, got {distance!r}.")
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be a bool, got {normalize!r}.")
        self.layer = layer
        self.distance = distance
        self.normalize = normalize

    def forward(
        self, critic: nn.Module, input: torch.Tensor, target: torch.Tensor, condition: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return the mean feature-wise error between ``critic``'s features of ``input`` and of ``target``.

        Args:
            critic: a critic with a ``features`` method (the module itself, not a ``DistributedDataParallel``
                wrapper).
            input: the reconstructions ``(N, C, *spatial)`` (with a graph to the generator).
            target: the real images, same shape (no gradient flows into them).
            condition: the condition of a conditional critic (the same for both), else ``None``.

        Returns:
            a scalar in float32.

        Raises:
            TypeError: ``critic`` has no ``features`` method.
            ValueError: ``input`` and ``target`` differ in shape.
        """
        features = getattr(critic, "features", None)
        if not callable(features):
            raise TypeError(
                f"FeatureMatchingLoss needs a critic with a features(x, condition, layer) method (GVAECritic), "
                f"got {type(critic).__name__}."
            )
        if input.shape != target.shape:
            raise ValueError(f"input and target must have the same shape, got {tuple(input.shape)} and {tuple(target.shape)}.")
        with torch.no_grad():
            target_features = features(target, condition, layer=self.layer)
        input_features = features(input, condition, layer=self.layer)
        target_features = target_features.float()
        diff = input_features.float() - target_features
        if self.distance == "mse":
            error, scale = diff.pow(2).mean(), target_features.pow(2).mean()
        else:
            error, scale = diff.abs().mean(), target_features.abs().mean()
        # the scale has no graph (computed without one); the tiny floor keeps all-zero features finite
        return error / scale.clamp_min(1e-12) if self.normalize else error
