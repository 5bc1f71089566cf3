"""LSUN scene categories from their LMDB databases (``<category>_<split>_lmdb/``), never downloaded.

The ``lmdb`` package (the ``lmdb`` extra: ``pip install monai-gvae[lmdb]``) refuses a second ``open`` of the same
path in one process ("already open", also in a forked child while the parent's handle is open) and its
``Environment`` cannot be pickled. So keys are listed once in ``__init__`` (and cached), the environment is closed
again, and each process (the main one or a DataLoader worker) opens its own read-only environment on first access,
shared by every dataset object over the same database in that process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monai_gvae.data.utils import LazyItemDataset, decode_image, pil_to_array, require_path, resize_center_crop

__all__ = ["LSUNDataset", "lsun_lmdb_path", "list_lmdb_keys"]

# (real path, pid) -> open lmdb.Environment of this process
_ENVS: dict[str, tuple[int, Any]] = {}
# (real path, size and mtime of data.mdb) -> keys, so a database is listed once per process
_KEYS: dict[tuple[str, int, int], np.ndarray] = {}


def _lmdb():
    try:
        import lmdb
    except ImportError as e:  # optional dependency
        raise ImportError("LSUNDataset needs the 'lmdb' package: pip install lmdb (or monai-gvae[lmdb]).") from e
    return lmdb


def lsun_lmdb_path(root: str | Path, category: str, split: str = "train") -> Path:
    """``<root>/<category>_<split>_lmdb``, the layout of the LSUN release (e.g. ``bedroom_train_lmdb``)."""
    return require_path(root, "LSUN folder") / f"{category}_{split}_lmdb"


def _check_lmdb_dir(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"LSUN LMDB folder not found: {path}")
    if not (path / "data.mdb").is_file():
        raise ValueError(f"{path} is not an LMDB database folder (no data.mdb in it).")


def _open_env(path: Path) -> Any:
    """This process's read-only environment for ``path`` (opened on first use, reused afterwards)."""
    real = os.path.realpath(path)
    entry = _ENVS.get(real)
    if entry is not None:
        pid, env = entry
        if pid == os.getpid():
            return env
        # Inherited through fork: lmdb would refuse to open the path again while this handle is open here.
        # Closing it in the child only unmaps the child's copy; the parent's handle stays valid.
        env.close()
        del _ENVS[real]
    lmdb = _lmdb()
    try:
        env = lmdb.open(real, readonly=True, lock=False, readahead=False, meminit=False)
    except lmdb.Error as e:
        raise ValueError(f"cannot open LMDB database {path}: {e}") from e
    _ENVS[real] = (os.getpid(), env)
    return env


def list_lmdb_keys(path: str | Path, cache_dir: str | Path | None = None) -> np.ndarray:
    """All keys of an LMDB database, in key order, listed once and cached.

    Listing the 3M keys of LSUN bedroom takes minutes, so keys are kept in memory per process (keyed by the
    database's path, size and modification time) and, with ``cache_dir``, in ``<cache_dir>/<folder>.keys.npy``
    (reused while the database's entry count matches).

    Args:
        path: the LMDB folder (holding ``data.mdb``).
        cache_dir: optional folder for the on-disk key cache.

    Returns:
        array of byte strings (numpy ``S`` dtype; ``object`` for keys ending in NUL bytes, not cached on disk).

    Raises:
        FileNotFoundError: no such folder.
        ValueError: not an LMDB database.
    """
    path = Path(path).expanduser()
    _check_lmdb_dir(path)
    stat = (path / "data.mdb").stat()
    mem_key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if mem_key in _KEYS:
        return _KEYS[mem_key]
    env = _open_env(path)
    entries = env.stat()["entries"]
    cache_file = Path(cache_dir).expanduser() / f"{path.name}.keys.npy" if cache_dir is not None else None
    keys = None
    if cache_file is not None and cache_file.is_file():
        cached = np.load(cache_file, allow_pickle=False)
        keys = cached if len(cached) == entries else None
    if keys is None:
        with env.begin() as txn:
            listed = list(txn.cursor().iternext(keys=True, values=False))
        # numpy's fixed-width bytes drop trailing NUL bytes: keep such (binary) keys as Python objects.
        binary = any(k.endswith(b"\x00") for k in listed)
        keys = np.array(listed, dtype=object if binary else bytes)
        if cache_file is not None and not binary:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp.npy")
            np.save(tmp, keys, allow_pickle=False)
            os.replace(tmp, cache_file)
    # Close again: a DataLoader worker forked later must open its own handle.
    real = os.path.realpath(path)
    if real in _ENVS:
        _ENVS.pop(real)[1].close()
    _KEYS[mem_key] = keys
    return keys


class LSUNDataset(LazyItemDataset):
    """LSUN images read from one LMDB database per category (``<root>/<category>_<split>_lmdb/``).

    Values are decoded by their magic bytes (JPEG, WebP, PNG; LSUN ships WebP) with Pillow, scaled on the
    shorter side to ``image_size`` and centre-cropped. Keys are listed once (see :func:`list_lmdb_keys`); the LMDB
    environment is opened lazily in each process, so the dataset works with DataLoader workers.

    Args:
        root: folder holding the ``*_lmdb`` folders, or one LMDB folder itself when ``categories`` is ``None``.
        categories: a category name (``"bedroom"``), a list of them (``"label"`` is the index in this list), or
            ``None`` for ``root`` being the database.
        split: ``"train"`` or ``"val"`` (the LSUN release's suffix).
        image_size: output edge length (resize + centre crop); ``None`` keeps the stored size.
        transform: optional callable applied to each item dictionary.
        num_samples: keep only the first ``num_samples`` keys of each category.
        cache_dir: folder of the on-disk key cache (``None``: in memory only).
        mode: Pillow mode, ``"RGB"`` (3 channels) or ``"L"`` (1 channel).

    Items: ``"image"`` (float32 ``(C, S, S)`` in [0, 1]), ``"label"`` (category index) and ``"key"`` (the LMDB key).

    Raises:
        ImportError: ``lmdb`` is not installed.
        FileNotFoundError: a database folder is missing.
        ValueError: a folder is not an LMDB database; on access, a value that is not a decodable image (the
            message names the database and key).

    Example::

        ds = LSUNDataset("/data/lsun", categories="bedroom", image_size=64)
        ds[0]["image"].shape  # (3, 64, 64)
    """

    def __init__(
        self,
        root: str | Path,
        categories: str | Sequence[str] | None = "bedroom",
        split: str = "train",
        image_size: int | None = 64,
        transform: Callable[..., Any] | Sequence[Callable[..., Any]] | None = None,
        num_samples: int | None = None,
        cache_dir: str | Path | None = None,
        mode: str = "RGB",
    ) -> None:
        _lmdb()
        if categories is None:
            self.paths = [require_path(root, "LMDB folder")]
        else:
            names = [categories] if isinstance(categories, str) else list(categories)
            self.paths = [lsun_lmdb_path(root, c, split) for c in names]
        self.categories = categories
        self.image_size, self.mode = image_size, mode
        self.keys = [list_lmdb_keys(p, cache_dir)[:num_samples] for p in self.paths]
        self._offsets = np.cumsum([0] + [len(k) for k in self.keys])
        super().__init__(int(self._offsets[-1]), transform)

    def load_item(self, index: int) -> dict[str, Any]:
        db = int(np.searchsorted(self._offsets, index, side="right") - 1)
        key = bytes(self.keys[db][index - self._offsets[db]])
        path = self.paths[db]
        with _open_env(path).begin() as txn:
            value = txn.get(key)
        source = f"LMDB {path} key {key.decode(errors='replace')}"
        if value is None:
            raise ValueError(f"{source}: key listed but not found (was the database modified?).")
        img = resize_center_crop(decode_image(value, source, self.mode), self.image_size)
        return {"image": pil_to_array(img), "label": db, "key": key.decode(errors="replace")}
