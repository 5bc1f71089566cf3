"""Basic evaluation of a trained GVAE for the bundles' ``evaluate.yaml``: MMD, MS-SSIM diversity, reconstruction
error, KL and a Gaussian-likelihood ELBO, written to ``metrics.json``.

A deliberately small module, built on MONAI's ``MMDMetric`` and ``MultiScaleSSIMMetric``, that streams a held-out
loader so that every bundle can be evaluated; the fuller metrics of this package (Gaussian-kernel MMD,
importance-weighted bound, Frechet distance) may replace or extend :func:`evaluate_gvae` as long as it returns at
least the same keys.
"""

from __future__ import annotations

import datetime
import json
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from monai.engines.utils import default_prepare_batch
from monai.metrics import MMDMetric, MultiScaleSSIMMetric

from monai_gvae._version import __version__
from monai_gvae.losses import kl_divergence
from monai_gvae.metrics.diversity import ms_ssim_settings
from monai_gvae.networks.nets.gvae import GVAE, reparameterize
from monai_gvae.transforms.utils import from_model_range
from monai_gvae.utils import atomic_path

__all__ = ["METRIC_KEYS", "evaluate_gvae", "save_metrics", "evaluate_to_json"]

METRIC_KEYS = ("mmd", "ms_ssim", "reconstruction_error", "kl", "elbo")


def _batch_input(batch: Any) -> torch.Tensor:
    x = default_prepare_batch(batch) if isinstance(batch, Mapping) else batch
    x = x[0] if isinstance(x, (tuple, list)) else x
    return torch.as_tensor(x).float()


@torch.no_grad()
def evaluate_gvae(
    model: GVAE,
    data_loader: Iterable,
    seed: int = 0,
    likelihood_sigma: float = 0.1,
    num_elbo_samples: int = 1,
    max_samples: int | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Evaluate a trained GVAE on a held-out loader.

    The loader yields what the trainer sees: dicts whose ``"image"`` is the packed model input ``x`` (image
    channels, then label channels) in the model's range [-1, 1]. For each batch of ``b`` images, ``b`` samples are
    drawn from the prior with a ``torch.Generator`` seeded by ``seed`` (on the CPU, so results do not depend on the
    device). What is computed:

    * ``mmd``: MONAI's ``MMDMetric`` (the unbiased estimate of the squared MMD with a *linear* kernel, i.e. the
      squared distance between means up to a finite-sample correction; it can be slightly negative) between the
      real and generated image channels mapped to [0, 1] and flattened, per batch, averaged over batches weighted
      by batch size (batches of one image are skipped). Not the paper's Gaussian-kernel MMD.
    * ``ms_ssim``: diversity among generated samples: MONAI's ``MultiScaleSSIMMetric`` between disjoint pairs
      (sample ``2i`` with ``2i + 1``) of generated image channels in [0, 1] (``data_range`` 1, Gaussian kernel,
      kernel size and scale weights from :func:`monai_gvae.metrics.ms_ssim_settings`), averaged over pairs;
      lower = more diverse.
    * ``reconstruction_error``: mean absolute error between ``x`` and ``G(mu(x))`` over all channels, in the
      model's range [-1, 1] (the training L1 term and the bundles' ``val_reconstruction_mae``).
    * ``kl``: mean ``KL(q(z|x) || N(0, I))`` per image, in nats.
    * ``elbo``: mean per-image ELBO in nats, ``E_q[log p(x|z)] - KL``, with a Gaussian pixel likelihood
      ``p(x|z) = N(x; G(z), likelihood_sigma^2)`` independently over every channel and voxel of ``x`` in [-1, 1]
      (a continuous density, so the value may be positive), the expectation estimated with ``num_elbo_samples``
      reparameterised draws ``z ~ q(z|x)``. Not comparable with the literature's Bernoulli ELBO on binarised MNIST.

    Args:
        model: the trained ``GVAE`` (put in eval mode here).
        data_loader: held-out data.
        seed: seed of the prior samples and of the ELBO's posterior draws.
        likelihood_sigma: standard deviation of the Gaussian likelihood, in model units ([-1, 1]).
        num_elbo_samples: posterior draws per image for the ELBO.
        max_samples: stop after this many real images (``None``: the whole loader).
        device: where to compute; the model's device by default.

    Returns:
        ``{"mmd", "ms_ssim", "reconstruction_error", "kl", "elbo"}`` as floats (NaN when not computable, e.g.
        ``mmd`` with batches of one), plus ``"num_real"``, ``"num_pairs"`` and ``"protocol"`` (the settings above).

    Raises:
        ValueError: the loader is empty, or ``likelihood_sigma``/``num_elbo_samples`` are not positive.

    Example::

        metrics = evaluate_gvae(load_gvae("models/model.pt"), test_loader, seed=0)
        metrics["mmd"], metrics["ms_ssim"]
    """
    if likelihood_sigma <= 0:
        raise ValueError(f"likelihood_sigma must be > 0, got {likelihood_sigma}.")
    if num_elbo_samples < 1:
        raise ValueError(f"num_elbo_samples must be >= 1, got {num_elbo_samples}.")
    if device is not None:
        model = model.to(device)
    model.eval()
    device = next(model.parameters()).device
    c = model.image_channels
    settings = ms_ssim_settings((model.image_size,) * model.spatial_dims)
    kernel_size, weights = settings["kernel_size"], settings["weights"]
    mmd_metric = MMDMetric()
    ms_ssim_metric = MultiScaleSSIMMetric(
        spatial_dims=model.spatial_dims, data_range=1.0, kernel_size=kernel_size,
        kernel_sigma=settings["kernel_sigma"], weights=weights,
    )
    rng = torch.Generator().manual_seed(int(seed))
    log_norm = 0.5 * math.log(2 * math.pi) + math.log(likelihood_sigma)
    sums = {"mmd": 0.0, "ms_ssim": 0.0, "rec": 0.0, "kl": 0.0, "elbo": 0.0}
    n_real = n_mmd = n_pairs = n_elements = 0
    for batch in data_loader:
        x = _batch_input(batch).to(device)
        if max_samples is not None:
            x = x[: max_samples - n_real]
        b = x.shape[0]
        if b == 0:
            break
        mu, logvar = model.encode(x)
        sums["rec"] += float((model.decode(mu) - x).abs().sum())
        n_elements += x.numel()
        kl = kl_divergence(mu, logvar, reduction="none")
        sums["kl"] += float(kl.sum())
        log_lik = torch.zeros(b, device=device)
        for _ in range(num_elbo_samples):
            eps_z = reparameterize(mu.cpu(), logvar.cpu(), rng).to(device)
            err = (x - model.decode(eps_z)) / likelihood_sigma
            log_lik += (-0.5 * err.pow(2) - log_norm).flatten(1).sum(1)
        sums["elbo"] += float((log_lik / num_elbo_samples - kl).sum())
        fake = model.decode(torch.randn(b, model.latent_size, generator=rng).to(device))
        real01, fake01 = from_model_range(x[:, :c]), from_model_range(fake[:, :c])
        if b >= 2:
            sums["mmd"] += float(mmd_metric(real01, fake01)) * b
            n_mmd += b
            pairs = b // 2
            sums["ms_ssim"] += float(ms_ssim_metric(fake01[0 : 2 * pairs : 2], fake01[1 : 2 * pairs : 2]).sum())
            n_pairs += pairs
        n_real += b
        if max_samples is not None and n_real >= max_samples:
            break
    if n_real == 0:
        raise ValueError("the evaluation loader yielded no images.")
    nan = float("nan")
    return {
        "mmd": sums["mmd"] / n_mmd if n_mmd else nan,
        "ms_ssim": sums["ms_ssim"] / n_pairs if n_pairs else nan,
        "reconstruction_error": sums["rec"] / n_elements,
        "kl": sums["kl"] / n_real,
        "elbo": sums["elbo"] / n_real,
        "num_real": n_real,
        "num_pairs": n_pairs,
        "protocol": {
            "mmd": "monai.metrics.MMDMetric (unbiased squared MMD, linear kernel) on flattened image channels in "
            "[0, 1], real vs as many prior samples per loader batch, batch-size-weighted mean",
            "ms_ssim": f"monai.metrics.MultiScaleSSIMMetric between disjoint pairs of prior samples, image channels "
            f"in [0, 1], data_range 1, gaussian kernel {kernel_size}, {len(weights)} scales, weights "
            f"{[round(w, 4) for w in weights]}",
            "reconstruction_error": "mean |x - G(mu(x))| over all channels, model range [-1, 1]",
            "kl": "mean KL(q(z|x) || N(0, I)) per image, nats",
            "elbo": f"mean per-image ELBO, nats: Gaussian likelihood sigma={likelihood_sigma} (model range [-1, 1]) "
            f"over all channels and voxels, {num_elbo_samples} posterior sample(s)",
            "seed": int(seed),
            "image_size": model.image_size,
            "spatial_dims": model.spatial_dims,
            "latent_size": model.latent_size,
        },
    }


def save_metrics(metrics: Mapping[str, Any], path: str, overwrite: bool = False, **extra: Any) -> str:
    """Write ``metrics`` (plus ``extra`` entries, a timestamp and the package version) as JSON, atomically.

    NaN is written as ``null``. Refuses to replace an existing file unless ``overwrite``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, Mapping):
            return {k: clean(w) for k, w in v.items()}
        return v

    content = {k: clean(v) for k, v in metrics.items()}
    content.update({k: clean(v) for k, v in extra.items()})
    content["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
    content["monai_gvae_version"] = __version__
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "w") as f:
            json.dump(content, f, indent=2)
    return path


def evaluate_to_json(
    model: GVAE,
    data_loader: Iterable,
    output_file: str,
    overwrite: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`evaluate_gvae` then :func:`save_metrics` to ``output_file``, recording the checkpoint it evaluated.

    This is what the bundles' ``evaluate.yaml`` calls. The existence of ``output_file`` is checked before the
    (possibly long) evaluation.

    Args:
        model: the trained ``GVAE`` (``load_gvae`` sets its ``source`` and ``checksum``).
        data_loader: held-out data.
        output_file: the ``metrics.json`` to write.
        overwrite: replace an existing file.
        kwargs: passed to :func:`evaluate_gvae`.

    Returns:
        the metrics.
    """
    if os.path.exists(output_file) and not overwrite:
        raise FileExistsError(f"refusing to overwrite existing file {output_file} (pass --overwrite true).")
    metrics = evaluate_gvae(model, data_loader, **kwargs)
    save_metrics(
        metrics, output_file, overwrite=overwrite,
        checkpoint=getattr(model, "source", None), checkpoint_sha256=getattr(model, "checksum", None),
    )
    return metrics
