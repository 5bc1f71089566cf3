"""Reports on a trained GVAE from image folders: metrics against real data, and a memorisation check.

What ``monai-gvae evaluate`` and ``monai-gvae memorization`` call; each reads its folders with
:func:`monai_gvae.data.inputs.load_image_folder` (NIfTI, DICOM series, PNG) and writes a JSON report.

The metrics here are a small self-contained set (reconstruction L1 and Dice, KL, MONAI's ``MMDMetric``);
the fuller metric suite of ``monai_gvae.metrics`` (kernel MMD, MS-SSIM diversity, likelihood bounds,
Frechet distance) is not part of this module.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable

import torch

from monai_gvae._version import __version__
from monai_gvae.data.inputs import InputImageError, LoadedImages, load_image_folder, prepare_image
from monai_gvae.losses import kl_divergence
from monai_gvae.networks.io import load_gvae
from monai_gvae.networks.nets.gvae import GVAE
from monai_gvae.transforms.utils import pack_image_label, to_model_range, unpack_image_label
from monai_gvae.utils import atomic_path, check_targets_free

__all__ = ["evaluate_model", "evaluate_folder", "check_memorization"]


def _pack(model: GVAE, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    if model.label_channels == 0:
        return to_model_range(images)
    if labels is None:
        raise ValueError(f"the model generates {model.num_classes} label classes: labels are needed.")
    mode = "onehot" if model.label_channels == model.num_classes else "foreground"
    return torch.stack([pack_image_label(i, l, model.num_classes, mode) for i, l in zip(images, labels)])


@torch.no_grad()
def evaluate_model(
    model: GVAE,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    seed: int = 0,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict:
    """Reconstruction, KL and MMD of a GVAE on real images.

    * ``reconstruction_l1``: mean ``|x - G(mu(x))|`` over image pixels, intensities in [0, 1].
    * ``reconstruction_dice`` (joint models): mean Dice of the decoded label of ``G(mu(x))`` against the true
      label, foreground classes, MONAI ``DiceMetric`` (classes absent from both ignored).
    * ``kl``: mean ``KL(q(z|x) || N(0, I))`` in nats per image.
    * ``mmd_linear``: MONAI ``MMDMetric`` (unbiased, linear kernel on flattened images in [0, 1]) between the
      real images and as many prior samples drawn with ``seed``; can be slightly negative; lower is better.

    Args:
        model: the GVAE.
        images: ``(N, C, *spatial)`` in [0, 1] on the model's grid (N >= 2).
        labels: ``(N, 1, *spatial)`` class indices (required for joint image+label models).
        seed: seed of the prior samples.
        batch_size: images per forward pass.
        device: where to run (default: the model's device).
        progress: show a progress bar (stderr).

    Returns:
        ``{"metrics": {...}, "num_images": N, ...}`` (JSON-ready).

    Raises:
        ValueError: fewer than 2 images, or labels missing for a joint model.

    Example::

        result = evaluate_model(model, images, labels)
    """
    from monai.metrics import DiceMetric, MMDMetric
    from tqdm.auto import tqdm

    from monai_gvae.bundle.synthesis import generate

    if images.shape[0] < 2:
        raise ValueError(f"evaluation needs at least 2 images, got {images.shape[0]}.")
    if device is not None:
        model = model.to(device)
    model.eval()
    dev = next(model.parameters()).device
    packed = _pack(model, images, labels)
    l1, kl = [], []
    dice = DiceMetric(include_background=False, reduction="mean") if model.label_channels else None
    for start in tqdm(range(0, packed.shape[0], batch_size), desc="evaluating", disable=not progress, unit="batch"):
        x = packed[start : start + batch_size].to(dev)
        mu, logvar = model.encode(x)
        rec_image, rec_label = unpack_image_label(
            model.decode(mu).float().cpu(), model.image_channels, model.num_classes
        )
        real = images[start : start + batch_size]
        l1.append((rec_image - real).abs().flatten(1).mean(1))
        kl.append(kl_divergence(mu.float(), logvar.float(), reduction="none").cpu())
        if dice is not None:
            true = labels[start : start + batch_size]
            onehot = (
                lambda t: torch.nn.functional.one_hot(t[:, 0], model.num_classes).movedim(-1, 1).float()
            )  # noqa: E731
            dice(onehot(rec_label), onehot(true))
    fakes = torch.cat([b for b, _ in generate(model, images.shape[0], seed, batch_size)])
    metrics = {
        "reconstruction_l1": float(torch.cat(l1).mean()),
        "kl": float(torch.cat(kl).mean()),
        "mmd_linear": float(MMDMetric()(images.float(), fakes.float())),
    }
    if dice is not None:
        metrics["reconstruction_dice"] = float(dice.aggregate())
    return {
        "metrics": metrics,
        "num_images": int(images.shape[0]),
        "image_shape": list(images.shape[1:]),
        "seed": seed,
        "definitions": {
            "reconstruction_l1": "mean |x - G(mu(x))| over image pixels, intensities in [0, 1]",
            "reconstruction_dice": "mean foreground Dice of the decoded label of G(mu(x)) (joint models)",
            "kl": "mean KL(q(z|x) || N(0, I)) per image, nats",
            "mmd_linear": "monai.metrics.MMDMetric (unbiased, linear kernel, flattened images in [0, 1]) between "
            "the real images and as many prior samples (seeded); lower is better, can be slightly negative",
        },
    }


def _load_model(model: GVAE | str | os.PathLike) -> GVAE:
    return load_gvae(model) if isinstance(model, (str, os.PathLike)) else model


def _write_json(path: str, payload: dict, overwrite: bool) -> None:
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=2)


def _provenance(model: GVAE | None) -> dict:
    from monai_gvae.networks.io import model_checksum

    out = {
        "generator": "monai-gvae",
        "version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    if model is not None:
        out["model_sha256"] = model_checksum(model)
        out["model_source"] = getattr(model, "source", None)
    return out


def evaluate_folder(
    model: GVAE | str | os.PathLike,
    data_dir: str | os.PathLike,
    output: str | os.PathLike | None = None,
    intensity_range: tuple[float, float] | None = None,
    seed: int = 0,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Evaluate a GVAE (:func:`evaluate_model`) on the images of a folder and optionally write the JSON.

    Images are resized to the model's grid with intensities mapped to [0, 1] (``intensity_range``, or per-image
    min-max). A joint image+label model needs ``data_dir/images`` and ``data_dir/labels``.

    Args:
        model: a ``GVAE`` or checkpoint path.
        data_dir: folder of real images (see :mod:`monai_gvae.data.inputs`).
        output: JSON file to write (checked before any work; written atomically).
        intensity_range: fixed ``(low, high)`` of the inputs; ``None``: per-image min-max.
        seed: seed of the prior samples for MMD.
        batch_size: images per forward pass.
        device: device to run on.
        overwrite: allow replacing ``output``.
        progress: progress bars (stderr).

    Returns:
        the report (metrics, protocol, provenance).

    Raises:
        FileExistsError: ``output`` exists and ``overwrite`` is False.
        monai_gvae.data.inputs.InputImageError: an unreadable or inconsistent input (named).

    Example::

        report = evaluate_folder("models/model.pt", "data/test", output="eval.json")
    """
    if output is not None:
        check_targets_free([output], overwrite)
    model = _load_model(model)
    data = load_image_folder(
        data_dir,
        spatial_dims=model.spatial_dims,
        spatial_size=(model.image_size,) * model.spatial_dims,
        channels=model.image_channels,
        intensity_range=intensity_range,
        num_classes=model.num_classes,
        require_labels=model.label_channels > 0,
        progress=progress,
    )
    result = evaluate_model(
        model, data.images, data.labels, seed=seed, batch_size=batch_size, device=device, progress=progress
    )
    report = {
        **_provenance(model),
        "data_dir": os.fspath(data_dir),
        "preprocessing": {
            "intensity": (
                "per-image min-max to [0, 1]"
                if intensity_range is None
                else f"{list(intensity_range)} -> [0, 1], clipped"
            ),
            "resized_to": [model.image_size] * model.spatial_dims,
        },
        **result,
        "files": data.names,
    }
    if output is not None:
        _write_json(os.fspath(output), report, overwrite)
    return report


def check_memorization(
    training_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    synthetic_dir: str | os.PathLike | None = None,
    model: GVAE | str | os.PathLike | None = None,
    num_samples: int = 64,
    seed: int = 0,
    holdout_dir: str | os.PathLike | None = None,
    percentile: float = 5.0,
    intensity_range: tuple[float, float] | None = None,
    num_pairs: int = 8,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    feature_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Nearest-neighbour memorisation check of synthetic samples against a training folder.

    Synthetic samples come from ``synthetic_dir`` (e.g. a ``monai-gvae synthesize`` output, whose label files
    are skipped) or are drawn from ``model`` (``num_samples`` with ``seed``). All images are compared on the
    synthetic samples' grid (training and held-out images resized to it) with intensities in [0, 1], image
    channels only. See :func:`monai_gvae.metrics.memorization_report` for the flagging rule.

    Writes ``output_dir/memorization.json`` (the report) and ``output_dir/memorization_closest_pairs.png``
    (closest pairs; it shows training images). Both are checked before any work and written atomically.

    Args:
        training_dir: the training images.
        output_dir: where the report goes.
        synthetic_dir: folder of synthetic images (or give ``model``).
        model: a ``GVAE`` or checkpoint to draw samples from.
        num_samples: samples drawn from ``model``.
        seed: their seed.
        holdout_dir: real images not used in training (better reference distances).
        percentile: flagging percentile of the real reference distances.
        intensity_range: fixed ``(low, high)`` of all inputs; ``None``: per-image min-max.
        num_pairs: pairs drawn in the PNG.
        batch_size: samples per forward pass.
        device: device for ``model``.
        feature_fn: optional feature extractor (images in [0, 1] -> ``(n, F)``) for a second space.
        overwrite: allow replacing the report files.
        progress: progress bars (stderr).

    Returns:
        the report.

    Raises:
        ValueError: neither or both of ``synthetic_dir`` and ``model``.
        FileExistsError: report files exist and ``overwrite`` is False.
        monai_gvae.data.inputs.InputImageError: an unreadable or inconsistent input (named).

    Example::

        report = check_memorization("data/train", "reports/mem", synthetic_dir="synthetic/")
    """
    from monai_gvae.bundle.synthesis import generate
    from monai_gvae.metrics.memorization import memorization_report, save_closest_pairs

    if (synthetic_dir is None) == (model is None):
        raise ValueError("give exactly one of synthetic_dir and model.")
    json_path = os.path.join(output_dir, "memorization.json")
    png_path = os.path.join(output_dir, "memorization_closest_pairs.png")
    check_targets_free([json_path, png_path], overwrite)
    loaded_model = None
    if synthetic_dir is not None:
        synthetic = load_image_folder(synthetic_dir, intensity_range=intensity_range, progress=progress)
        source = {"synthetic_dir": os.fspath(synthetic_dir)}
    else:
        loaded_model = _load_model(model)
        batches = [images for images, _ in generate(loaded_model, num_samples, seed, batch_size, device=device)]
        samples = torch.stack(
            [prepare_image(x, intensity_range=intensity_range, name="sample") for x in torch.cat(batches)]
        )
        synthetic = LoadedImages(samples, None, [f"sample_{i:05d}" for i in range(num_samples)], [])
        source = {"num_samples": num_samples, "seed": seed}
    shape = tuple(synthetic.images.shape[1:])
    spatial_dims, size, channels = len(shape) - 1, shape[1:], shape[0]
    common = dict(
        spatial_dims=spatial_dims,
        spatial_size=size,
        channels=channels,
        intensity_range=intensity_range,
        progress=progress,
    )
    training = load_image_folder(training_dir, **common)
    if training.images.shape[0] < 2 and holdout_dir is None:
        raise InputImageError(f"{training_dir}: at least 2 training images are needed (or give a held-out folder).")
    holdout = load_image_folder(holdout_dir, **common) if holdout_dir is not None else None
    report = memorization_report(
        synthetic.images,
        training.images,
        holdout.images if holdout is not None else None,
        percentile=percentile,
        synthetic_names=synthetic.names,
        training_names=training.names,
        feature_fn=feature_fn,
    )
    report = {
        **_provenance(loaded_model),
        **source,
        "training_dir": os.fspath(training_dir),
        "holdout_dir": os.fspath(holdout_dir) if holdout_dir is not None else None,
        "preprocessing": {
            "intensity": (
                "per-image min-max to [0, 1]"
                if intensity_range is None
                else f"{list(intensity_range)} -> [0, 1], clipped"
            ),
            "compared_on": list(shape),
        },
        "feature_space": "given feature_fn" if feature_fn is not None else None,
        **report,
        "closest_pairs_png": os.path.basename(png_path),
    }
    os.makedirs(output_dir, exist_ok=True)
    save_closest_pairs(synthetic.images, training.images, report, png_path, num_pairs=num_pairs, overwrite=overwrite)
    try:
        _write_json(json_path, report, overwrite)
    except BaseException:
        os.remove(png_path)
        raise
    return report
