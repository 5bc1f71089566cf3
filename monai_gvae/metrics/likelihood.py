"""KL, ELBO and the importance-weighted bound on ``log p(x)``, in nats per image.

A likelihood needs a pixel model ``p(x | z)``; the GVAE generator outputs a mean image (``tanh``, trained
with an L1 loss), so the pixel likelihood is a choice that must be stated beside every figure:

* ``"bernoulli"`` -- for binarised data (pixels exactly 0 or 1): ``p = clamp((G(z) + 1) / 2, eps, 1 - eps)``.
  The usual model of the VAE literature on binarised MNIST (the paper's Table 7).
* ``"discretized_logistic"`` / ``"discretized_gaussian"`` -- for grey levels: the probability of the pixel's
  intensity bin (``num_bins`` bins over [0, 1], the outermost bins extended to infinity, as in PixelCNN++)
  under a logistic / Gaussian centred on ``(G(z) + 1) / 2`` with one global ``scale``. A generator trained
  with L1 has no scale of its own: :func:`fit_pixel_scale` fits it by maximum likelihood on *training* images
  (the same for every model compared), never on the test images.

Bounds (Burda et al. 2016), per image ``x``, with ``q(z|x) = N(mu, diag(exp(logvar)))`` and ``p(z) = N(0, I)``:

* ``ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z))`` (the KL in closed form, the expectation by sampling);
* ``L_k = E[log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x)]``, ``z_i ~ q(z|x)``: ``L_1 = ELBO`` in expectation,
  ``L_k`` rises with ``k`` towards ``log p(x)``.

All functions take callables, so they work for any latent-variable model: ``encode(x) -> (mu, logvar)`` and
``log_likelihood(x, z) -> (N,)`` nats. :class:`GVAELikelihood` builds both from a ``GVAE``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.metrics import CumulativeIterationMetric
from torch import nn

from monai_gvae.losses import kl_divergence
from monai_gvae.metrics.utils import stack_batch, to_unit_range

__all__ = [
    "PIXEL_LIKELIHOODS",
    "kl_to_prior",
    "gaussian_log_density",
    "pixel_log_likelihood",
    "fit_pixel_scale",
    "elbo",
    "importance_weighted_bound",
    "GVAELikelihood",
    "ELBOMetric",
    "ImportanceWeightedBoundMetric",
]

PIXEL_LIKELIHOODS = ("bernoulli", "discretized_logistic", "discretized_gaussian")
_LOG_2PI = math.log(2.0 * math.pi)


def kl_to_prior(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Closed-form ``KL(N(mu, diag(exp(logvar))) || N(0, I))`` per sample, in nats.

    Args:
        mu: ``(N, latent)``.
        logvar: ``(N, latent)``.

    Returns:
        ``(N,)`` values (see :func:`monai_gvae.losses.kl_divergence`).
    """
    return kl_divergence(mu, logvar, reduction="none")


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor | None = None, logvar: torch.Tensor | None = None) -> torch.Tensor:
    """``log N(z; mu, diag(exp(logvar)))`` summed over the last dimension (standard normal by default)."""
    if mu is None:
        return -0.5 * (z.pow(2) + _LOG_2PI).sum(-1)
    return -0.5 * ((z - mu).pow(2) * torch.exp(-logvar) + logvar + _LOG_2PI).sum(-1)


def _log_prob_between(a: torch.Tensor, b: torch.Tensor, log_cdf: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``log(F(b) - F(a))`` for a symmetric CDF ``F``, stable in both tails (``a`` may be -inf, ``b`` +inf)."""
    # F(b) - F(a) = F(-a) - F(-b): work on the side where the CDF is small, so its log keeps precision.
    flip = (a + b) > 0
    lo = torch.where(flip, -b, a)
    hi = torch.where(flip, -a, b)
    log_hi, log_lo = log_cdf(hi), log_cdf(lo)
    return log_hi + torch.log(-torch.expm1(log_lo - log_hi))


def pixel_log_likelihood(
    x: torch.Tensor,
    mean: torch.Tensor,
    likelihood: str = "discretized_logistic",
    scale: float | torch.Tensor | None = None,
    num_bins: int = 256,
    eps: float = 1e-4,
) -> torch.Tensor:
    """``log p(x | mean)`` summed over all pixels of each image, in nats.

    Args:
        x: ``(N, C, spatial...)`` images in [0, 1] (binary for ``"bernoulli"``; on the ``num_bins`` grid
            ``k / (num_bins - 1)`` for the discretised likelihoods, e.g. ``uint8 / 255``).
        mean: decoded means in [0, 1], broadcastable to ``x``.
        likelihood: one of :data:`PIXEL_LIKELIHOODS`.
        scale: logistic scale or Gaussian standard deviation (in [0, 1] intensity units) of the discretised
            likelihoods, a positive scalar or a tensor broadcastable to ``x``.
        num_bins: intensity levels of the discretised likelihoods (256 for 8-bit images).
        eps: Bernoulli probabilities are clamped to ``[eps, 1 - eps]``.

    Returns:
        ``(N,)`` log-likelihoods (nats per image).

    Raises:
        ValueError: unknown likelihood, missing/non-positive scale, non-binary data for ``"bernoulli"``,
            data outside [0, 1].

    Example::

        x = torch.randint(0, 256, (4, 1, 28, 28)) / 255.0
        ll = pixel_log_likelihood(x, x, "discretized_logistic", scale=0.02)  # (4,)
    """
    if likelihood not in PIXEL_LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {PIXEL_LIKELIHOODS}, got {likelihood!r}.")
    x = x.float()
    mean = mean.float()
    if float(x.min()) < -1e-6 or float(x.max()) > 1 + 1e-6:
        raise ValueError(
            f"x must be in [0, 1] for a pixel likelihood, got values in [{float(x.min()):.4g}, {float(x.max()):.4g}]."
        )
    if likelihood == "bernoulli":
        if not bool(((x == 0) | (x == 1)).all()):
            raise ValueError("the Bernoulli likelihood needs binarised data (pixels exactly 0 or 1); binarise x first.")
        p = mean.clamp(eps, 1.0 - eps)
        ll = x * torch.log(p) + (1.0 - x) * torch.log1p(-p)
        return ll.flatten(1).sum(1)
    if scale is None:
        raise ValueError(f"the {likelihood} likelihood needs a scale; fit one with fit_pixel_scale on training data.")
    scale = torch.as_tensor(scale, dtype=torch.float32, device=x.device)
    if bool((scale <= 0).any()):
        raise ValueError(f"scale must be positive, got {scale}.")
    if num_bins < 2:
        raise ValueError(f"num_bins must be >= 2, got {num_bins}.")
    half = 0.5 / (num_bins - 1)
    x, mean = torch.broadcast_tensors(x, mean)
    a = (x - half - mean) / scale
    b = (x + half - mean) / scale
    a = torch.where(x < half, torch.full_like(a, -math.inf), a)
    b = torch.where(x > 1.0 - half, torch.full_like(b, math.inf), b)
    log_cdf = torch.nn.functional.logsigmoid if likelihood == "discretized_logistic" else torch.special.log_ndtr
    ll = _log_prob_between(a.double(), b.double(), log_cdf).float()
    return ll.flatten(1).sum(1)


def fit_pixel_scale(
    x: torch.Tensor,
    mean: torch.Tensor,
    likelihood: str = "discretized_logistic",
    num_bins: int = 256,
    bounds: tuple[float, float] = (1e-4, 1.0),
    iterations: int = 40,
) -> float:
    """Maximum-likelihood global scale of a discretised pixel likelihood (golden-section search on log-scale).

    Fit it on *training* images and their decodings (e.g. ``G(z)`` with ``z ~ q(z|x)``), then use the same
    scale for the test figures.

    Args:
        x: ``(N, ...)`` images in [0, 1].
        mean: their decoded means in [0, 1].
        likelihood: ``"discretized_logistic"`` or ``"discretized_gaussian"``.
        num_bins: intensity levels.
        bounds: search interval of the scale.
        iterations: golden-section steps (40 narrow the log-interval by ~1e-8).

    Returns:
        the scale maximising the mean log-likelihood.
    """
    if likelihood not in PIXEL_LIKELIHOODS[1:]:
        raise ValueError(f"fit_pixel_scale needs a discretised likelihood {PIXEL_LIKELIHOODS[1:]}, got {likelihood!r}.")

    def objective(log_s: float) -> float:
        return -float(pixel_log_likelihood(x, mean, likelihood, math.exp(log_s), num_bins).mean())

    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fc, fd = objective(c), objective(d)
    for _ in range(iterations):
        if fc < fd:
            hi, d, fd = d, c, fc
            c = hi - ratio * (hi - lo)
            fc = objective(c)
        else:
            lo, c, fc = c, d, fd
            d = lo + ratio * (hi - lo)
            fd = objective(d)
    return math.exp((lo + hi) / 2.0)


Encode = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
LogLikelihood = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _draw(mu: torch.Tensor, logvar: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else mu.device
    eps = torch.randn((k, *mu.shape), generator=generator, device=device).to(device=mu.device, dtype=mu.dtype)
    return mu.unsqueeze(0) + torch.exp(0.5 * logvar).unsqueeze(0) * eps


def _log_likelihood_many(x: torch.Tensor, z: torch.Tensor, log_likelihood: LogLikelihood) -> torch.Tensor:
    """``log p(x | z_k)`` for ``z`` of shape ``(k, N, latent)``: one call on ``k * N`` pairs; returns ``(k, N)``."""
    k, n = z.shape[:2]
    xs = x.unsqueeze(0).expand(k, *x.shape).reshape(k * n, *x.shape[1:])
    return log_likelihood(xs, z.reshape(k * n, -1)).reshape(k, n)


@torch.no_grad()
def elbo(
    x: torch.Tensor,
    encode: Encode,
    log_likelihood: LogLikelihood,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Per-image ELBO with the KL in closed form and ``E_q[log p(x|z)]`` by ``num_samples`` samples.

    Args:
        x: ``(N, ...)`` batch in the form ``encode`` and ``log_likelihood`` expect.
        encode: ``x -> (mu, logvar)`` of ``q(z|x)``.
        log_likelihood: ``(x, z) -> (N,)`` ``log p(x|z)`` in nats.
        num_samples: latent samples per image for the expected log-likelihood.
        generator: ``torch.Generator`` for the latent noise.

    Returns:
        dict of ``(N,)`` tensors: ``elbo``, ``log_likelihood`` (the expected ``log p(x|z)``), ``kl``.

    Example::

        terms = elbo(x01, adapter.encode, adapter.log_likelihood, num_samples=4)
        terms["elbo"].mean()
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
    mu, logvar = encode(x)
    mu, logvar = mu.double(), logvar.double()
    z = _draw(mu, logvar, num_samples, generator)
    ll = _log_likelihood_many(x, z.float(), log_likelihood)
    expected_ll = ll.double().mean(0)
    kl = kl_to_prior(mu, logvar)
    return {"elbo": (expected_ll - kl).float(), "log_likelihood": expected_ll.float(), "kl": kl.float()}


@torch.no_grad()
def importance_weighted_bound(
    x: torch.Tensor,
    encode: Encode,
    log_likelihood: LogLikelihood,
    num_samples: int = 5000,
    chunk_size: int = 256,
    generator: torch.Generator | None = None,
    return_prefixes: Sequence[int] | None = None,
) -> torch.Tensor | dict[int, torch.Tensor]:
    """Importance-weighted lower bound ``L_k`` on ``log p(x)`` per image (Burda et al. 2016), in nats.

    ``log (1/k) sum_i exp(log p(x|z_i) + log p(z_i) - log q(z_i|x))``, ``z_i ~ q(z|x)``, accumulated over
    chunks of samples with a running log-sum-exp (memory ``chunk_size * N`` decodings at a time).

    Args:
        x: ``(N, ...)`` batch.
        encode: ``x -> (mu, logvar)``.
        log_likelihood: ``(x, z) -> (N,)`` nats.
        num_samples: ``k``.
        chunk_size: samples per image decoded at once.
        generator: ``torch.Generator`` for the latent noise.
        return_prefixes: also return the bound of the first ``k'`` samples for each ``k'`` listed (a free
            ``L_k'`` curve from the same draws; each ``k' <= num_samples``).

    Returns:
        ``(N,)`` bounds, or ``{k': (N,)}`` including ``num_samples`` when ``return_prefixes`` is given.

    Example::

        bound = importance_weighted_bound(x01, adapter.encode, adapter.log_likelihood, num_samples=5000)
    """
    if num_samples < 1 or chunk_size < 1:
        raise ValueError(f"num_samples and chunk_size must be >= 1, got {num_samples} and {chunk_size}.")
    prefixes = sorted({int(p) for p in (return_prefixes or ())} | {num_samples})
    if prefixes[0] < 1 or prefixes[-1] > num_samples:
        raise ValueError(f"return_prefixes must lie in [1, num_samples={num_samples}], got {return_prefixes}.")
    mu, logvar = encode(x)
    mu, logvar = mu.double(), logvar.double()
    running = torch.full((x.shape[0],), -math.inf, dtype=torch.float64, device=mu.device)
    out: dict[int, torch.Tensor] = {}
    done = 0
    while done < num_samples:
        # stop chunks at the requested prefixes so that each prefix bound is exact
        next_stop = next(p for p in prefixes if p > done)
        k = min(chunk_size, next_stop - done)
        z = _draw(mu, logvar, k, generator)
        log_px_z = _log_likelihood_many(x, z.float(), log_likelihood).double()
        log_w = log_px_z + gaussian_log_density(z) - gaussian_log_density(z, mu.unsqueeze(0), logvar.unsqueeze(0))
        running = torch.logaddexp(running, torch.logsumexp(log_w, dim=0))
        done += k
        if done in prefixes:
            out[done] = (running - math.log(done)).float()
    if return_prefixes is None:
        return out[num_samples]
    return out


class GVAELikelihood:
    """``encode`` and ``log_likelihood`` callables of a ``GVAE`` for :func:`elbo` and
    :func:`importance_weighted_bound`, with inputs in [0, 1].

    The model sees ``2 x - 1`` (its [-1, 1] range); the decoded mean is ``(G(z) + 1) / 2``. With
    ``crop_size`` the likelihood counts only the central ``crop_size`` pixels of each spatial axis (e.g. the
    28x28 of MNIST padded to 32x32 for the network), so figures are per original image.

    Args:
        model: a ``GVAE`` (put in eval mode here; BatchNorm must use running statistics).
        likelihood: one of :data:`PIXEL_LIKELIHOODS`.
        scale: scale of the discretised likelihoods (see :func:`fit_pixel_scale`).
        num_bins: intensity levels.
        crop_size: central crop of the likelihood, or ``None`` for the whole image.
        channels: how many leading channels the likelihood covers (default: all; e.g. the image channels of
            a packed image+label model).

    Example::

        adapter = GVAELikelihood(model, "discretized_logistic", scale=0.03, crop_size=28)
        bound = importance_weighted_bound(x01, adapter.encode, adapter.log_likelihood, num_samples=1000)
    """

    def __init__(
        self,
        model: nn.Module,
        likelihood: str = "discretized_logistic",
        scale: float | None = None,
        num_bins: int = 256,
        crop_size: int | None = None,
        channels: int | None = None,
    ) -> None:
        if likelihood not in PIXEL_LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {PIXEL_LIKELIHOODS}, got {likelihood!r}.")
        if likelihood != "bernoulli" and scale is None:
            raise ValueError(f"the {likelihood} likelihood needs a scale (see fit_pixel_scale).")
        self.model = model.eval()
        self.likelihood, self.scale, self.num_bins = likelihood, scale, num_bins
        self.crop_size, self.channels = crop_size, channels

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        """Central ``crop_size`` crop of every spatial axis (and the leading ``channels``)."""
        if self.channels is not None:
            x = x[:, : self.channels]
        if self.crop_size is None:
            return x
        index: list[Any] = [slice(None), slice(None)]
        for size in x.shape[2:]:
            if self.crop_size > size:
                raise ValueError(f"crop_size {self.crop_size} exceeds the spatial size {size}.")
            start = (size - self.crop_size) // 2
            index.append(slice(start, start + self.crop_size))
        return x[tuple(index)]

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` of ``q(z|x)`` for ``x`` in [0, 1]."""
        return self.model.encode(x.to(self._device()).float() * 2.0 - 1.0)

    @torch.no_grad()
    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """Decoded means in [0, 1]."""
        return ((self.model.decode(z.to(self._device()).float()).float() + 1.0) / 2.0).clamp(0.0, 1.0)

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(x|z)`` in nats per (cropped) image."""
        mean = self.crop(self.decode_mean(z))
        return pixel_log_likelihood(
            self.crop(x.to(mean.device)), mean, self.likelihood, self.scale, self.num_bins
        )


class _PerImageMetric(CumulativeIterationMetric):
    """Accumulates per-image values of several named terms; ``aggregate()`` is the mean of ``term``."""

    terms: tuple[str, ...] = ()

    def __init__(self, term: str) -> None:
        super().__init__()
        if term not in self.terms:
            raise ValueError(f"term must be one of {self.terms}, got {term!r}.")
        self.term = term

    def __call__(self, y_pred: Any, y: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        return super().__call__(stack_batch(y_pred), None, **kwargs)

    def aggregate(self, term: str | None = None) -> torch.Tensor:  # type: ignore[override]
        """Mean over images of ``term`` (default: the one given at construction)."""
        buffers = self.get_buffer()
        if not isinstance(buffers, (list, tuple)):
            buffers = [buffers]
        if not buffers or buffers[0] is None or buffers[0].numel() == 0:
            raise RuntimeError(f"{type(self).__name__}: no batch has been accumulated yet.")
        term = self.term if term is None else term
        return buffers[self.terms.index(term)].double().mean()

    def aggregate_all(self) -> dict[str, float]:
        """Means of all terms."""
        return {t: float(self.aggregate(t)) for t in self.terms}


class ELBOMetric(_PerImageMetric):
    """Per-image ELBO, expected log-likelihood and KL of real images (``y_pred`` = the images; ``y`` unused).

    Attach to a ``GVAEEvaluator`` with ``output_transform=from_engine(["image", "image"])`` (its images are
    in [-1, 1]: the default ``value_range``).

    Args:
        adapter: :class:`GVAELikelihood` (or any object with ``encode``/``log_likelihood`` on [0, 1] inputs).
        num_samples: latent samples per image.
        term: what ``aggregate()`` returns: ``"elbo"``, ``"log_likelihood"`` or ``"kl"``.
        value_range: range of the incoming images.
        seed: seed of the latent noise.

    Example::

        metric = ELBOMetric(GVAELikelihood(model, "bernoulli"), value_range=(0, 1))
        metric(binarised_batch); metric.aggregate_all()  # {"elbo": ..., "log_likelihood": ..., "kl": ...}
    """

    terms = ("elbo", "log_likelihood", "kl")

    def __init__(
        self,
        adapter: GVAELikelihood,
        num_samples: int = 1,
        term: str = "elbo",
        value_range: tuple[float, float] = (-1.0, 1.0),
        seed: int = 0,
    ) -> None:
        super().__init__(term)
        self.adapter, self.num_samples, self.value_range = adapter, num_samples, value_range
        self.generator = torch.Generator().manual_seed(seed)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> list[torch.Tensor]:
        out = elbo(to_unit_range(y_pred, self.value_range), self.adapter.encode, self.adapter.log_likelihood,
                   self.num_samples, self.generator)
        return [out[t].reshape(-1, 1).cpu() for t in self.terms]


class ImportanceWeightedBoundMetric(_PerImageMetric):
    """Per-image importance-weighted bound ``L_k`` on ``log p(x)`` (``y_pred`` = the images; ``y`` unused).

    Args:
        adapter: :class:`GVAELikelihood`.
        num_samples: ``k`` (5000 for reported figures; small in tests).
        chunk_size: samples decoded at once per image.
        value_range: range of the incoming images.
        seed: seed of the latent noise.

    Example::

        metric = ImportanceWeightedBoundMetric(GVAELikelihood(model, "bernoulli"), num_samples=5000,
                                               value_range=(0, 1))
        metric(batch); log_px = metric.aggregate()
    """

    terms = ("bound",)

    def __init__(
        self,
        adapter: GVAELikelihood,
        num_samples: int = 5000,
        chunk_size: int = 256,
        value_range: tuple[float, float] = (-1.0, 1.0),
        seed: int = 0,
    ) -> None:
        super().__init__("bound")
        self.adapter, self.num_samples, self.chunk_size = adapter, num_samples, chunk_size
        self.value_range = value_range
        self.generator = torch.Generator().manual_seed(seed)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> list[torch.Tensor]:
        bound = importance_weighted_bound(
            to_unit_range(y_pred, self.value_range), self.adapter.encode, self.adapter.log_likelihood,
            self.num_samples, self.chunk_size, self.generator,
        )
        return [bound.reshape(-1, 1).cpu()]
