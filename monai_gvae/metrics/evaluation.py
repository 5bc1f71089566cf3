"""One evaluation of a trained GVAE on held-out data, built on the cumulative metric classes.

:func:`evaluate` is what both the bundles' ``evaluate.yaml`` (``metrics.json``) and ``monai-gvae evaluate``
report (through :mod:`monai_gvae.bundle.evaluation`, which writes the JSON): the same keys, computed the same
way. Each key is one MONAI-style cumulative metric (``reset`` / ``__call__`` on batches / ``aggregate``) fed
from one pass over the loader:

================================  =================================================================================
key                               definition
================================  =================================================================================
``reconstruction_l1_01``          mean ``|x - G(mu(x))|`` over the image channels, intensities in [0, 1]
                                  (MONAI ``MAEMetric``)
``reconstruction_dice``           joint image+label models only: mean over images of the mean Dice of the
                                  foreground classes present in the true label, decoded label of ``G(mu(x))``
                                  against the true label (MONAI ``DiceMetric``)
``kl``                            mean ``KL(q(z|x) || N(0, I))`` per image, nats (:class:`ELBOMetric`)
``elbo``                          mean per-image ELBO, nats, discretised Gaussian likelihood of the image channels
                                  (:class:`ELBOMetric` with :class:`GVAELikelihood`)
``mmd_gaussian``                  unbiased squared MMD, Gaussian-kernel mixture, between all real images and as many
                                  prior samples (:class:`WholeSetGaussianMMDMetric`)
``ms_ssim_diversity``             mean MS-SSIM between disjoint pairs of prior samples, lower = more diverse
                                  (:class:`MSSSIMDiversityMetric`)
``sharpness_ratio``               mean gradient magnitude of the prior samples over that of the real images:
                                  1 = as sharp as the data, below 1 blurred, above 1 noisy or checkerboard
                                  (:class:`SharpnessRatioMetric`)
================================  =================================================================================

Why the reconstruction error is measured on the image channels in [0, 1]: that is the scale of the images a
user reads and writes (synthesis maps samples back to [0, 1]), it does not change with how label channels are
packed (one-hot, foreground, none), so models with and without labels compare, and the labels get their own
measure (Dice). The training loss and the bundles' validation ``val_reconstruction_mae`` use the model's
[-1, 1] range over all channels instead; on the image channels that is twice this value.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from monai.engines.utils import default_prepare_batch
from monai.metrics import CumulativeIterationMetric, DiceMetric, MAEMetric

from monai_gvae.metrics.diversity import MSSSIMDiversityMetric, ms_ssim_settings
from monai_gvae.metrics.likelihood import ELBOMetric, GVAELikelihood
from monai_gvae.metrics.mmd import DEFAULT_BANDWIDTH_SCALES, WholeSetGaussianMMDMetric
from monai_gvae.metrics.sharpness import SharpnessRatioMetric
from monai_gvae.networks.latents import sample_latents
from monai_gvae.networks.nets.gvae import GVAE
from monai_gvae.transforms.utils import from_model_range, unpack_image_label

__all__ = ["EVALUATION_METRICS", "METRIC_DEFINITIONS", "evaluate", "describe_evaluation", "default_metrics"]

EVALUATION_METRICS = (
    "reconstruction_l1_01",
    "reconstruction_dice",
    "kl",
    "elbo",
    "mmd_gaussian",
    "ms_ssim_diversity",
    "sharpness_ratio",
)
"""Every key :func:`evaluate` can compute, in the order it reports them."""

METRIC_DEFINITIONS = {
    "reconstruction_l1_01": "mean |x - G(mu(x))| over the image channels, intensities in [0, 1] (monai MAEMetric; "
    "half the model-range [-1, 1] error of the image channels)",
    "reconstruction_dice": "mean over images of the mean Dice of the foreground classes present in the true label, "
    "decoded label of G(mu(x)) against the true label (monai DiceMetric, reduction 'mean': background excluded, "
    "classes absent from the true label ignored); joint image+label models only",
    "kl": "mean KL(q(z|x) || N(0, I)) per image, nats",
    "elbo": "mean per-image ELBO E_q[log p(x|z)] - KL, nats: discretised Gaussian likelihood (256 bins over [0, 1], "
    "scale likelihood_scale) of the image channels, num_elbo_samples posterior draws per image",
    "mmd_gaussian": "unbiased squared MMD (Gretton et al. 2012) between all real images and as many prior samples, "
    "image channels in [0, 1] flattened, mixture of Gaussian kernels with bandwidths mmd_bandwidths (default: "
    "0.5, 1, 2 x the median pairwise distance of the real images, the lower middle value for an even number of "
    "pairs); can be slightly negative; lower is better",
    "ms_ssim_diversity": "mean MS-SSIM between disjoint pairs (0, 1), (2, 3), ... of the prior samples, image "
    "channels in [0, 1]; lower = more diverse",
    "sharpness_ratio": "mean gradient magnitude of the prior samples divided by that of all real images (per image: "
    "forward differences along each spatial axis, sqrt of their sum of squares per pixel and channel, mean over "
    "pixels and channels; image channels in [0, 1]); 1 = as sharp as the real images, below 1 blurred, above 1 "
    "sharper than the data, noisy or checkerboard; closer to 1 is better",
}
"""What each key of :func:`evaluate` means (written beside the numbers by the bundle and the command line)."""

_NEEDS_TWO = ("mmd_gaussian", "ms_ssim_diversity")


def default_metrics(model: GVAE) -> tuple[str, ...]:
    """The metrics :func:`evaluate` computes for ``model`` when none are named: all of
    :data:`EVALUATION_METRICS` (``reconstruction_dice`` only when the model generates labels)."""
    return tuple(m for m in EVALUATION_METRICS if m != "reconstruction_dice" or model.label_channels > 0)


def _select(model: GVAE, metrics: Sequence[str] | None) -> tuple[str, ...]:
    if getattr(model, "is_conditional", False):
        raise ValueError(
            "evaluate does not support label-conditioned models (the condition is an input, not generated); "
            "evaluate an unconditional or joint image+label GVAE."
        )
    if metrics is None:
        return default_metrics(model)
    if isinstance(metrics, str):
        metrics = [metrics]
    unknown = [m for m in metrics if m not in EVALUATION_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(EVALUATION_METRICS)}.")
    if "reconstruction_dice" in metrics and model.label_channels == 0:
        raise ValueError("reconstruction_dice needs a model that generates labels; this one has no label channels.")
    if not metrics:
        raise ValueError(f"metrics is empty: name at least one of {list(EVALUATION_METRICS)} (or None for all).")
    return tuple(m for m in EVALUATION_METRICS if m in metrics)


def _build(
    model: GVAE,
    names: tuple[str, ...],
    seed: int,
    likelihood_scale: float,
    num_elbo_samples: int,
    bandwidths: Sequence[float] | None,
) -> dict[str, CumulativeIterationMetric]:
    """One cumulative metric per key; ``kl`` and ``elbo`` share one :class:`ELBOMetric` (one encoding pass)."""
    built: dict[str, CumulativeIterationMetric] = {}
    if "reconstruction_l1_01" in names:
        built["reconstruction_l1_01"] = MAEMetric()
    if "reconstruction_dice" in names:
        built["reconstruction_dice"] = DiceMetric(include_background=False, reduction="mean")
    if "kl" in names or "elbo" in names:
        adapter = GVAELikelihood(
            model, "discretized_gaussian", scale=likelihood_scale, channels=model.image_channels
        )
        built["elbo"] = ELBOMetric(adapter, num_samples=num_elbo_samples, value_range=(-1.0, 1.0), seed=seed)
    if "mmd_gaussian" in names:
        built["mmd_gaussian"] = WholeSetGaussianMMDMetric(bandwidths)
    if "ms_ssim_diversity" in names:
        settings = ms_ssim_settings((model.image_size,) * model.spatial_dims)
        built["ms_ssim_diversity"] = MSSSIMDiversityMetric((0.0, 1.0), settings["kernel_size"], settings["weights"])
    if "sharpness_ratio" in names:
        built["sharpness_ratio"] = SharpnessRatioMetric()
    return built


def _images(batch: Any) -> torch.Tensor:
    x = default_prepare_batch(batch) if isinstance(batch, Mapping) else batch
    x = x[0] if isinstance(x, (tuple, list)) else x
    return torch.as_tensor(x).float()


def _check_input(model: GVAE, x: torch.Tensor) -> None:
    expected = (model.config["in_channels"],) + (model.image_size,) * model.spatial_dims
    if tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"the loader's images have shape {tuple(x.shape[1:])} per item, the model takes {expected} "
            "(image channels then label channels, on the model's grid)."
        )
    if x.numel() and (float(x.min()) < -1.001 or float(x.max()) > 1.001):
        raise ValueError(
            f"the loader's images span [{float(x.min()):.4g}, {float(x.max()):.4g}]: evaluate takes what the "
            "trainer sees, the packed model input in [-1, 1] (see monai_gvae.transforms.PackImageLabeld)."
        )


def _real_batches(data_loader: Iterable, max_samples: int | None) -> Iterator[torch.Tensor]:
    """The loader's model inputs, cut at ``max_samples`` images."""
    seen = 0
    for batch in data_loader:
        x = _images(batch)
        if max_samples is not None:
            x = x[: max_samples - seen]
        if x.shape[0] == 0:
            break
        seen += x.shape[0]
        yield x
        if max_samples is not None and seen >= max_samples:
            break


def _one_hot(label: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(label[:, 0], num_classes).movedim(-1, 1).float()


class _PairedSamples:
    """Feeds prior samples to the diversity metric in pairs (0, 1), (2, 3), ... of the whole sequence, so the
    pairs do not depend on the batch sizes (an odd sample waits for the next batch)."""

    def __init__(self, metric: CumulativeIterationMetric) -> None:
        self.metric, self.pending = metric, None

    def __call__(self, samples: torch.Tensor) -> None:
        if self.pending is not None:
            samples = torch.cat([self.pending, samples])
        even = samples.shape[0] // 2 * 2
        if even:
            self.metric(samples[:even])
        self.pending = samples[even:] if samples.shape[0] > even else None


@torch.no_grad()
def _feed(
    model: GVAE,
    x: torch.Tensor,
    start: int,
    seed: int,
    built: dict[str, CumulativeIterationMetric],
    pairs: _PairedSamples | None,
) -> None:
    """One batch: reconstructions of ``x`` and as many prior samples (latents ``start ..``) into every metric."""
    device = next(model.parameters()).device
    c, classes = model.image_channels, model.num_classes
    x_cpu = x.float().cpu()
    if "elbo" in built:
        built["elbo"](x.to(device))
    if "reconstruction_l1_01" in built or "reconstruction_dice" in built:
        mu, _ = model.encode(x.to(device))
        recon = model.decode(mu).float().cpu()
        if "reconstruction_l1_01" in built:
            built["reconstruction_l1_01"](from_model_range(recon[:, :c]), from_model_range(x_cpu[:, :c]))
        if "reconstruction_dice" in built:
            _, recon_label = unpack_image_label(recon, c, classes)
            _, true_label = unpack_image_label(x_cpu, c, classes)
            built["reconstruction_dice"](_one_hot(recon_label, classes), _one_hot(true_label, classes))
    if "mmd_gaussian" in built or "sharpness_ratio" in built or pairs is not None:
        z = sample_latents(model.latent_size, seed, start, x.shape[0])
        fake01 = from_model_range(model.decode(z.to(device)).float().cpu()[:, :c])
        real01 = from_model_range(x_cpu[:, :c])
        for name in ("mmd_gaussian", "sharpness_ratio"):
            if name in built:
                built[name](fake01, real01)
        if pairs is not None:
            pairs(fake01)


@torch.no_grad()
def evaluate(
    model: GVAE,
    data_loader: Iterable,
    metrics: Sequence[str] | None = None,
    seed: int = 0,
    likelihood_scale: float = 0.05,
    num_elbo_samples: int = 1,
    bandwidths: Sequence[float] | None = None,
    max_samples: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Evaluate a trained GVAE on held-out data: the metrics of :data:`METRIC_DEFINITIONS`, as plain numbers.

    The loader yields what the trainer sees: dicts whose ``"image"`` (or tensors / ``(image, ...)`` tuples) is
    the packed model input ``x``, image channels then label channels, in [-1, 1] on the model's grid. For each
    batch of ``b`` images, the next ``b`` prior samples are decoded: latents ``n .. n + b - 1`` of ``seed`` from
    :func:`monai_gvae.networks.sample_latents`, the same samples ``monai-gvae synthesize --seed SEED`` writes,
    whatever the batch size. The ELBO's posterior draws come from a generator seeded with ``seed`` and follow
    the batches, so all values are reproducible for the same data, batching, seed and device.

    Args:
        model: the trained ``GVAE`` (put in eval mode here); unconditional or joint image+label.
        data_loader: held-out data (e.g. a bundle's ``validate#dataloader``).
        metrics: keys of :data:`EVALUATION_METRICS` to compute; ``None``: :func:`default_metrics` (all that
            apply to the model).
        seed: seed of the prior samples and of the ELBO's posterior draws.
        likelihood_scale: standard deviation of the ELBO's discretised Gaussian likelihood, in [0, 1] intensity
            units (0.05 is 0.1 in the model's [-1, 1] units).
        num_elbo_samples: posterior draws per image for the ELBO.
        bandwidths: Gaussian-kernel widths of ``mmd_gaussian`` in [0, 1] intensity units (e.g. from
            :func:`monai_gvae.metrics.median_heuristic` of training images, to score several models with one
            kernel); ``None``: 0.5, 1 and 2 x the median pairwise distance of the evaluated real images.
        max_samples: stop after this many real images (``None``: the whole loader).
        device: where to run the model; its own device by default.
        progress: show a progress bar (stderr).

    Returns:
        ``{key: float}`` for the selected metrics (NaN where undefined, e.g. Dice when no foreground appears in
        any label), plus ``"num_images"``, the number of real images evaluated.

    Raises:
        ValueError: an unknown metric, Dice for a model without labels, a label-conditioned model, inputs not
            in the model's layout or range, no images, or fewer than 2 images for ``mmd_gaussian`` /
            ``ms_ssim_diversity``; a non-positive ``likelihood_scale`` or ``num_elbo_samples``.

    Example::

        from monai_gvae.metrics import evaluate
        from monai_gvae.networks import load_gvae

        values = evaluate(load_gvae("runs/a/model.pt"), test_loader, seed=0)
        values["reconstruction_l1_01"], values["mmd_gaussian"]
    """
    from tqdm.auto import tqdm

    if not likelihood_scale > 0:
        raise ValueError(f"likelihood_scale must be > 0, got {likelihood_scale}.")
    if int(num_elbo_samples) != num_elbo_samples or num_elbo_samples < 1:
        raise ValueError(f"num_elbo_samples must be an integer >= 1, got {num_elbo_samples}.")
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be >= 1 or None, got {max_samples}.")
    names = _select(model, metrics)
    if device is not None:
        model = model.to(device)
    model.eval()
    built = _build(model, names, int(seed), float(likelihood_scale), int(num_elbo_samples), bandwidths)
    pairs = _PairedSamples(built["ms_ssim_diversity"]) if "ms_ssim_diversity" in built else None
    num_images = 0
    batches = tqdm(_real_batches(data_loader, max_samples), desc="evaluating", disable=not progress, unit="batch")
    for x in batches:
        _check_input(model, x)
        _feed(model, x, num_images, int(seed), built, pairs)
        num_images += x.shape[0]
    if num_images == 0:
        raise ValueError("the evaluation loader yielded no images.")
    if num_images < 2 and any(m in names for m in _NEEDS_TWO):
        raise ValueError(
            f"{[m for m in names if m in _NEEDS_TWO]} need at least 2 images, got {num_images}; "
            "evaluate more images or leave these metrics out."
        )
    values: dict[str, float] = {}
    for name in names:
        if name in ("kl", "elbo"):
            values[name] = float(built["elbo"].aggregate(name))
        else:
            values[name] = float(built[name].aggregate())
    values["num_images"] = num_images
    return values


def describe_evaluation(
    model: GVAE,
    metrics: Sequence[str] | None = None,
    seed: int = 0,
    likelihood_scale: float = 0.05,
    num_elbo_samples: int = 1,
    bandwidths: Sequence[float] | None = None,
    max_samples: int | None = None,
) -> dict[str, Any]:
    """What :func:`evaluate` with these arguments computes: definitions of the selected keys and the settings.

    Takes the same arguments as :func:`evaluate` (without the data), so a report can state its protocol.

    Returns:
        ``{"definitions": {key: text}, "settings": {...}}``, JSON-ready.

    Example::

        report = {"metrics": evaluate(model, loader), **describe_evaluation(model)}
    """
    names = _select(model, metrics)
    settings: dict[str, Any] = {
        "metrics": list(names),
        "seed": int(seed),
        "max_samples": max_samples,
        "image_size": model.image_size,
        "spatial_dims": model.spatial_dims,
        "image_channels": model.image_channels,
        "latent_size": model.latent_size,
        "prior_samples": "monai_gvae.networks.sample_latents(latent_size, seed, i, 1) for image i",
    }
    if "kl" in names or "elbo" in names:
        settings.update(likelihood="discretized_gaussian", likelihood_scale=float(likelihood_scale),
                        likelihood_bins=256, num_elbo_samples=int(num_elbo_samples))
    if "mmd_gaussian" in names:
        settings["mmd_bandwidths"] = (
            [float(b) for b in bandwidths]
            if bandwidths is not None
            else f"{list(DEFAULT_BANDWIDTH_SCALES)} x the median pairwise distance of the real images"
        )
    if "ms_ssim_diversity" in names:
        ms = ms_ssim_settings((model.image_size,) * model.spatial_dims)
        settings["ms_ssim"] = {"kernel_size": ms["kernel_size"], "kernel_sigma": ms["kernel_sigma"],
                               "weights": [round(w, 6) for w in ms["weights"]], "data_range": 1.0}
    return {"definitions": {name: METRIC_DEFINITIONS[name] for name in names}, "settings": settings}
