"""The model holder and sample pool behind :class:`~monai_gvae.transforms.GVAESynthesize`.

A :class:`GVAESamplePool` owns one inference copy of a GVAE (on one device, in eval mode) and a buffer of
prior samples generated in batches. Transforms, their copies and :class:`~monai_gvae.data.SyntheticMixDataset`
share the pool instead of copying the model: ``copy.deepcopy(pool)`` returns a new pool that *shares the
model* (and the current buffer, which is never modified in place) but has its own use counter, so
MONAI's ``CacheDataset``/``Compose(threading=True)`` copies of a transform cost no model copy.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from monai_gvae.networks.io import model_checksum, resolve_gvae
from monai_gvae.networks.utils import prepare_network
from monai_gvae.transforms.utils import unpack_to_host
from monai_gvae.utils import check_bool

__all__ = ["GVAESamplePool", "synthetic_meta", "SYNTHETIC_FLAG", "SYNTHETIC_MODEL", "SYNTHETIC_MODE"]

SYNTHETIC_FLAG = "synthetic"
"""Meta key (and default dictionary key) saying whether an item is synthetic (``bool``)."""
SYNTHETIC_MODEL = "synthetic_model_sha256"
"""Meta key holding the generating model's identity (sha256; ``""`` on real items)."""
SYNTHETIC_MODE = "synthetic_mode"
"""Meta key holding the synthesis mode (``"prior"``, ``"posterior"``; ``""`` on real items)."""

# Meta keys that may identify a patient or a source file. On synthetic items their values are replaced by
# "SYNTHETIC" (strings) or dropped (other types): the geometry (affine, spacing, shape) is kept.
_IDENTIFIER_KEY = re.compile(
    r"(filename|file_name|path|patient|subject|uid|accession|institution|physician|operator|date|time|descrip|"
    r"aux_file|db_name|"
    r"^[0-9a-f]{4}[|,]?[0-9a-f]{4}$)",  # DICOM tags as ITK ("0010|0010") or pydicom ("00100010") keys
    re.IGNORECASE,
)


def synthetic_meta(meta: Mapping[str, Any], checksum: str, mode: str) -> dict[str, Any]:
    """Meta dictionary of a synthetic item made from an input's ``meta``.

    Geometry (affine, spacing, shapes) is kept; values of keys that may identify a patient or a file
    (file names, patient/study fields, UIDs, dates, DICOM tags) become ``"SYNTHETIC"`` (strings) or are
    dropped (other types); the flags :data:`SYNTHETIC_FLAG`, :data:`SYNTHETIC_MODEL`, :data:`SYNTHETIC_MODE`
    are set.
    """
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if isinstance(key, str) and _IDENTIFIER_KEY.search(key) and key not in (SYNTHETIC_MODEL, SYNTHETIC_MODE):
            if isinstance(value, str):
                out[key] = "SYNTHETIC"
            continue
        out[key] = value
    out.update({SYNTHETIC_FLAG: True, SYNTHETIC_MODEL: checksum, SYNTHETIC_MODE: mode})
    return out


class GVAESamplePool:
    """One shared GVAE and a buffer of its prior samples, generated in batches and refreshed after use.

    ``draw`` costs a lookup: the buffer holds ``pool_size`` decoded samples (image in [-1, 1], label as class
    indices), made ``batch_size`` at a time from latents of the caller's ``torch.Generator``; after
    ``refresh_every`` draws the next ``draw`` regenerates it. ``reset()`` drops the buffer (transforms call it
    from ``set_random_state``, so a reseeded transform repeats its samples exactly). The model is treated as
    frozen: its identity (``checksum``) is taken once, here; make a new pool after training it further.

    Args:
        model: a ``GVAE``, a checkpoint file or a bundle folder (see :func:`monai_gvae.networks.resolve_gvae`).
        pool_size: samples per buffer.
        batch_size: samples per forward pass while filling the buffer.
        refresh_every: draws after which the buffer is regenerated; default ``4 * pool_size``.
        device: device of the model (CPU by default: DataLoader workers are forked, and CUDA cannot be
            initialised in a forked process).
        checkpoint_key: entry of a multi-network checkpoint.
        sample_filter: optional ``f(images, labels) -> bool tensor (N,)`` choosing which generated samples enter
            the buffer (images in [-1, 1] ``(N, C, *spatial)``, labels ``(N, 1, *spatial)`` int64 or ``None``);
            ``acceptance_rate`` reports the kept fraction.
        max_attempts: a refill generates at most ``max_attempts * pool_size`` samples to find ``pool_size``
            accepted ones; it keeps what it found, and raises if that is nothing.
        channels_last: put the model's convolution weights in the channels-last memory format (in place; values
            unchanged): batched decoding 1.9x faster on a CPU (``docs/performance.md``). Outputs differ from the
            default layout only in the last bits.
        amp: decode (and encode) under autocast: bfloat16 on a CPU, float16 on CUDA; outputs stay float32.
            Faster (3.3x with ``channels_last`` for a batch of 64 on a CPU with bfloat16 support) at bfloat16's
            precision, about 3 significant digits; off by default so that samples match float32 decoding.

    Raises:
        ValueError: a non-positive size.
        TypeError: ``channels_last`` or ``amp`` is not a bool (e.g. the string ``"false"``).

    Example::

        pool = GVAESamplePool("bundles/gvae_brain2d", pool_size=128)
        image, label = pool.draw(0.3, torch.Generator().manual_seed(0))
    """

    def __init__(
        self,
        model: nn.Module | str | os.PathLike,
        pool_size: int = 64,
        batch_size: int = 16,
        refresh_every: int | None = None,
        device: str | torch.device = "cpu",
        checkpoint_key: str = "gvae",
        sample_filter: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor] | None = None,
        max_attempts: int = 10,
        channels_last: bool = True,
        amp: bool = False,
    ) -> None:
        for name, value in (("pool_size", pool_size), ("batch_size", batch_size), ("max_attempts", max_attempts)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}.")
        if refresh_every is not None and refresh_every < 1:
            raise ValueError(f"refresh_every must be >= 1 or None, got {refresh_every}.")
        self.device = torch.device(device)
        self.model = resolve_gvae(model, checkpoint_key, self.device)
        self.checksum = model_checksum(self.model)  # of the weights as given (the memory format is not hashed)
        if check_bool(channels_last, "channels_last"):
            prepare_network(self.model, channels_last=True)
        self.amp = check_bool(amp, "amp")
        self.amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        self.pool_size = int(pool_size)
        self.batch_size = int(batch_size)
        self.refresh_every = int(refresh_every) if refresh_every is not None else 4 * self.pool_size
        self.sample_filter = sample_filter
        self.max_attempts = int(max_attempts)
        self.num_generated = 0
        self.num_accepted = 0
        self.num_refills = 0
        self.reset()

    # --- model facts the transforms check inputs against
    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return (int(self.model.image_size),) * int(self.model.spatial_dims)

    @property
    def acceptance_rate(self) -> float | None:
        """Fraction of generated samples kept by ``sample_filter`` so far (``None`` before any refill)."""
        return self.num_accepted / self.num_generated if self.num_generated else None

    def __len__(self) -> int:
        return 0 if self._images is None else int(self._images.shape[0])

    def reset(self) -> None:
        """Drop the buffer; the next ``draw`` regenerates it."""
        self._images: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None
        self._uses = 0

    def __deepcopy__(self, memo: dict) -> GVAESamplePool:
        # Share the model (and the immutable buffer tensors); copy only the counters.
        new = copy.copy(self)
        memo[id(self)] = new
        return new

    def _check_device(self) -> None:
        if self.device.type == "cuda" and torch.utils.data.get_worker_info() is not None:
            raise RuntimeError(
                "a GVAE sample pool on a CUDA device is used inside a DataLoader worker process, where CUDA cannot "
                "be initialised after fork; use device='cpu', num_workers=0 or monai.data.ThreadDataLoader."
            )

    @torch.no_grad()
    def decode(
        self, z: torch.Tensor, condition: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decode latents ``(N, latent_size)`` to ``(images in [-1, 1], labels int64 or None)`` on the CPU
        (``condition``: for a label-conditioned GVAE, whose labels are then ``None``)."""
        self._check_device()
        if condition is not None:
            condition = condition.to(self.device, torch.float32)
        with self._autocast():
            out = self.model.decode(z.to(self.device, torch.float32), condition)
        # a label-conditioned model records num_classes (of its condition) but generates no label channels
        num_classes = self.model.num_classes if getattr(self.model, "label_channels", 1) else None
        return unpack_to_host(out, self.model.image_channels, num_classes, (-1.0, 1.0))

    @torch.no_grad()
    def encode(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` of a packed batch ``(N, C + L, *spatial)`` in [-1, 1] (and its condition, for a
        label-conditioned GVAE), on the CPU."""
        self._check_device()
        if condition is not None:
            condition = condition.to(self.device, torch.float32)
        with self._autocast():
            mu, logvar = self.model.encode(x.to(self.device, torch.float32), condition)
        return mu.float().cpu(), logvar.float().cpu()

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp)

    def refill(self, generator: torch.Generator | None = None) -> None:
        """Generate a new buffer from latents drawn with ``generator`` (CPU)."""
        images, labels, kept = [], [], 0
        budget = self.max_attempts * self.pool_size
        generated = 0
        while kept < self.pool_size and generated < budget:
            n = min(self.batch_size, budget - generated)
            z = torch.randn(n, int(self.model.latent_size), generator=generator)
            image, label = self.decode(z)
            generated += n
            if self.sample_filter is not None:
                keep = torch.as_tensor(self.sample_filter(image, label), dtype=torch.bool).reshape(-1)
                if keep.shape[0] != n:
                    raise ValueError(f"sample_filter returned {keep.shape[0]} flags for {n} samples.")
                image = image[keep]
                label = label[keep] if label is not None else None
            images.append(image)
            labels.append(label)
            kept += image.shape[0]
        self.num_generated += generated
        self.num_accepted += kept
        if kept == 0:
            raise RuntimeError(
                f"sample_filter rejected all {generated} generated samples; loosen the filter or train the model longer."
            )
        self._images = torch.cat(images)[: self.pool_size]
        self._labels = torch.cat(labels)[: self.pool_size] if labels[0] is not None else None
        self._uses = 0
        self.num_refills += 1

    def draw(self, u: float, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One sample: buffer entry ``floor(u * len(buffer))`` for ``u`` in [0, 1).

        Args:
            u: a uniform number from the caller's random state (``self.R`` of a transform).
            generator: latent generator for a refill (due when the buffer is empty or used ``refresh_every`` times).

        Returns:
            ``(image, label)``: image ``(C, *spatial)`` float32 in [-1, 1]; label ``(1, *spatial)`` int64 class
            indices, or ``None`` for an image-only model. Treat them as read-only (they are buffer views).
        """
        if self._images is None or self._uses >= self.refresh_every:
            self.refill(generator)
        self._uses += 1
        n = self._images.shape[0]
        index = min(int(np.floor(float(u) * n)), n - 1)
        return self._images[index], (self._labels[index] if self._labels is not None else None)
