"""Array transforms of monai-gvae (channel-first tensors, no batch axis)."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor, get_track_meta
from monai.transforms import RandomizableTransform, Transform
from monai.utils import MAX_SEED, MetaKeys, TransformBackends, convert_to_tensor
from torch import nn

from monai_gvae.data.utils import resize_tensor
from monai_gvae.transforms.pool import (
    SYNTHETIC_FLAG,
    SYNTHETIC_MODE,
    SYNTHETIC_MODEL,
    GVAESamplePool,
    synthetic_meta,
)
from monai_gvae.transforms.conditioning import label_to_condition
from monai_gvae.transforms.utils import from_model_range, pack_image_label, to_model_range
from monai_gvae.utils import check_bool

__all__ = ["PackImageLabel", "GVAESynthesize"]


class PackImageLabel(Transform):
    """Image ``(C, *spatial)`` + index label ``(1, *spatial)`` -> the GVAE's input ``(C + L, *spatial)`` in [-1, 1].

    Args:
        num_classes: label classes (background included); ``None`` for image-only models.
        label_channels: ``"onehot"`` (``num_classes`` label channels) or ``"foreground"`` (one channel).
        intensity_range: range of the incoming image (after e.g. ``ScaleIntensity``), mapped to [-1, 1].
        image_channels: expected number of image channels (checked when given).
        spatial_dims: expected number of spatial dimensions (checked when given).

    Raises:
        TypeError, ValueError: see :func:`~monai_gvae.transforms.pack_image_label` (wrong channels, dimensions,
            dtype, range, non-finite values, label values).

    Example::

        packed = PackImageLabel(num_classes=4)(image, label)  # (1 + 4, H, W)
    """

    def __init__(
        self,
        num_classes: int | None,
        label_channels: str = "onehot",
        intensity_range: tuple[float, float] = (0.0, 1.0),
        image_channels: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        self.num_classes = num_classes
        self.label_channels = label_channels
        self.intensity_range = tuple(intensity_range)
        self.image_channels = image_channels
        self.spatial_dims = spatial_dims

    def __call__(self, image: NdarrayOrTensor, label: NdarrayOrTensor | None = None) -> torch.Tensor:
        return pack_image_label(
            image, label, self.num_classes, self.label_channels, self.intensity_range,
            self.image_channels, self.spatial_dims,
        )


class GVAESynthesize(RandomizableTransform):
    """Replace an image (and its label) by a GVAE-synthesised one with probability ``prob``.

    Modes:

    * ``"prior"``: a fresh sample ``G(z)``, ``z ~ N(0, I)``, image and label generated jointly. Samples come
      from a :class:`GVAESamplePool` filled in batches, so the per-item cost is a lookup.
    * ``"posterior"``: encode the incoming image (+ label), perturb the mean latent,
      ``z = mu + sigma * eps`` (``sigma`` in units of the prior's standard deviation; 0 gives the
      reconstruction ``G(mu)``), and decode: a variant of the same anatomy. One encoder and one generator
      pass per item. With a label-conditioned GVAE, ``z = mu(x, c) + sigma * eps`` is decoded for the item's
      own label map ``c`` and the label is returned unchanged.
    * ``"conditional"`` (label-conditioned GVAE, ``GVAE(condition_channels=...)``): an image ``G(z, c)``,
      ``z ~ N(0, I)``, generated for the item's label map ``c``, which is returned unchanged (same values and
      dtype, marked synthetic): the pair's label is exact by construction. Put classical deformations
      (``Rand2DElasticd``, ``RandAffined``) before this transform to synthesise images for new label maps.
      With a ``sample_filter``, up to ``max_attempts`` latents are tried per item; when all are rejected the
      item stays real (``synthetic=False``). One generator pass per attempt.

    Generated label channels are decoded to class indices by argmax (or by a threshold for a single
    foreground channel); the label of a joint model is generated, never copied from the input.

    The output matches the input's format: spatial shape, dtype, channel count, label encoding (an index map
    ``(1, *spatial)`` or one-hot ``(num_classes, *spatial)``, any dtype) and intensity range (the generated
    [-1, 1] is mapped to ``intensity_range``, or to the input's observed min/max when ``None``). Integer
    image dtypes are rounded and clipped. Outputs are ``MetaTensor`` (with MONAI's ``track_meta`` on) carrying
    the input's meta (affine, spacing, applied operations) plus ``synthetic`` (``True``),
    ``synthetic_model_sha256`` (the model's identity) and ``synthetic_mode``; meta values that could
    identify a patient or file (file names, patient fields, UIDs, dates, DICOM tags) become ``"SYNTHETIC"``.
    Items that are not replaced keep their data and get ``synthetic=False`` (and empty model/mode), so the
    flags survive ``list_data_collate`` in mixed batches.

    A model whose ``image_size`` differs from the input's spatial shape is an error unless ``resize=True``,
    which resizes generated images (bilinear) and labels (nearest) to the input shape (and, for
    ``"posterior"``, the input to the model's size first). Silent resampling would change the resolution of the
    anatomy without the caller asking, hence the default.

    Randomness: ``prob`` and the pool index come from ``self.R``; latents (pool refills and posterior noise)
    come from a ``torch.Generator`` that ``set_random_state`` reseeds (and the pool is emptied), so seeded
    runs repeat exactly, in ``monai.data.DataLoader`` workers too (its ``worker_init_fn`` reseeds transforms).

    Args:
        model: a ``GVAE``, a checkpoint file, a bundle folder (``models/model.pt``), or a
            :class:`GVAESamplePool` to share with other transforms (the pool arguments below are then unused).
        prob: probability that an item is replaced.
        mode: ``"prior"``, ``"posterior"`` or ``"conditional"``.
        sigma: latent perturbation of ``"posterior"``, ``>= 0``.
        intensity_range: ``(low, high)`` of the caller's images (what the model's [-1, 1] maps to); ``None``
            uses each input image's min/max (``(min, min + 1)`` for a constant image).
        label_format: ``"auto"`` (1 channel: index map; ``num_classes`` channels: one-hot), ``"index"`` or
            ``"onehot"``.
        resize: resize instead of raising when the model's size differs from the input's.
        pool_size, batch_size, refresh_every, sample_filter, amp: of the :class:`GVAESamplePool` (``amp``:
            bfloat16/float16 autocast while generating; faster, less precise).
        device: device of the model (CPU by default: DataLoader workers cannot initialise CUDA after fork).
        checkpoint_key: entry of a multi-network checkpoint (``"gvae"``, or ``"gvae_ema"``).

    Raises:
        ValueError: unknown mode or label format, negative sigma; at call time, an input whose channels, spatial
            shape or label do not fit the model (the message names both).
        TypeError: ``resize`` or ``amp`` is not a bool (e.g. the string ``"false"``).

    Example::

        synth = GVAESynthesize("bundles/gvae_brain2d", prob=0.5, intensity_range=(0.0, 1.0))
        synth.set_random_state(seed=0)
        image, label = synth(image, label)  # (1, 64, 64) float32, (1, 64, 64) int64
        bool(image.meta["synthetic"])
    """

    backend = [TransformBackends.TORCH]
    MODES: tuple[str, ...] = ("prior", "posterior", "conditional")
    LABEL_FORMATS: tuple[str, ...] = ("auto", "index", "onehot")

    def __init__(
        self,
        model: nn.Module | str | os.PathLike | GVAESamplePool,
        prob: float = 0.5,
        mode: str = "prior",
        sigma: float = 0.5,
        intensity_range: tuple[float, float] | None = None,
        label_format: str = "auto",
        resize: bool = False,
        pool_size: int = 64,
        batch_size: int = 16,
        refresh_every: int | None = None,
        device: str | torch.device = "cpu",
        checkpoint_key: str = "gvae",
        sample_filter: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor] | None = None,
        amp: bool = False,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}.")
        if label_format not in self.LABEL_FORMATS:
            raise ValueError(f"label_format must be one of {self.LABEL_FORMATS}, got {label_format!r}.")
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}.")
        if intensity_range is not None:
            low, high = (float(v) for v in intensity_range)
            if not high > low:
                raise ValueError(f"intensity_range must be (low, high) with high > low, got {intensity_range}.")
            intensity_range = (low, high)
        self.pool = model if isinstance(model, GVAESamplePool) else GVAESamplePool(
            model, pool_size=pool_size, batch_size=batch_size, refresh_every=refresh_every, device=device,
            checkpoint_key=checkpoint_key, sample_filter=sample_filter, amp=amp,
        )
        self.mode = mode
        conditional = bool(getattr(self.pool.model, "condition_channels", 0))
        if conditional and mode == "prior":
            raise ValueError(
                "this GVAE is label-conditioned (condition_channels > 0): it generates images for given label maps; "
                "use mode='conditional' (or 'posterior')."
            )
        if mode == "conditional" and not conditional:
            raise ValueError(
                "mode='conditional' needs a label-conditioned GVAE (built with condition_channels > 0); a joint "
                "image+label GVAE uses mode='prior' or 'posterior'."
            )
        self.conditional = conditional
        self.sigma = float(sigma)
        self.intensity_range = intensity_range
        self.label_format = label_format
        self.resize = check_bool(resize, "resize")
        self._latent_rng = torch.Generator().manual_seed(int(self.R.randint(MAX_SEED)))
        self._u = 0.0
        # whether the last call produced a synthetic item (a filtered conditional synthesis may stay real)
        self.last_synthetic = False

    @property
    def model(self) -> nn.Module:
        return self.pool.model

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> GVAESynthesize:
        """Reseed ``self.R`` (MONAI's rules), then the latent generator from it, and empty the pool."""
        super().set_random_state(seed, state)
        self._latent_rng.manual_seed(int(self.R.randint(MAX_SEED)))
        self.pool.reset()
        return self

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self._u = float(self.R.random_sample())

    def __call__(
        self, img: NdarrayOrTensor, label: NdarrayOrTensor | None = None, randomize: bool = True
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Return the (possibly synthetic) image, or ``(image, label)`` when a label is given."""
        if randomize:
            self.randomize()
        if self._do_transform:
            return self.synthesize(img, label)
        return self.mark_real(img, label)

    # --- the two outcomes
    def mark_real(
        self, img: NdarrayOrTensor, label: NdarrayOrTensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The input unchanged (same values, dtype and meta; tensors share storage), flagged ``synthetic=False``."""
        flags = {SYNTHETIC_FLAG: False, SYNTHETIC_MODEL: "", SYNTHETIC_MODE: ""}
        self.last_synthetic = False
        out = _with_meta(img, None, lambda meta: {**meta, **flags})
        if label is None:
            return out
        return out, _with_meta(label, None, lambda meta: {**meta, **flags})

    def synthesize(
        self, img: NdarrayOrTensor, label: NdarrayOrTensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """A synthetic image (and label) in the input's format, drawn with the current random factors."""
        model = self.model
        image_t = convert_to_tensor(img, track_meta=False)
        dims = int(model.spatial_dims)
        if image_t.ndim != dims + 1:
            raise ValueError(
                f"expected a channel-first {dims}D image (C, {', '.join('*' * dims)}) for this {dims}D GVAE, got "
                f"shape {tuple(image_t.shape)}."
            )
        if image_t.shape[0] != model.image_channels:
            raise ValueError(
                f"the GVAE generates {model.image_channels} image channel(s) but the input image has "
                f"{image_t.shape[0]} (shape {tuple(image_t.shape)})."
            )
        spatial = tuple(int(s) for s in image_t.shape[1:])
        model_spatial = self.pool.spatial_shape
        if spatial != model_spatial and not self.resize:
            raise ValueError(
                f"the GVAE generates {model_spatial} images but the input is {spatial}; resize the input "
                "(e.g. monai.transforms.Resized) before this transform, or pass resize=True."
            )
        label_t, onehot = self._check_label(label, spatial)
        if self.intensity_range is not None:
            low, high = self.intensity_range
        else:
            low, high = float(image_t.min()), float(image_t.max())
            if not high > low:
                high = low + 1.0

        if self.conditional or self.mode == "posterior":  # both encode or condition on the item itself
            source = image_t if self.mode == "posterior" else None
            source, index = self._on_model_grid(source, label_t, onehot, spatial, model_spatial)
        if self.conditional:
            gen_image = self._conditional(source, index, (low, high))
            if gen_image is None:  # every attempt rejected by the sample filter: the item stays real
                return self.mark_real(img, label)
            gen_label = None
        elif self.mode == "prior":
            gen_image, gen_label = self.pool.draw(self._u, self._latent_rng)
        else:
            gen_image, gen_label = self._posterior(source, index, (low, high))
        if spatial != model_spatial:
            gen_image = resize_tensor(gen_image, spatial, "bilinear" if dims == 2 else "trilinear")
            gen_label = resize_tensor(gen_label, spatial, "nearest") if gen_label is not None else None

        self.last_synthetic = True
        out_image = _cast(from_model_range(gen_image, (low, high)), image_t.dtype)
        to_meta = partial(synthetic_meta, checksum=self.pool.checksum, mode=self.mode)
        out = _with_meta(img, out_image, to_meta)
        if label is None:
            return out
        if gen_label is None:  # label-conditioned: the conditioning label, unchanged
            return out, _with_meta(label, None, to_meta)
        if onehot:
            encoded = torch.nn.functional.one_hot(gen_label[0].long(), int(model.num_classes)).movedim(-1, 0)
        else:
            encoded = gen_label
        return out, _with_meta(label, _cast(encoded, label_t.dtype), to_meta)

    # --- helpers
    def _check_label(self, label: NdarrayOrTensor | None, spatial: tuple[int, ...]) -> tuple[torch.Tensor | None, bool]:
        """Validate the label; return it as a tensor and whether it is one-hot."""
        if label is None:
            return None, False
        model = self.model
        if not model.label_channels and not self.conditional:
            raise ValueError("a label was given but the GVAE generates images only (no label channels); pass label=None.")
        label_t = convert_to_tensor(label, track_meta=False)
        if tuple(label_t.shape[1:]) != spatial:
            raise ValueError(f"label spatial shape {tuple(label_t.shape[1:])} differs from the image's {spatial}.")
        classes = int(model.num_classes)
        channels = int(label_t.shape[0])
        if self.label_format == "index" or (self.label_format == "auto" and channels == 1):
            if channels != 1:
                raise ValueError(f"label_format='index' needs a one-channel label, got {channels} channels.")
            return label_t, False
        if channels != classes:
            raise ValueError(
                f"label has {channels} channels; expected 1 (class indices) or {classes} (one-hot over the GVAE's "
                f"{classes} classes)."
            )
        return label_t, True

    def _on_model_grid(
        self,
        image: torch.Tensor | None,
        label: torch.Tensor | None,
        onehot: bool,
        spatial: tuple[int, ...],
        model_spatial: tuple[int, ...],
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The item's image (float) and its label as class indices ``(1, *spatial)``, resized to the model's grid
        (area/trilinear for the image, nearest for the label); ``None`` stays ``None``."""
        index = None
        if label is not None:
            index = label.argmax(dim=0, keepdim=True) if onehot else label.round().long()
        if image is not None:
            image = image.float()
        if spatial != model_spatial:
            if image is not None:
                image_mode = "area" if int(self.model.spatial_dims) == 2 else "trilinear"
                image = resize_tensor(image, model_spatial, image_mode)
            if index is not None:
                index = resize_tensor(index, model_spatial, "nearest")
        return image, index

    def _posterior(
        self, image: torch.Tensor, index: torch.Tensor | None, intensity_range: tuple[float, float]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A draw near the item's own encoding (image and label on the model's grid, see :meth:`_on_model_grid`)."""
        model = self.model
        if model.label_channels and index is None:
            raise ValueError(
                "mode='posterior' encodes image and label together: this GVAE has label channels, so pass the label."
            )
        layout = "foreground" if model.label_channels == 1 else "onehot"
        packed = pack_image_label(image, index, model.num_classes if index is not None else None, layout, intensity_range)
        mu, _ = self.pool.encode(packed[None])
        noise = torch.randn(mu.shape, generator=self._latent_rng)
        gen_image, gen_label = self.pool.decode(mu + self.sigma * noise)
        return gen_image[0], (gen_label[0] if gen_label is not None else None)

    def _conditional(
        self, image: torch.Tensor | None, index: torch.Tensor | None, intensity_range: tuple[float, float]
    ) -> torch.Tensor | None:
        """Image generated for the item's label map (``None`` when the sample filter rejects every attempt).

        ``index`` is the label map on the model's grid; ``image`` too in ``mode="posterior"`` (else ``None``).
        """
        model = self.model
        if index is None:
            raise ValueError(
                f"mode={self.mode!r} with a label-conditioned GVAE generates an image for the item's label map: "
                "pass the label."
            )
        condition = label_to_condition(index[None], int(model.num_classes), int(model.condition_channels))
        mu = None
        if self.mode == "posterior":
            mu, _ = self.pool.encode(to_model_range(image, intensity_range)[None], condition=condition)
        sample_filter = self.pool.sample_filter
        attempts = self.pool.max_attempts if sample_filter is not None else 1
        for _ in range(attempts):
            noise = torch.randn(1, int(model.latent_size), generator=self._latent_rng)
            gen_image, _ = self.pool.decode(noise if mu is None else mu + self.sigma * noise, condition=condition)
            if sample_filter is None:
                return gen_image[0]
            keep = bool(torch.as_tensor(sample_filter(gen_image, index[None])).reshape(-1)[0])
            self.pool.num_generated += 1
            self.pool.num_accepted += int(keep)
            if keep:
                return gen_image[0]
        return None


def _cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Cast to ``dtype``, rounding and clipping to an integer type's range."""
    if dtype.is_floating_point or dtype.is_complex:
        return x.to(dtype)
    if dtype == torch.bool:
        return x > 0.5
    info = torch.iinfo(dtype)
    return x.float().round().clamp(info.min, info.max).to(dtype) if x.is_floating_point() else x.clamp(info.min, info.max).to(dtype)


def _with_meta(
    source: NdarrayOrTensor, data: torch.Tensor | None, meta_fn: Callable[[dict], dict]
) -> torch.Tensor:
    """``data`` (or ``source``'s data, storage shared) with meta ``meta_fn(source's meta)``.

    Returns a ``MetaTensor`` when MONAI tracks meta (``get_track_meta()``), else a plain tensor.
    """
    tensor = convert_to_tensor(source, track_meta=False) if data is None else data
    if not get_track_meta():
        return tensor
    if isinstance(source, MetaTensor):
        meta, ops = dict(source.meta), list(source.applied_operations)
    else:
        meta, ops = dict(MetaTensor.get_default_meta()), []
        meta[MetaKeys.AFFINE] = MetaTensor.get_default_affine()
    return MetaTensor(tensor, meta=meta_fn(meta), applied_operations=ops)
