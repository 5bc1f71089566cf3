"""Model I/O: reading a ``GVAE`` from a checkpoint file or a bundle folder, and the model's identity.

This is the one place that knows where a trained bundle keeps its model (:data:`BUNDLE_MODEL_FILE`), how a
checkpoint is read (:func:`load_gvae`) and how a model is identified in synthesis manifests and the metadata
of synthetic items (:func:`model_checksum`). Transforms, engines, metrics, the bundle code and the command
line all use it; it sits in ``networks`` so that every layer above can (docs/architecture.md).
"""

from __future__ import annotations

import copy
import hashlib
import os

import torch
from torch import nn

from monai_gvae.networks.nets.gvae import GVAE

__all__ = [
    "BUNDLE_MODEL_FILE",
    "EMA_KEY",
    "bundle_model_path",
    "describe_unreadable_checkpoint",
    "load_gvae",
    "model_checksum",
    "resolve_gvae",
]

BUNDLE_MODEL_FILE = os.path.join("models", "model.pt")
"""Checkpoint path inside a bundle folder, as written by the bundles' checkpoint handler (``final_filename``)."""

EMA_KEY = "gvae_ema"
"""The ``key`` of :func:`load_gvae` that selects the GVAE with the generator's exponential moving average."""

# what a module needs to be synthesised with: GVAE's inference interface and the facts of its channels
_MODEL_ATTRIBUTES = ("encode", "decode", "latent_size", "image_size", "image_channels", "label_channels",
                     "num_classes", "spatial_dims")


def bundle_model_path(bundle_dir: str | os.PathLike) -> str:
    """The trained model of a bundle folder: ``bundle_dir/models/model.pt``.

    Args:
        bundle_dir: a bundle folder (``configs/``, ``models/``).

    Returns:
        the checkpoint's path.

    Raises:
        FileNotFoundError: the folder holds no trained model (naming the path looked for).

    Example::

        model = load_gvae(bundle_model_path("bundles/gvae_brain2d"))
    """
    path = os.path.join(os.fspath(bundle_dir), BUNDLE_MODEL_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no trained model in bundle {os.fspath(bundle_dir)}: {path} does not exist (train the bundle, or give "
            "a checkpoint file instead)."
        )
    return path


_EXPECTED = "expected a PyTorch checkpoint written by torch.save (a GVAE state dict, or a training checkpoint such as a bundle's models/model.pt)"

# magic bytes of files a checkpoint path is mistaken for: (prefix, offset, what the file is)
_KNOWN_FORMATS = (
    (b"\x1f\x8b", 0, "a gzip-compressed file (e.g. a .nii.gz image)"),
    (b"\x89PNG", 0, "a PNG image"),
    (b"\xff\xd8\xff", 0, "a JPEG image"),
    (b"\x89HDF", 0, "an HDF5 file"),
    (b"DICM", 128, "a DICOM file"),
    (b"\x93NUMPY", 0, "a NumPy .npy array"),
)


def describe_unreadable_checkpoint(path: str | os.PathLike, error: BaseException | None = None) -> str:
    """One line saying what the file at ``path`` is and what was expected, for a checkpoint ``torch.load`` refused.

    Args:
        path: the file.
        error: the error ``torch.load`` raised (its first line is quoted where the file's kind does not explain it).

    Example::

        describe_unreadable_checkpoint("empty.pt")  # 'the file is empty (0 bytes); expected a PyTorch checkpoint ...'
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    if size == 0:
        return f"the file is empty (0 bytes); {_EXPECTED}."
    with open(path, "rb") as f:
        head = f.read(512)
    reason = "" if error is None else " ".join(str(error).strip().splitlines()[:1])
    if head.startswith(b"PK\x03\x04"):
        import zipfile

        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return (f"a truncated or damaged PyTorch checkpoint ({size} bytes; its zip archive is incomplete, as after an "
                    f"interrupted copy or download); {_EXPECTED}.")
        if not any(name.endswith("data.pkl") for name in names):
            return f"a zip archive ({len(names)} entries) that is not a PyTorch checkpoint (no data.pkl); {_EXPECTED}."
        if "weights only load failed" in reason.lower():
            return ("a PyTorch file holding Python objects besides tensors (e.g. a whole pickled model), which "
                    "load_gvae does not unpickle because that runs code; save and load model.state_dict() instead.")
        return f"a damaged PyTorch checkpoint ({size} bytes): {reason}"
    for magic, offset, what in _KNOWN_FORMATS:
        if head[offset:offset + len(magic)] == magic:
            return f"{what}, not a PyTorch checkpoint; {_EXPECTED}."
    if head[:1] == b"\x80":  # a pickle: torch's legacy (non-zip) format or a plain pickle
        if "weights only load failed" in reason.lower():
            return ("a pickle of Python objects (not a state dict), which load_gvae does not unpickle because that runs "
                    f"code; {_EXPECTED}.")
        return f"a legacy-format or plain pickle file that torch cannot read as a checkpoint ({size} bytes): {reason}"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.strip() and all(c.isprintable() or c in "\r\n\t" for c in text):
        start = " ".join(text.split())[:40]
        return f"a text file (it starts with {start!r}), not a PyTorch checkpoint; {_EXPECTED}."
    return f"not a PyTorch checkpoint ({size} bytes starting with {head[:8].hex(' ')}); {_EXPECTED}."


def load_gvae(path: str | os.PathLike, key: str = "gvae", map_location: str | torch.device = "cpu") -> GVAE:
    """Load a ``GVAE`` from a checkpoint file.

    Accepts a file holding the ``GVAE``'s ``state_dict()`` directly, or a dict of state dicts as written by
    MONAI's ``CheckpointSaver`` or ``GVAECheckpointHandler`` (``key`` selects the entry, ``"gvae"`` by default).

    ``key="gvae_ema"`` (:data:`EMA_KEY`) gives the model with the generator's exponential moving average: the
    file's ``"gvae_ema"`` entry if it has one, else the ``"gvae"`` entry with its generator weights replaced by the
    average that ``GVAETrainer(ema_decay=...)`` keeps in its state (``ckpt["trainer"]["generator_ema"]``, which the
    bundles' checkpoints hold; beside the entries in checkpoint format 1).

    Args:
        path: the checkpoint file.
        key: entry of a multi-network checkpoint.
        map_location: where to load tensors.

    Returns:
        the model in eval mode, with ``checksum`` (sha256 of the file) and ``source`` attributes set.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable file (the message says what the file is: empty, truncated, text, an image...), no GVAE
            in it (for ``"gvae_ema"``: no EMA generator, i.e. trained without ``ema_decay``), or NaN/Inf weights.

    Example::

        model = load_gvae("bundles/gvae_brain2d/models/model.pt")  # the configuration travels with the weights
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"GVAE checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt or foreign file
        raise ValueError(f"cannot read GVAE checkpoint {path}: {describe_unreadable_checkpoint(path, e)}") from e
    if isinstance(ckpt, dict) and "_extra_state" not in ckpt:
        if key == EMA_KEY and key not in ckpt:
            ckpt = _with_generator_average(ckpt, path)
        elif key not in ckpt:
            raise ValueError(f"checkpoint {path} has no entry {key!r}; entries: {sorted(ckpt)}")
        else:
            ckpt = ckpt[key]
    if not isinstance(ckpt, dict):
        raise ValueError(f"checkpoint {path} does not hold a state dict.")
    bad = [k for k, v in ckpt.items() if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"checkpoint {path} holds NaN/Inf weights (a diverged model) in {', '.join(bad[:5])}.")
    model = GVAE.from_state_dict(ckpt)
    with open(path, "rb") as f:
        model.checksum = hashlib.sha256(f.read()).hexdigest()
    model.source = path
    return model.eval()


def _with_generator_average(ckpt: dict, path: str) -> dict:
    """The ``"gvae"`` state of a multi-network checkpoint with the generator's weights and buffers replaced by the
    trainer's EMA generator (a ``torch.optim.swa_utils.AveragedModel`` state: ``module.*`` and ``n_averaged``)."""
    average = ckpt.get("generator_ema")  # checkpoint format 1 kept it beside the entries
    if average is None:
        average = next((v["generator_ema"] for v in ckpt.values() if isinstance(v, dict) and "generator_ema" in v), None)
    if average is None or "gvae" not in ckpt:
        raise ValueError(
            f"checkpoint {path} has no {EMA_KEY!r} entry and no EMA generator (a GVAETrainer with ema_decay keeps one "
            f"in its state); entries: {sorted(ckpt)}"
        )
    state = dict(ckpt["gvae"])
    generator = {k[len("generator."):] for k in state if k.startswith("generator.")}
    averaged = {k[len("module."):]: v for k, v in average.items() if k.startswith("module.")}
    if set(averaged) != generator:
        raise ValueError(
            f"the EMA generator of checkpoint {path} does not match its 'gvae' generator "
            f"({len(averaged)} vs {len(generator)} tensors)."
        )
    state.update({f"generator.{k}": v for k, v in averaged.items()})
    return state


def model_checksum(model: nn.Module) -> str:
    """The model's identity, as synthesis manifests and the meta data of synthetic items record it.

    The sha256 of the checkpoint file a model was loaded from (:func:`load_gvae` sets ``model.checksum``), or else
    of its state dict's tensors (names, shapes, dtypes and bytes) and other entries (the stored configuration), so
    that in-memory models get a stable identity too.

    Example::

        model_checksum(GVAE(2, 1, 16)) == model_checksum(GVAE(2, 1, 16))  # False: other random weights
    """
    checksum = getattr(model, "checksum", None)
    if checksum:
        return str(checksum)
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        if isinstance(value, torch.Tensor):
            digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
            # raw bytes through a uint8 view: numpy has no bfloat16, so .numpy() would fail for such weights
            digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(f"{name}:{value!r}".encode())  # the stored config (extra state) is part of the identity
    return digest.hexdigest()


def resolve_gvae(
    model: nn.Module | str | os.PathLike, checkpoint_key: str = "gvae", device: str | torch.device = "cpu"
) -> nn.Module:
    """The GVAE to synthesise with, on ``device`` and in eval mode, from a model, a checkpoint or a bundle folder.

    Args:
        model: a ``GVAE`` instance; a checkpoint file (see :func:`load_gvae`); or a bundle folder holding
            ``models/model.pt`` (see :func:`bundle_model_path`).
        checkpoint_key: entry of a multi-network checkpoint (``"gvae"``; ``"gvae_ema"`` for an EMA copy).
        device: device of the returned model. A model already on ``device`` is shared (not copied); one on
            another device is copied once, so the caller's model is never moved.

    Returns:
        the model, in eval mode.

    Raises:
        FileNotFoundError: a path that is neither a file nor a bundle folder with ``models/model.pt``.
        TypeError: an object that is not a GVAE-like module (needs ``encode``, ``decode``, ``latent_size``...).

    Example::

        model = resolve_gvae("bundles/gvae_brain2d")  # loads bundles/gvae_brain2d/models/model.pt
    """
    device = torch.device(device)
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if os.path.isdir(path):
            path = bundle_model_path(path)
        return load_gvae(path, key=checkpoint_key, map_location=device).eval()
    if not isinstance(model, nn.Module) or any(not hasattr(model, a) for a in _MODEL_ATTRIBUTES):
        raise TypeError(
            f"model must be a GVAE, a checkpoint path or a bundle folder, got {type(model).__name__} "
            f"(a GVAE-like module needs {', '.join(_MODEL_ATTRIBUTES)})."
        )
    params = list(model.parameters())
    if params and params[0].device != device:
        checksum = model_checksum(model)
        model = copy.deepcopy(model).to(device)
        model.checksum = checksum
    return model.eval()
