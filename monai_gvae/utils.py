"""Small helpers shared across monai-gvae: atomic file writes, output checks, booleans from text, and the device a
network runs on (the bottom layer: imports nothing from the package, and torch only when asked for a device)."""

from __future__ import annotations

import ast
import contextlib
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["module_device", "atomic_path", "atomic_directory", "check_targets_free", "flag", "flag_word", "check_bool",
           "parse_value"]


def module_device(module: Any) -> torch.device:
    """Where a network runs: the device of its first parameter or buffer; the host for a module without any or a
    plain callable (e.g. a fixed threshold), so that callers copy their inputs there either way.

    Example::

        logits = net(images.to(module_device(net))).cpu()
    """
    import torch  # here, not above: `monai-gvae --help` and `--version` answer without importing torch

    if isinstance(module, torch.nn.Module):
        tensor = next(itertools.chain(module.parameters(), module.buffers()), None)
        if tensor is not None:
            return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[str]:
    """Yield a temporary file name beside ``path``; on success it is renamed to ``path`` in one step.

    An interrupted write leaves no file under the final name (only a ``.tmp`` file that is removed on error).

    Args:
        path: final file name; its folder is created.
        overwrite: replace an existing file; otherwise ``FileExistsError``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.

    Example::

        with atomic_path("out/image.nii.gz") as tmp:
            nib.save(img, tmp)
    """
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"refusing to overwrite existing file {path} (pass overwrite=True / --overwrite).")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    # Keep the real suffix at the end (e.g. '.nii.gz') so writers that infer the format from it still work.
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{_suffixes(base)}", dir=folder)
    os.close(fd)
    # mkstemp creates the file 0600; give the final file the permissions an ordinary open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        if not overwrite and os.path.exists(path):
            raise FileExistsError(f"refusing to overwrite existing file {path} (created while writing).")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _suffixes(name: str) -> str:
    for multi in (".nii.gz", ".tar.gz"):
        if name.endswith(multi):
            return multi
    return os.path.splitext(name)[1]


def _ordinary_permissions(path: str, mode: int) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[str]:
    """Yield a temporary folder beside ``path``; on success it is renamed to ``path`` in one step.

    The directory counterpart of :func:`atomic_path`, for outputs made of several files (e.g. a DICOM series,
    one file per slice): an interrupted write leaves no folder under the final name.

    Args:
        path: final folder name; its parent is created.
        overwrite: replace an existing file or folder (moved aside, then deleted once the new one is in place).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.

    Example::

        with atomic_directory("out/series_000") as tmp:
            for k in range(n):
                write_slice(os.path.join(tmp, f"slice_{k:04d}.dcm"))
    """
    path = os.fspath(path)
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"refusing to overwrite existing {path} (pass overwrite=True / --overwrite).")
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    base = os.path.basename(path.rstrip(os.sep))
    tmp = tempfile.mkdtemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
    _ordinary_permissions(tmp, 0o777)
    try:
        yield tmp
        if os.path.lexists(path):
            if not overwrite:
                raise FileExistsError(f"refusing to overwrite existing {path} (created while writing).")
            old = tempfile.mkdtemp(prefix=f".{base}.", suffix=".old", dir=parent)
            os.rmdir(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old) if os.path.isdir(old) else os.remove(old)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)


def check_targets_free(targets: Iterable[str | os.PathLike], overwrite: bool = False, what: str = "output") -> None:
    """Raise before anything is written if any of ``targets`` exists and ``overwrite`` is False.

    Args:
        targets: every file or folder a command is about to write.
        overwrite: allow existing targets.
        what: word used in the message.

    Raises:
        FileExistsError: naming how many targets exist and the first few.

    Example::

        check_targets_free(["out/a.nii.gz", "out/manifest.json"], overwrite=False)
    """
    if overwrite:
        return
    existing = [os.fspath(t) for t in targets if os.path.lexists(t)]
    if existing:
        shown = ", ".join(existing[:3]) + (", ..." if len(existing) > 3 else "")
        raise FileExistsError(
            f"{len(existing)} {what} file(s) already exist ({shown}); nothing was written. "
            "Pass --overwrite (overwrite=True) to replace them, or choose another folder."
        )


# The one set of words read as booleans, wherever command-line or config text enters (CLI, bundle settings).
_TRUE_WORDS = ("true", "yes", "on", "1")
_FALSE_WORDS = ("false", "no", "off", "0")


def flag_word(text: str) -> bool | None:
    """``True``/``False`` for one of the boolean words (true/false, yes/no, on/off, 1/0, any case), else ``None``.

    Example::

        flag_word(" Off ")  # False
        flag_word("ture")   # None
    """
    word = text.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    return None


def flag(value: Any, name: str = "flag") -> bool:
    """A boolean setting as a ``bool``, converted from command-line or config text where it enters the package.

    ``python -m monai.bundle run ... --amp true`` hands the bundle the *string* ``"true"``: MONAI passes
    overrides through ``fire``, which turns only Python literals (``True``, ``0``) into values. A string used as a
    flag is truthy whatever it says, so ``--channels_last false`` would leave channels-last on and
    ``--overwrite false`` would overwrite. The bundles' settings component (:class:`monai_gvae.bundle.BundleSettings`)
    and the command line convert their text with this function, once; the engines, handlers and transforms take
    only real booleans (:func:`check_bool`).

    Args:
        value: ``True``/``False``, ``0``/``1``, or a string among true/false, yes/no, on/off, 1/0 (any case).
        name: the id, named in the error.

    Returns:
        The flag.

    Raises:
        ValueError: anything else (a typo such as ``--amp ture`` must not silently count as on or off).

    Example::

        flag("false", "channels_last")  # False
        flag(True)                      # True
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = flag_word(value)
        if word is not None:
            return word
    raise ValueError(f"{name} must be true or false, got {value!r}")


def check_bool(value: Any, name: str) -> bool:
    """``value`` as a ``bool`` if it is one already (``bool``, a NumPy bool, or the integers 0 and 1).

    Inside the package booleans are typed values: text from a command line or a config is converted once where it
    enters (:func:`flag`). A string reaching an engine, handler or transform would count as true whatever it says
    (``"false"`` is truthy), so it is refused here, naming the argument.

    Args:
        value: the argument.
        name: the argument's name, for the error.

    Returns:
        the boolean.

    Raises:
        TypeError: ``value`` is a string or another non-boolean.

    Example::

        amp = check_bool(amp, "amp")
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        raise TypeError(
            f"{name} must be a bool, got the string {value!r}: convert command-line or config text where it enters "
            "(monai_gvae.utils.flag; bundles: monai_gvae.bundle.BundleSettings), so that 'false' never counts as true."
        )
    raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}.")


def parse_value(text: str) -> Any:
    """A value given on a command line: a Python literal (``1e-3``, ``5``, ``[1, 2]``, ``True``), ``null``/``none``,
    a boolean word (true/false, yes/no, on/off: the words of :func:`flag_word`), or else the text itself.

    Used by ``monai-gvae train`` overrides and the defaults sweep's factors, so both read a value the same way.

    Example::

        [parse_value(t) for t in ("0.01", "null", "nearest", "true")]  # [0.01, None, 'nearest', True]
    """
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    if text.strip().lower() in ("null", "none"):
        return None
    word = flag_word(text)
    return text if word is None else word
