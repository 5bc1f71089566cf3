"""Synthesis from a trained GVAE: batched sampling, decoded to image + label, written as marked NIfTI files."""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterator

import numpy as np
import torch

import monai_gvae
from monai_gvae.data.writers import write_synthetic_nifti
from monai_gvae.networks.nets.gvae import GVAE, load_gvae
from monai_gvae.transforms.utils import unpack_image_label
from monai_gvae.utils import atomic_path

__all__ = ["generate", "synthesize_to_nifti"]


@torch.no_grad()
def generate(
    model: GVAE,
    num_samples: int,
    seed: int = 0,
    batch_size: int = 16,
    intensity_range: tuple[float, float] = (0.0, 1.0),
    device: str | torch.device | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield ``(images, labels)`` batches of prior samples, decoded (labels ``None`` for image-only models).

    Latents come from one ``torch.Generator`` seeded with ``seed`` on the CPU, so the same seed gives the
    same samples whatever the batch size or device.
    """
    if device is not None:
        model = model.to(device)
    model.eval()
    rng = torch.Generator().manual_seed(int(seed))
    model_device = next(model.parameters()).device
    done = 0
    while done < num_samples:
        n = min(batch_size, num_samples - done)
        z = torch.randn(n, model.latent_size, generator=rng)
        samples = model.decode(z.to(model_device)).float().cpu()
        yield unpack_image_label(samples, model.image_channels, model.num_classes, intensity_range)
        done += n


def synthesize_to_nifti(
    model: GVAE | str,
    output_dir: str,
    num_samples: int = 8,
    seed: int = 0,
    batch_size: int = 16,
    overwrite: bool = False,
    affine: np.ndarray | None = None,
    device: str | torch.device | None = None,
) -> list[dict]:
    """Write ``num_samples`` synthetic image(+label) NIfTI pairs and a ``manifest.json``.

    Every file says in its header ``descrip`` that it is synthetic. Nothing existing is overwritten unless
    ``overwrite``; each file is written under a temporary name and renamed.

    Args:
        model: a ``GVAE`` or a checkpoint path (see :func:`load_gvae`).
        output_dir: folder of the outputs.
        num_samples: how many samples.
        seed: latent seed (same seed -> same files).
        batch_size: samples generated per forward pass.
        overwrite: allow replacing existing outputs.
        affine: 4x4 affine of the written images (identity, 1 mm voxels by default).
        device: device to generate on.

    Returns:
        the manifest entries (one dict per sample).

    Raises:
        FileExistsError: an output exists and ``overwrite`` is False (checked before anything is written).
    """
    if isinstance(model, (str, os.PathLike)):
        model = load_gvae(model)
    names = [(f"synthetic_{i:05d}_image.nii.gz", f"synthetic_{i:05d}_label.nii.gz") for i in range(num_samples)]
    has_label = model.label_channels > 0
    targets = [n for pair in names for n in (pair if has_label else pair[:1])] + ["manifest.json"]
    existing = [t for t in targets if os.path.exists(os.path.join(output_dir, t))]
    if existing and not overwrite:
        raise FileExistsError(
            f"{len(existing)} output file(s) already exist in {output_dir} (e.g. {existing[0]}); "
            "pass overwrite=True (or choose another folder)."
        )
    checksum = getattr(model, "checksum", None)
    entries: list[dict] = []
    index = 0
    for images, labels in generate(model, num_samples, seed, batch_size, device=device):
        for j in range(images.shape[0]):
            image_name, label_name = names[index]
            entry = {"index": index, "image": image_name, "seed": seed, "model_sha256": checksum}
            write_synthetic_nifti(images[j], os.path.join(output_dir, image_name), affine=affine, overwrite=overwrite)
            if labels is not None:
                write_synthetic_nifti(
                    labels[j].to(torch.uint8), os.path.join(output_dir, label_name), affine=affine,
                    overwrite=overwrite, kind="label",
                )
                entry["label"] = label_name
            entries.append(entry)
            index += 1
    manifest = {
        "synthetic": True,
        "generator": "monai-gvae",
        "version": monai_gvae.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "model_sha256": checksum,
        "seed": seed,
        "num_samples": num_samples,
        "files": entries,
    }
    with atomic_path(os.path.join(output_dir, "manifest.json"), overwrite=overwrite) as tmp:
        with open(tmp, "w") as f:
            json.dump(manifest, f, indent=2)
    return entries
