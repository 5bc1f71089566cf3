"""Evaluation reports and the memorisation check, written as JSON: what the bundles and the command line call.

* :func:`evaluate_to_json` -- the bundles' ``evaluate.yaml`` (``metrics.json`` from the held-out loader);
* :func:`evaluate_folder` -- ``monai-gvae evaluate`` (images read from a folder);
* :func:`check_memorization` -- ``monai-gvae memorization``.

Both evaluations build their report with :func:`evaluation_report` around one call of
:func:`monai_gvae.metrics.evaluate`, so ``metrics.json`` and ``monai-gvae evaluate`` hold the same keys with the
same definitions; :func:`write_json_report` is the one (atomic) JSON writer.
"""

from __future__ import annotations

import datetime
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from monai_gvae._version import __version__
from monai_gvae.data.inputs import InputImageError, LoadedImages, load_image_folder, prepare_image
from monai_gvae.metrics import describe_evaluation, evaluate
from monai_gvae.networks.io import load_gvae
from monai_gvae.networks.nets.gvae import GVAE
from monai_gvae.transforms.utils import pack_image_label
from monai_gvae.utils import atomic_path, check_targets_free

__all__ = [
    "report_to_json",
    "write_json_report",
    "evaluation_report",
    "evaluate_to_json",
    "evaluate_model",
    "evaluate_folder",
    "check_memorization",
]


def _json_ready(value: Any) -> Any:
    """NaN/Inf become ``None`` (JSON ``null``: strict JSON has no NaN), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def report_to_json(report: Mapping[str, Any]) -> str:
    """``report`` as indented JSON text, NaN/Inf as ``null`` (what :func:`write_json_report` writes).

    Example::

        print(report_to_json(evaluate_folder(model, "data/test")))
    """
    return json.dumps(_json_ready(report), indent=2)


def write_json_report(path: str | os.PathLike, report: Mapping[str, Any], overwrite: bool = False) -> str:
    """Write ``report`` as indented JSON, atomically (a complete file or none); NaN/Inf are written as ``null``.

    Args:
        path: the file to write (its folder is created).
        report: JSON-ready content (numbers, strings, lists, dicts).
        overwrite: replace an existing file.

    Returns:
        ``path``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.

    Example::

        write_json_report("runs/a/metrics.json", report)
    """
    path = os.fspath(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "w") as f:
            f.write(report_to_json(report))
    return path


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


def evaluation_report(model: GVAE, data_loader: Iterable, **settings: Any) -> dict[str, Any]:
    """:func:`monai_gvae.metrics.evaluate` of ``model`` on ``data_loader``, with its protocol and provenance.

    Args:
        model: the ``GVAE``.
        data_loader: batches of packed model inputs in [-1, 1] (see :func:`monai_gvae.metrics.evaluate`).
        settings: keyword arguments of :func:`monai_gvae.metrics.evaluate` (``metrics``, ``seed``,
            ``likelihood_scale``, ``num_elbo_samples``, ``bandwidths``, ``max_samples``, ``device``,
            ``progress``).

    Returns:
        ``{"generator", "version", "created", "model_sha256", "model_source", "metrics": {key: value},
        "num_images", "definitions": {key: text}, "settings": {...}}``, JSON-ready.
    """
    values = evaluate(model, data_loader, **settings)
    num_images = values.pop("num_images")
    protocol = describe_evaluation(model, **{k: v for k, v in settings.items() if k not in ("device", "progress")})
    return {**_provenance(model), "metrics": values, "num_images": num_images, **protocol}


def evaluate_to_json(
    model: GVAE,
    data_loader: Iterable,
    output_file: str | os.PathLike,
    overwrite: bool = False,
    **settings: Any,
) -> dict[str, Any]:
    """:func:`evaluation_report` written to ``output_file``: what the bundles' ``evaluate.yaml`` calls.

    ``output_file`` is checked before the (possibly long) evaluation and written atomically.

    Args:
        model: the trained ``GVAE`` (``load_gvae`` records its file and SHA-256).
        data_loader: held-out data, packed model inputs in [-1, 1] (a bundle's ``validate#dataloader``).
        output_file: the ``metrics.json`` to write.
        overwrite: replace an existing file.
        settings: keyword arguments of :func:`monai_gvae.metrics.evaluate`.

    Returns:
        the report.

    Raises:
        FileExistsError: ``output_file`` exists and ``overwrite`` is False.

    Example::

        evaluate_to_json(load_gvae("runs/a/model.pt"), test_loader, "runs/a/metrics.json", seed=0)
    """
    check_targets_free([output_file], overwrite)
    report = evaluation_report(model, data_loader, **settings)
    write_json_report(output_file, report, overwrite)
    return report


def _pack(model: GVAE, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    if model.label_channels == 0:
        return torch.stack([pack_image_label(i, None, None) for i in images])
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
    **settings: Any,
) -> dict[str, Any]:
    """:func:`evaluation_report` of a GVAE on images (and labels) in memory.

    The images are packed into the model's layout (:func:`monai_gvae.transforms.pack_image_label`) and
    evaluated in batches of ``batch_size`` in their order.

    Args:
        model: the GVAE.
        images: ``(N, C, *spatial)`` in [0, 1] on the model's grid.
        labels: ``(N, 1, *spatial)`` class indices (required for joint image+label models).
        seed: seed of the prior samples and the ELBO's posterior draws.
        batch_size: images per forward pass.
        device: where to run (default: the model's device).
        progress: show a progress bar (stderr).
        settings: further keyword arguments of :func:`monai_gvae.metrics.evaluate` (``metrics``,
            ``likelihood_scale``, ``num_elbo_samples``, ``bandwidths``, ``max_samples``).

    Returns:
        the report, plus ``"image_shape"``.

    Raises:
        ValueError: labels missing for a joint model, or what :func:`monai_gvae.metrics.evaluate` refuses.

    Example::

        report = evaluate_model(model, images, labels, seed=0)
        report["metrics"]["reconstruction_l1_01"]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    packed = _pack(model, images, labels)
    batches = [{"image": packed[i : i + batch_size]} for i in range(0, packed.shape[0], batch_size)]
    report = evaluation_report(model, batches, seed=seed, device=device, progress=progress, **settings)
    report["image_shape"] = list(images.shape[1:])
    return report


def _load_model(model: GVAE | str | os.PathLike) -> GVAE:
    return load_gvae(model) if isinstance(model, (str, os.PathLike)) else model


def _intensity_note(intensity_range: tuple[float, float] | None) -> str:
    if intensity_range is None:
        return "per-image min-max to [0, 1]"
    return f"{list(intensity_range)} -> [0, 1], clipped"


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
    **settings: Any,
) -> dict:
    """Evaluate a GVAE (:func:`evaluate_model`) on the images of a folder and optionally write the JSON.

    Images are resized to the model's grid with intensities mapped to [0, 1] (``intensity_range``, or per-image
    min-max). A joint image+label model needs ``data_dir/images`` and ``data_dir/labels``.

    Args:
        model: a ``GVAE`` or checkpoint path.
        data_dir: folder of real images (see :mod:`monai_gvae.data.inputs`).
        output: JSON file to write (checked before any work; written atomically).
        intensity_range: fixed ``(low, high)`` of the inputs; ``None``: per-image min-max.
        seed: seed of the prior samples and the ELBO's posterior draws.
        batch_size: images per forward pass.
        device: device to run on.
        overwrite: allow replacing ``output``.
        progress: progress bars (stderr).
        settings: further keyword arguments of :func:`monai_gvae.metrics.evaluate` (``metrics``,
            ``likelihood_scale``, ``num_elbo_samples``, ``bandwidths``, ``max_samples``).

    Returns:
        the report (metrics, definitions, settings, provenance, data).

    Raises:
        FileExistsError: ``output`` exists and ``overwrite`` is False.
        monai_gvae.data.inputs.InputImageError: an unreadable or inconsistent input (named).

    Example::

        report = evaluate_folder("models/model.pt", "data/test", output="eval.json", seed=0)
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
        model, data.images, data.labels, seed=seed, batch_size=batch_size, device=device, progress=progress, **settings
    )
    report = {
        **result,
        "data_dir": os.fspath(data_dir),
        "preprocessing": {
            "intensity": _intensity_note(intensity_range),
            "resized_to": [model.image_size] * model.spatial_dims,
        },
        "files": data.names,
    }
    if output is not None:
        write_json_report(output, report, overwrite)
    return report


def _synthetic_samples(
    synthetic_dir: str | os.PathLike | None,
    model: GVAE | str | os.PathLike | None,
    num_samples: int,
    seed: int,
    intensity_range: tuple[float, float] | None,
    batch_size: int,
    device: str | torch.device | None,
    progress: bool,
) -> tuple[LoadedImages, dict, GVAE | None]:
    """The synthetic side of the memorisation check: a folder's images or ``num_samples`` drawn from ``model``,
    in [0, 1]; also what the report says about their source, and the loaded model (``None`` for a folder)."""
    from monai_gvae.bundle.synthesis import generate

    if synthetic_dir is not None:
        synthetic = load_image_folder(synthetic_dir, intensity_range=intensity_range, progress=progress)
        return synthetic, {"synthetic_dir": os.fspath(synthetic_dir)}, None
    loaded = _load_model(model)
    batches = [images for images, _ in generate(loaded, num_samples, seed, batch_size, device=device)]
    samples = torch.stack(
        [prepare_image(x, intensity_range=intensity_range, name="sample") for x in torch.cat(batches)]
    )
    synthetic = LoadedImages(samples, None, [f"sample_{i:05d}" for i in range(num_samples)], [])
    return synthetic, {"num_samples": num_samples, "seed": seed}, loaded


def _real_images_on_grid(
    training_dir: str | os.PathLike,
    holdout_dir: str | os.PathLike | None,
    shape: tuple[int, ...],
    intensity_range: tuple[float, float] | None,
    progress: bool,
) -> tuple[LoadedImages, LoadedImages | None]:
    """The training and (optional) held-out images resized to the synthetic samples' ``shape`` ``(C, *spatial)``,
    intensities in [0, 1]; at least 2 training images unless held-out ones give the reference distances."""
    grid = dict(spatial_dims=len(shape) - 1, spatial_size=shape[1:], channels=shape[0],
                intensity_range=intensity_range, progress=progress)
    training = load_image_folder(training_dir, **grid)
    if training.images.shape[0] < 2 and holdout_dir is None:
        raise InputImageError(f"{training_dir}: at least 2 training images are needed (or give a held-out folder).")
    holdout = load_image_folder(holdout_dir, **grid) if holdout_dir is not None else None
    return training, holdout


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
    from monai_gvae.metrics.memorization import memorization_report, save_closest_pairs

    if (synthetic_dir is None) == (model is None):
        raise ValueError("give exactly one of synthetic_dir and model.")
    json_path = os.path.join(output_dir, "memorization.json")
    png_path = os.path.join(output_dir, "memorization_closest_pairs.png")
    check_targets_free([json_path, png_path], overwrite)
    synthetic, source, loaded_model = _synthetic_samples(
        synthetic_dir, model, num_samples, seed, intensity_range, batch_size, device, progress
    )
    shape = tuple(synthetic.images.shape[1:])
    training, holdout = _real_images_on_grid(training_dir, holdout_dir, shape, intensity_range, progress)
    analysis = memorization_report(
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
        "preprocessing": {"intensity": _intensity_note(intensity_range), "compared_on": list(shape)},
        "feature_space": "given feature_fn" if feature_fn is not None else None,
        **analysis,
        "closest_pairs_png": os.path.basename(png_path),
    }
    os.makedirs(output_dir, exist_ok=True)
    save_closest_pairs(synthetic.images, training.images, report, png_path, num_pairs=num_pairs, overwrite=overwrite)
    try:
        write_json_report(json_path, report, overwrite)
    except BaseException:
        os.remove(png_path)
        raise
    return report
