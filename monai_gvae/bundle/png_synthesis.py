"""RGB PNG synthesis for the natural-image bundles (LSUN, CelebA-HQ), marked synthetic like every output.

Grey-level and medical outputs go through :func:`monai_gvae.bundle.synthesize` (NIfTI, DICOM, one-channel PNG); this
adds the 3-channel case it does not cover, with the same latents (:func:`generate`), text chunks and manifest.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from monai_gvae.bundle.synthesis import generate, write_manifest
from monai_gvae.data.writers import synthetic_png_info
from monai_gvae.networks.io import load_gvae, model_checksum
from monai_gvae.networks.nets.gvae import GVAE
from monai_gvae.utils import atomic_path, check_targets_free

__all__ = ["synthesize_rgb_png"]


def synthesize_rgb_png(
    model: GVAE | str,
    output_dir: str,
    num_samples: int = 16,
    seed: int = 0,
    batch_size: int = 16,
    overwrite: bool = False,
    device: str | torch.device | None = None,
) -> dict:
    """Write ``num_samples`` generated RGB images as 8-bit PNG files and a ``manifest.json``.

    Each PNG carries the text chunks of :func:`monai_gvae.data.write_synthetic_png` (``Synthetic = YES``,
    ``Description``, ``Software``, ``Comment`` with the model checksum, seed and sample index). Sample ``i`` of a seed
    is the same whatever the batch size (see :func:`monai_gvae.bundle.sample_latents`). All targets are checked
    before anything is written; files are written under temporary names and renamed.

    Args:
        model: a 2D ``GVAE`` with 3 image channels and no label channels, or a checkpoint path.
        output_dir: folder of the outputs (created).
        num_samples: how many images.
        seed: latent seed.
        batch_size: images generated per forward pass.
        overwrite: allow replacing existing outputs.
        device: device to generate on.

    Returns:
        the manifest (also written to ``output_dir/manifest.json``).

    Raises:
        ValueError: not a 2D, 3-channel, image-only model (use :func:`monai_gvae.bundle.synthesize` for others).
        FileExistsError: an output exists and ``overwrite`` is False (nothing written).

    Example::

        synthesize_rgb_png("bundles/gvae_celebahq/models/model.pt", "faces", num_samples=8, seed=1)
    """
    if isinstance(model, (str, os.PathLike)):
        model = load_gvae(model)
    if model.spatial_dims != 2 or model.image_channels != 3 or model.label_channels:
        raise ValueError(
            f"RGB PNG synthesis needs a 2D model with 3 image channels and no labels, got spatial_dims="
            f"{model.spatial_dims}, image_channels={model.image_channels}, label_channels={model.label_channels} "
            "(use monai_gvae.bundle.synthesize)."
        )
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
    names = [f"synthetic_{i:05d}_image.png" for i in range(num_samples)]
    manifest_path = os.path.join(output_dir, "manifest.json")
    check_targets_free([os.path.join(output_dir, n) for n in names] + [manifest_path], overwrite)
    checksum = model_checksum(model)
    entries: list[dict] = []
    for images, _ in generate(model, num_samples, seed, batch_size, device=device):
        for image in images:
            index = len(entries)
            pixels = np.round(image.clamp(0, 1).numpy() * 255.0).astype(np.uint8).transpose(1, 2, 0)
            info = synthetic_png_info({"Comment": f"model sha256 {checksum}; seed {seed}; sample {index}"})
            with atomic_path(os.path.join(output_dir, names[index]), overwrite=overwrite) as tmp:
                Image.fromarray(pixels).save(tmp, format="PNG", pnginfo=info)
            entries.append({"index": index, "image": names[index], "seed": seed, "format": "png", "synthetic": True})
    return write_manifest(
        manifest_path, model, seed, "png", entries, overwrite, checksum=checksum, image_size=[model.image_size] * 2
    )
