"""GVAE objectives: KL to the prior, Wasserstein critic loss with gradient penalty, encoder-generator loss (with
alpha-GAN's code term).

Pure functions and modules: no optimiser and no engine in here (see ``monai_gvae.engines``).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = [
    "kl_divergence",
    "gradient_penalty",
    "wasserstein_critic_loss",
    "wasserstein_generator_loss",
    "CriticLoss",
    "EncoderGeneratorLoss",
    "gradient_difference",
]


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` in nats, summed over latent dimensions.

    Args:
        mu: ``(N, latent)`` means.
        logvar: ``(N, latent)`` log-variances.
        reduction: ``"mean"`` over the batch, ``"sum"``, or ``"none"`` (one value per sample).

    Returns:
        the KL divergence per sample (``"none"``) or reduced over the batch.

    Example::

        kl = kl_divergence(torch.zeros(2, 8), torch.zeros(2, 8))  # tensor(0.)
    """
    per_sample = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)
    return _reduce(per_sample, reduction)


def gradient_penalty(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator | None = None,
    condition: torch.Tensor | None = None,
    chunk_size: int | None = None,
    backward: Callable[[torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty ``E[(||grad_x D(x_hat)||_2 - 1)^2]`` on random interpolates of real and fake.

    Each sample gets its own interpolation weight ``eps ~ U(0, 1)``; the penalty is computed per sample,
    which is why the critic should not normalise with batch statistics.

    Args:
        critic: the critic network.
        real: real batch ``(N, ...)``.
        fake: fake batch (detached from the generator) of the same shape, or ``times * N`` items (e.g. the
            reconstructions and prior samples of a GVAE): fake item ``i`` is paired with real item ``i % N``,
            as if ``real`` were repeated, without the memory of a repeated copy (a full-size volume batch in 3D).
        generator: optional ``torch.Generator`` for ``eps``.
        condition: for a conditional critic, the condition of each fake item (``critic(x_hat, condition)``).
        chunk_size: with ``backward``, compute the penalty over chunks of this many interpolates and
            back-propagate each chunk's share of the mean as soon as it is computed, so that one chunk's
            double-backward graph is alive at a time (the penalty's memory scales with the chunk, not the batch).
            Same ``eps``, value and gradients as one pass, up to the order of floating-point sums. Only for a
            critic without batch statistics (the penalty is per sample anyway).
        backward: called with each chunk's term (a share of the penalty with a graph); typically
            ``lambda t: (gp_weight * t).backward()``. Required with ``chunk_size``.

    Returns:
        scalar penalty with a graph (``create_graph=True``) so it can be back-propagated into the critic; with
        ``chunk_size``, the detached total (its gradients have already been back-propagated).

    Raises:
        ValueError: the shapes differ other than by a whole multiple of the real batch, or ``chunk_size``
            without ``backward`` or below 1.

    Example::

        gp = gradient_penalty(critic, real, fake)  # then (10 * gp).backward()
        # the same gradients with 1-item chunks, for 3D volumes:
        gradient_penalty(critic, real, fake, chunk_size=1, backward=lambda t: (10 * t).backward())
    """
    n = real.shape[0]
    if real.shape[1:] != fake.shape[1:] or n == 0 or fake.shape[0] % n:
        raise ValueError(
            f"real and fake batches must have the same shape (or a fake batch a whole multiple of the real one), "
            f"got {tuple(real.shape)} and {tuple(fake.shape)}."
        )
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be an integer >= 1 or None, got {chunk_size!r}.")
    if chunk_size is not None and backward is None:
        raise ValueError("chunk_size needs backward: each chunk's share must be back-propagated before the next.")
    total = fake.shape[0]
    times = total // n
    shape = (total,) + (1,) * (real.ndim - 1)
    eps = torch.rand(shape, generator=generator, device=generator.device if generator else real.device)
    eps = eps.to(device=real.device, dtype=real.dtype)
    real, fake = real.detach(), fake.detach()
    if chunk_size is None or chunk_size >= total:
        gp = _penalty_mean(critic, _interpolates(real, fake, eps, times), condition, total)
        if backward is not None:
            backward(gp)
            gp = gp.detach()
        return gp
    gp = real.new_zeros((), dtype=torch.float32)
    for start in range(0, total, chunk_size):
        stop = min(start + chunk_size, total)
        # the real items paired with fake items start..stop-1 (item i with real i % n), copied for this chunk only
        pairs = real[torch.arange(start, stop, device=real.device) % n]
        interpolates = eps[start:stop] * pairs + (1.0 - eps[start:stop]) * fake[start:stop]
        share = _penalty_mean(critic, interpolates, None if condition is None else condition[start:stop], total)
        backward(share)
        gp = gp + share.detach()
    return gp


def _interpolates(real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor, times: int) -> torch.Tensor:
    """``eps * real + (1 - eps) * fake`` with fake item ``i`` paired with real item ``i % len(real)``."""
    if times == 1:
        return eps * real + (1.0 - eps) * fake
    # broadcast the real batch over the groups of fakes: the same values as real.repeat(times, ...)
    group = (times, real.shape[0]) + tuple(real.shape[1:])
    eps = eps.view((times, real.shape[0]) + (1,) * (real.ndim - 1))
    return (eps * real.unsqueeze(0) + (1.0 - eps) * fake.view(group)).flatten(0, 1)


def _penalty_mean(
    critic: nn.Module, interpolates: torch.Tensor, condition: torch.Tensor | None, total: int
) -> torch.Tensor:
    """``sum((||grad D(x_hat)|| - 1)^2) / total`` over these interpolates (all of them: the mean)."""
    interpolates = interpolates.requires_grad_(True)
    scores = critic(interpolates) if condition is None else critic(interpolates, condition.to(interpolates.dtype))
    (grad,) = torch.autograd.grad(scores.sum(), interpolates, create_graph=True)
    # Computed in float32: under autocast the norm of a half-precision gradient can overflow.
    grad_norm = grad.float().flatten(1).norm(2, dim=1)
    terms = (grad_norm - 1.0).pow(2)
    return terms.mean() if terms.shape[0] == total else terms.sum() / total


def wasserstein_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Critic's Wasserstein loss ``E[D(fake)] - E[D(real)]`` (minimised by the critic)."""
    return fake_scores.float().mean() - real_scores.float().mean()


def wasserstein_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """Generator's adversarial loss ``-E[D(fake)]`` (minimised by encoder and generator)."""
    return -fake_scores.float().mean()


class CriticLoss(nn.Module):
    """``L_D = E[D(fake)] - E[D(real)] + gp_weight * GP``.

    The critic's scores are computed by the caller (the trainer scores reals and fakes in one batched call);
    :meth:`penalty` computes the gradient penalty.

    Args:
        gp_weight: weight of the gradient penalty (Gulrajani et al.: 10); 0 disables it.

    Example::

        loss_fn = CriticLoss(gp_weight=10.0)
        gp = loss_fn.penalty(critic, real, fake)
        terms = loss_fn(critic(real), critic(fake), gp)  # {"loss", "wasserstein", "gp"}
    """

    def __init__(self, gp_weight: float = 10.0) -> None:
        super().__init__()
        if gp_weight < 0:
            raise ValueError(f"gp_weight must be >= 0, got {gp_weight}.")
        self.gp_weight = gp_weight

    def penalty(
        self,
        critic: nn.Module,
        real: torch.Tensor,
        fake: torch.Tensor,
        generator: torch.Generator | None = None,
        condition: torch.Tensor | None = None,
        chunk_size: int | None = None,
        backward: Callable[[torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """The gradient penalty (zero without a graph when ``gp_weight`` is 0), computed in float32.

        ``condition``, ``chunk_size`` and ``backward`` as in :func:`gradient_penalty`; ``backward`` receives the
        unweighted penalty (or a chunk's share of it) and is not called when ``gp_weight`` is 0.
        """
        if not self.gp_weight:
            return real.new_zeros((), dtype=torch.float32)
        condition = None if condition is None else condition.float()
        return gradient_penalty(critic, real.float(), fake.float(), generator, condition, chunk_size, backward)

    def forward(
        self, real_scores: torch.Tensor, fake_scores: torch.Tensor, gp: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Return ``loss`` (total), ``wasserstein`` (``E[D(real)] - E[D(fake)]``, the distance estimate) and ``gp``."""
        loss = wasserstein_critic_loss(real_scores, fake_scores)
        gp = loss.new_zeros(()) if gp is None else gp
        return {"loss": loss + self.gp_weight * gp, "wasserstein": -loss, "gp": gp}


class EncoderGeneratorLoss(nn.Module):
    """``L_EG = w_rec * L1(x, x_rec) + w_kl(t) * KL + w_adv * (-E[D(fakes)]) + w_code * (-E[C(E(x))])``.

    The reconstruction term is the mean absolute error per element in the networks' [-1, 1] range (or a
    reconstruction error the caller computed, such as VAE-GAN's feature matching); the KL term is in nats per sample
    (summed over the latent, averaged over the batch). ``w_kl(t)`` ramps linearly from 0 to ``kl_weight`` over
    ``kl_warmup_iterations`` (KL warm-up avoids posterior collapse while the decoder is still poor). The code term is
    alpha-GAN's: the scores of a code critic ``C`` on the encoded latents (it replaces the KL term there).

    Args:
        rec_weight: weight of the reconstruction term (0 disables it: the WGAN-GP baseline).
        kl_weight: weight of the KL term after warm-up.
        adv_weight: weight of the adversarial term (0 disables it: the VAE baseline).
        kl_warmup_iterations: iterations over which the KL weight ramps up; 0 for none.
        code_weight: weight of alpha-GAN's code adversarial term (used only when code scores are given); by
            default that of the image adversarial term (in Kwon et al. 2019 the two weigh the same).
        gradient_weight: weight of a gradient difference term (Mathieu et al. 2016, "Deep multi-scale video
            prediction beyond mean square error"): the mean absolute difference between the absolute forward
            differences of ``recon`` and of ``x`` along every spatial axis. A pixel loss is minimised by the
            average of the plausible images, which is blurred; this term charges for edges that are weaker (or
            stronger) than the data's. Returned as ``grad`` only when the weight is above 0 (0 keeps the
            objective and its terms exactly as without it).

    Example::

        loss_fn = EncoderGeneratorLoss(rec_weight=1.0, kl_weight=1e-3, adv_weight=1e-2)
        terms = loss_fn(x, recon, mu, logvar, fake_scores, iteration=10)
        terms["loss"].backward()
    """

    def __init__(
        self,
        rec_weight: float = 1.0,
        kl_weight: float = 1e-3,
        adv_weight: float = 1e-2,
        kl_warmup_iterations: int = 0,
        code_weight: float | None = None,
        gradient_weight: float = 0.0,
    ) -> None:
        super().__init__()
        code_weight = adv_weight if code_weight is None else code_weight
        weights = (("rec_weight", rec_weight), ("kl_weight", kl_weight), ("adv_weight", adv_weight),
                   ("code_weight", code_weight), ("gradient_weight", gradient_weight))
        for name, value in weights:
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}.")
        self.rec_weight, self.kl_weight, self.adv_weight = rec_weight, kl_weight, adv_weight
        self.kl_warmup_iterations = kl_warmup_iterations
        self.code_weight = code_weight
        self.gradient_weight = gradient_weight

    def kl_weight_at(self, iteration: int) -> float:
        """KL weight after ``iteration`` iterations of warm-up."""
        if self.kl_warmup_iterations <= 0:
            return self.kl_weight
        return self.kl_weight * min(1.0, iteration / self.kl_warmup_iterations)

    def forward(
        self,
        x: torch.Tensor | None,
        recon: torch.Tensor | None,
        mu: torch.Tensor | None,
        logvar: torch.Tensor | None,
        fake_scores: torch.Tensor | None,
        iteration: int = 0,
        reconstruction: torch.Tensor | None = None,
        code_scores: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Return the total ``loss`` and its terms ``rec``, ``kl``, ``adv``, ``code`` (absent inputs give zero terms).

        ``reconstruction``: a reconstruction error computed by the caller (VAE-GAN's
        :class:`~monai_gvae.losses.FeatureMatchingLoss`), used as ``rec`` instead of the L1 of ``x`` and ``recon``.
        ``code_scores``: a code critic's scores of the encoded latents (alpha-GAN), giving ``code = -E[C(E(x))]``.
        """
        ref = next(t for t in (x, recon, mu, fake_scores, reconstruction, code_scores) if t is not None)
        zero = ref.new_zeros((), dtype=torch.float32)
        if reconstruction is not None:
            rec = reconstruction.float()
        else:
            rec = (recon.float() - x.float()).abs().mean() if recon is not None else zero
        kl = kl_divergence(mu.float(), logvar.float()) if mu is not None else zero
        adv = wasserstein_generator_loss(fake_scores) if fake_scores is not None else zero
        code = wasserstein_generator_loss(code_scores) if code_scores is not None else zero
        loss = self.rec_weight * rec + self.kl_weight_at(iteration) * kl + self.adv_weight * adv
        if code_scores is not None:  # the sum of the other objectives stays exactly as it was
            loss = loss + self.code_weight * code
        terms = {"loss": loss, "rec": rec, "kl": kl, "adv": adv, "code": code}
        if self.gradient_weight > 0:
            grad = gradient_difference(recon, x) if recon is not None and x is not None else zero
            terms["grad"] = grad
            terms["loss"] = loss + self.gradient_weight * grad
        return terms


def gradient_difference(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the absolute forward differences of ``recon`` and ``x``, ``(N, C, *spatial)``,
    averaged over the spatial axes (the gradient difference loss of Mathieu et al. 2016 with exponent 1).

    Raises:
        ValueError: ``recon`` and ``x`` of different shapes, or fewer than one spatial axis.

    Example::

        gradient_difference(torch.zeros(1, 1, 8, 8), torch.rand(1, 1, 8, 8))  # > 0: the edges are missing
    """
    if recon.shape != x.shape:
        raise ValueError(f"recon and x must have the same shape, got {tuple(recon.shape)} and {tuple(x.shape)}.")
    if recon.dim() < 3:
        raise ValueError(f"expected (N, C, *spatial) tensors, got shape {tuple(recon.shape)}.")
    recon, x = recon.float(), x.float()
    terms = [(recon.diff(dim=d).abs() - x.diff(dim=d).abs()).abs().mean() for d in range(2, recon.dim())]
    return torch.stack(terms).mean()


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}.")
