"""Synthesis from a trained GVAE: batched sampling, decoded to image + label, written as marked NIfTI, DICOM or PNG
(DICOM: the label also as DICOM-SEG).

:func:`synthesize` is what ``monai-gvae synthesize`` and the bundles' ``inference.yaml`` call.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch

from monai_gvae._version import __version__
from monai_gvae.data.writers import (
    SyntheticStudy,
    default_affine,
    fit_affine,
    write_synthetic_dicom,
    write_synthetic_nifti,
    write_synthetic_png,
    write_synthetic_segmentation,
)
from monai_gvae.networks.io import load_gvae, model_checksum
from monai_gvae.networks.latents import sample_latents
from monai_gvae.networks.nets.gvae import GVAE
from monai_gvae.transforms.utils import unpack_to_host
from monai_gvae.utils import atomic_path, check_targets_free

__all__ = [
    "write_manifest",
    "FORMATS",
    "generate",
    "label_class_names",
    "output_names",
    "sample_latents",
    "synthesize",
    "synthesize_to_nifti",
]

FORMATS = ("nifti", "dicom", "png")
"""Output formats of :func:`synthesize`."""


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

    Latents come from :func:`sample_latents`: sample ``i`` of a seed is the same whatever the batch size,
    the number of samples or the device. (Decoded values can still differ in the last bits between batch
    sizes or devices, as convolution kernels change with them; files are byte-identical for the same seed,
    batch size and device.)

    Args:
        model: the GVAE (put in eval mode).
        num_samples: how many samples.
        seed: latent seed.
        batch_size: samples per forward pass.
        intensity_range: range the images are mapped to.
        device: device to decode on (default: the model's).

    Example::

        for images, labels in generate(model, 32, seed=1):
            ...
    """
    if device is not None:
        model = model.to(device)
    model.eval()
    model_device = next(model.parameters()).device
    done = 0
    while done < num_samples:
        n = min(batch_size, num_samples - done)
        z = sample_latents(model.latent_size, seed, done, n)
        # unpacked where the samples are, then copied (see unpack_to_host)
        yield unpack_to_host(model.decode(z.to(model_device)), model.image_channels, model.num_classes, intensity_range)
        done += n


def write_manifest(
    path: str,
    model: GVAE,
    seed: int,
    format: str,
    files: list[dict],
    overwrite: bool = False,
    checksum: str | None = None,
    **extra,
) -> dict:
    """Write the ``manifest.json`` of a synthesis run (atomically) and return it.

    The manifest says the files are synthetic and records the generator, package version, creation time,
    model checksum and source, seed, format and one entry per sample; ``extra`` adds format-specific keys.
    ``checksum`` is the caller's :func:`monai_gvae.networks.model_checksum` when it has one (hashing an in-memory
    model's weights again would be wasted work).
    """
    manifest = {
        "synthetic": True,
        "generator": "monai-gvae",
        "version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "model_sha256": checksum or model_checksum(model),
        "model_source": getattr(model, "source", None),
        "seed": seed,
        "num_samples": len(files),
        "format": format,
        **extra,
        "files": files,
    }
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "w") as f:
            json.dump(manifest, f, indent=2)
    return manifest


def output_names(num_samples: int, format: str, spatial_dims: int, with_labels: bool) -> list[tuple[str, str | None]]:
    """File names (relative to the output folder) of each sample's image and label (``None`` without labels).

    NIfTI: ``synthetic_00000_image.nii.gz``; PNG: ``.png``; DICOM: ``.dcm`` files in 2D and one folder per
    series (one file per slice) in 3D.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}.")
    suffix = {"nifti": ".nii.gz", "png": ".png", "dicom": ".dcm" if spatial_dims == 2 else ""}[format]
    return [
        (f"synthetic_{i:05d}_image{suffix}", f"synthetic_{i:05d}_label{suffix}" if with_labels else None)
        for i in range(num_samples)
    ]


def _segmentation_name(index: int) -> str:
    """File name of sample ``index``'s DICOM-SEG (DICOM output of a joint image+label model)."""
    return f"synthetic_{index:05d}_seg.dcm"


def label_class_names(
    metadata: Mapping | str | os.PathLike, image_channels: int, num_classes: int
) -> tuple[str, ...]:
    """Names of a bundle's label classes ``0 .. num_classes - 1``, from its ``metadata.json``.

    They are the ``channel_def`` of ``network_data_format.outputs.pred`` after the image channels (a GVAE's output is
    the image channels followed by one channel per class), e.g. ``background, cortex, deep grey matter, cerebellum``
    for ``gvae_brain2d``. A class the metadata does not name is called ``class K``.

    Args:
        metadata: the parsed metadata (e.g. a bundle config's ``@_meta_``), a ``metadata.json`` file, or a bundle
            folder (``DIR/configs/metadata.json``).
        image_channels: the model's image channels.
        num_classes: the model's label classes.

    Returns:
        ``num_classes`` names.

    Raises:
        FileNotFoundError: no metadata file.
        ValueError: an unreadable metadata file.

    Example::

        label_class_names("bundles/gvae_brain2d", model.image_channels, model.num_classes)
    """
    if not isinstance(metadata, Mapping):
        path = os.fspath(metadata)
        if os.path.isdir(path):
            path = os.path.join(path, "configs", "metadata.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"bundle metadata not found: {path}")
        try:
            with open(path) as f:
                metadata = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read bundle metadata {path}: {e}") from e
    channel_def: Mapping = {}
    try:
        channel_def = metadata["network_data_format"]["outputs"]["pred"]["channel_def"]  # type: ignore[index]
    except (KeyError, TypeError):
        pass
    names = []
    for k in range(int(num_classes)):
        name = channel_def.get(str(image_channels + k)) if isinstance(channel_def, Mapping) else None
        names.append(str(name) if name else f"class {k}")
    return tuple(names)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def synthesize(
    model: GVAE | str,
    output_dir: str,
    num_samples: int = 8,
    seed: int = 0,
    batch_size: int = 16,
    format: str = "nifti",
    reference: str | os.PathLike | None = None,
    affine: np.ndarray | None = None,
    overwrite: bool = False,
    device: str | torch.device | None = None,
    intensity_range: tuple[float, float] = (0.0, 1.0),
    png_bit_depth: int = 8,
    progress: bool = False,
    class_names: Sequence[str] | None = None,
) -> dict:
    """Write ``num_samples`` synthetic images (+ labels for joint models) and a ``manifest.json``.

    Every file is marked synthetic in its own format (NIfTI ``descrip``/``intent_name``; DICOM Synthetic Data
    ``YES``, ``DERIVED\\SECONDARY``, Conversion Type ``SYN``, new UIDs and no patient data; PNG text chunks). In DICOM,
    a joint model's label is written twice: as a class-index image series (``..._label.dcm``, what image readers such
    as MONAI's and SimpleITK's load) and as a DICOM-SEG object (``..._seg.dcm``) with one segment per foreground
    class, named after ``class_names`` and referencing the sample's image.

    Orientation: files store what a viewer should show (see :mod:`monai_gvae.data.writers`): a 2D sample's rows are
    PNG/DICOM pixel rows, and NIfTI/DICOM carry a geometry that agrees (without ``reference``/``affine``:
    :func:`monai_gvae.data.writers.default_affine`, an upright axial view). Read back with
    :func:`monai_gvae.data.load_image`, every file gives the generated array.

    Safety: all targets are checked before anything is written (``FileExistsError`` unless ``overwrite``),
    every file is written under a temporary name and renamed, and if the run fails part-way the files it
    already wrote are removed (files it replaced under ``overwrite`` are not restored).

    Reproducibility: the same model, seed, batch size, device and format give byte-identical files (DICOM UIDs and
    Patient IDs derive from the model checksum, seed, sample index and content, see
    :func:`monai_gvae.data.writers.derived_uid`; another model or seed gives other UIDs); only the manifest's
    ``created`` time differs.

    Args:
        model: a ``GVAE`` or a checkpoint path (see :func:`load_gvae`).
        output_dir: folder of the outputs (created).
        num_samples: how many samples.
        seed: latent seed.
        batch_size: samples per forward pass (does not change the samples).
        format: ``"nifti"``, ``"dicom"`` or ``"png"`` (PNG: 2D one-channel models only; DICOM: one image channel).
        reference: an image (NIfTI file, DICOM file or series folder) whose plane (or volume), centre and field of
            view the outputs take, their axes reordered to show upright (:func:`~monai_gvae.data.fit_affine`);
            nothing else is read from it.
        affine: explicit 4x4 RAS affine instead of ``reference`` (default:
            :func:`~monai_gvae.data.writers.default_affine`, 1 mm voxels; 2D: an upright axial view).
        overwrite: allow replacing existing outputs.
        device: device to generate on (``None``: where the model is).
        intensity_range: the image intensity range written (generated images span it).
        png_bit_depth: 8 or 16 (PNG images).
        progress: show a progress bar (stderr).
        class_names: names of the label classes ``0 .. num_classes - 1`` (DICOM-SEG segment names, recorded in the
            manifest), e.g. from :func:`label_class_names`; default ``background, class 1, ...``.

    Returns:
        the manifest (also written to ``output_dir/manifest.json``); ``manifest["files"]`` lists the samples.

    Raises:
        FileExistsError: an output exists and ``overwrite`` is False (nothing written).
        ValueError: a format the model cannot be written in, both ``reference`` and ``affine``, or ``class_names``
            of another length than the model's classes.
        monai_gvae.data.inputs.InputImageError: unreadable reference (nothing written).

    Example::

        manifest = synthesize("bundles/gvae_brain2d/models/model.pt", "out", num_samples=16, format="dicom")
    """
    from tqdm.auto import tqdm

    if isinstance(model, (str, os.PathLike)):
        model = load_gvae(model)
    low, high = _check_synthesis_options(model, num_samples, format, reference, affine, intensity_range)
    class_names = _check_class_names(model, class_names)
    affine = _output_affine(model, reference, affine)
    names = output_names(num_samples, format, model.spatial_dims, model.label_channels > 0)
    segmentations = format == "dicom" and class_names is not None
    manifest_path = os.path.join(output_dir, "manifest.json")
    targets = [os.path.join(output_dir, n) for pair in names for n in pair if n is not None] + [manifest_path]
    if segmentations:
        targets += [os.path.join(output_dir, _segmentation_name(i)) for i in range(num_samples)]
    check_targets_free(targets, overwrite)

    checksum = model_checksum(model)
    writer = _SampleWriter(
        output_dir, format, affine, (low, high), png_bit_depth, overwrite, checksum, seed, class_names, segmentations
    )
    entries: list[dict] = []
    try:
        with tqdm(total=num_samples, desc=f"synthesizing ({format})", unit="sample", disable=not progress) as bar:
            for images, labels in generate(model, num_samples, seed, batch_size, (low, high), device=device):
                for j in range(images.shape[0]):
                    index = len(entries)
                    label = labels[j] if labels is not None else None
                    entries.append(writer.write_sample(index, names[index], images[j], label))
                    bar.update(1)
        writer.written.append(manifest_path)
        manifest = write_manifest(
            manifest_path, model, seed, format, entries, overwrite, checksum=checksum,
            intensity_range=[low, high],
            image_size=[model.image_size] * model.spatial_dims,
            affine=affine.tolist(),
            geometry_from_reference=reference is not None,
            **({"class_names": list(class_names)} if class_names is not None else {}),
        )
    except BaseException:
        for path in writer.written:
            _remove(path)
        raise
    return manifest


def _check_synthesis_options(
    model: GVAE,
    num_samples: int,
    format: str,
    reference: str | os.PathLike | None,
    affine: np.ndarray | None,
    intensity_range: tuple[float, float],
) -> tuple[float, float]:
    """Refuse options the model cannot be written with (before anything is read or written); returns the
    intensity range as ``(low, high)`` floats."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}.")
    dims = model.spatial_dims
    if format == "png" and dims != 2:
        raise ValueError(f"PNG holds 2D images but the model generates {dims}D volumes; use nifti or dicom.")
    if format in ("png", "dicom") and model.image_channels != 1:
        raise ValueError(
            f"{format} output holds one grey-level channel; the model has {model.image_channels}. Use nifti."
        )
    if reference is not None and affine is not None:
        raise ValueError("give either reference or affine, not both.")
    low, high = float(intensity_range[0]), float(intensity_range[1])
    if not high > low:
        raise ValueError(f"intensity_range must be (low, high) with high > low, got {intensity_range}.")
    return low, high


def _check_class_names(model: GVAE, class_names: Sequence[str] | None) -> tuple[str, ...] | None:
    """The label class names (``None`` for an image-only model): given ones checked against the model, or defaults."""
    if model.label_channels == 0:
        return None
    num_classes = int(model.num_classes)
    if class_names is None:
        return ("background",) + tuple(f"class {k}" for k in range(1, num_classes))
    if isinstance(class_names, str) or len(class_names) != num_classes:
        raise ValueError(
            f"class_names must name the model's {num_classes} label classes (background first), got {class_names!r}."
        )
    return tuple(str(n) for n in class_names)


def _output_affine(model: GVAE, reference: str | os.PathLike | None, affine: np.ndarray | None) -> np.ndarray:
    """The outputs' 4x4 RAS affine: fitted to ``reference``'s field of view, the given one (checked), or the writers'
    :func:`~monai_gvae.data.writers.default_affine` (2D: an upright axial view)."""
    if reference is not None:
        from monai_gvae.data.inputs import read_reference_geometry

        ref_affine, ref_shape = read_reference_geometry(reference)
        return fit_affine(ref_affine, ref_shape, (model.image_size,) * model.spatial_dims)
    if affine is None:
        return default_affine(model.spatial_dims)
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got {affine.shape}.")
    return affine


@dataclasses.dataclass
class _SampleWriter:
    """Writes each sample's image (and label) in one format, marked synthetic, and remembers every path it wrote
    (so that :func:`synthesize` can remove them if the run fails part-way)."""

    output_dir: str
    format: str
    affine: np.ndarray
    intensity_range: tuple[float, float]
    png_bit_depth: int
    overwrite: bool
    checksum: str
    seed: int
    class_names: tuple[str, ...] | None = None
    segmentations: bool = False  # DICOM-SEG beside each DICOM label
    written: list[str] = dataclasses.field(default_factory=list)

    def write_sample(
        self, index: int, names: tuple[str, str | None], image: torch.Tensor, label: torch.Tensor | None
    ) -> dict:
        """Write sample ``index`` under ``names`` (image, label); returns its manifest entry."""
        image_name, label_name = names
        comment = f"model sha256 {self.checksum}; seed {self.seed}; sample {index}"
        # one synthetic DICOM subject per sample: its image and label series share study and frame of reference
        study = SyntheticStudy.new(f"{index:05d}", entropy=f"monai-gvae:{self.checksum}:seed={self.seed}:index={index}")
        outputs = [(image_name, image, "image")] + ([(label_name, label, "label")] if label is not None else [])
        for name, array, kind in outputs:
            path = os.path.join(self.output_dir, name)
            self.written.append(path)
            self._write_file(array, path, kind, study, comment)
        entry = {"index": index, "image": image_name, "seed": self.seed, "format": self.format, "synthetic": True}
        if label_name is not None:
            entry["label"] = label_name
        if label is not None and self.segmentations:
            # the label map again as DICOM-SEG, referencing the image series just written
            seg_name = _segmentation_name(index)
            path = os.path.join(self.output_dir, seg_name)
            self.written.append(path)
            write_synthetic_segmentation(
                label, path, os.path.join(self.output_dir, image_name), class_names=self.class_names,
                overwrite=self.overwrite, comment=f"seed {self.seed}; sample {index}",
            )
            entry["segmentation"] = seg_name
        return entry

    def _write_file(self, array: torch.Tensor, path: str, kind: str, study: SyntheticStudy, comment: str) -> None:
        if self.format == "nifti":
            data = array.to(torch.uint8) if kind == "label" else array
            write_synthetic_nifti(data, path, affine=self.affine, overwrite=self.overwrite, kind=kind)
        elif self.format == "dicom":
            write_synthetic_dicom(
                array, path, affine=self.affine, study=study, overwrite=self.overwrite, kind=kind,
                intensity_range=self.intensity_range, comment=comment,
            )
        else:
            write_synthetic_png(
                array, path, overwrite=self.overwrite, kind=kind, intensity_range=self.intensity_range,
                bit_depth=self.png_bit_depth, affine=self.affine, comment=comment,
            )


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
    """Write ``num_samples`` synthetic image(+label) NIfTI pairs and a ``manifest.json``: :func:`synthesize`
    with ``format="nifti"`` (kept for the bundle's ``inference.yaml``).

    Returns:
        the manifest entries (one dict per sample).

    Raises:
        FileExistsError: an output exists and ``overwrite`` is False (checked before anything is written).
    """
    manifest = synthesize(
        model,
        output_dir,
        num_samples=num_samples,
        seed=seed,
        batch_size=batch_size,
        format="nifti",
        affine=affine,
        overwrite=overwrite,
        device=device,
    )
    return manifest["files"]
