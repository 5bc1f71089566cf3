"""Small helpers shared across monai-gvae."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

__all__ = ["atomic_path"]


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
