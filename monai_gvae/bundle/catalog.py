"""The bundles shipped with monai-gvae: where they are, which files make a bundle, and writing one to a folder.

A wheel of monai-gvae carries each bundle of the repository's ``bundles/`` folder (its ``configs/``, ``docs/`` and
``LICENSE``; nothing a run wrote) under ``monai_gvae/bundle/shipped/NAME`` (``setup.py`` copies them at build time).
In a clone or an editable install the repository's ``bundles/`` folder is used directly, so there is one source
either way. :func:`init_bundle` (``monai-gvae bundle init NAME DIR``) writes a bundle to a folder of the user's, which
MONAI's own commands then run from any working directory::

    monai-gvae bundle init gvae_brain2d my_bundle
    python -m monai.bundle run training --config_file my_bundle/configs/train.yaml \\
        --meta_file my_bundle/configs/metadata.json --bundle_root my_bundle

This module uses the standard library only: ``setup.py`` loads it by path to select the files it ships.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

__all__ = [
    "DEFAULT_BUNDLE_NAME",
    "BUNDLE_DIRS",
    "BUNDLE_FILES",
    "bundle_files",
    "bundle_names",
    "bundle_path",
    "bundle_summary",
    "init_bundle",
    "shipped_bundles_root",
]

DEFAULT_BUNDLE_NAME = "gvae_brain2d"
"""The bundle ``monai-gvae train`` trains when no ``--bundle`` is given."""

BUNDLE_DIRS = ("configs", "docs")
"""Folders of a bundle that make it (shipped and written by :func:`init_bundle`, with everything in them)."""
BUNDLE_FILES = ("LICENSE",)
"""Files at the top of a bundle folder that make it; nothing else there (``models/``, ``output/``) is shipped."""

_PACKAGED = Path(__file__).resolve().parent / "shipped"  # in a wheel (setup.py writes it)
_CLONE = Path(__file__).resolve().parents[2] / "bundles"  # a clone or an editable install: the repository's folder


def bundle_files(folder: str | os.PathLike) -> list[str]:
    """The files that make the bundle in ``folder`` (relative POSIX paths, sorted): everything under
    :data:`BUNDLE_DIRS` and the :data:`BUNDLE_FILES`, except hidden and ``__pycache__`` entries.

    Example::

        bundle_files("bundles/gvae_brain2d")  # ['LICENSE', 'configs/adapt.yaml', ..., 'docs/README.md', ...]
    """
    root = Path(folder)
    found = [name for name in BUNDLE_FILES if (root / name).is_file()]
    for sub in BUNDLE_DIRS:
        for path in (root / sub).rglob("*"):
            rel = path.relative_to(root)
            if path.is_file() and not any(p.startswith(".") or p == "__pycache__" for p in rel.parts):
                found.append(rel.as_posix())
    return sorted(found)


def shipped_bundles_root() -> Path:
    """The folder holding the shipped bundles: the package's own copy in an installed wheel, else the
    repository's ``bundles/`` folder (a clone, an editable install).

    Raises:
        FileNotFoundError: neither exists (a broken installation).
    """
    for root in (_PACKAGED, _CLONE):
        if any(root.glob("*/configs/metadata.json")):
            return root
    raise FileNotFoundError(
        f"no bundles found: this installation of monai-gvae has neither {_PACKAGED} nor {_CLONE}; reinstall it "
        "(pip install monai-gvae) or run from a clone of the repository."
    )


def bundle_names() -> list[str]:
    """Names of the shipped bundles (folders with ``configs/metadata.json``), sorted.

    Example::

        bundle_names()  # ['gvae_brain2d', 'gvae_brain3d', 'gvae_celebahq', 'gvae_lsun', 'gvae_mnist']
    """
    return sorted(p.parent.parent.name for p in shipped_bundles_root().glob("*/configs/metadata.json"))


def bundle_path(name: str) -> Path:
    """The folder of the shipped bundle ``name`` (read it, do not train into it: see :func:`init_bundle`).

    Raises:
        ValueError: ``name`` is not a shipped bundle; the message lists the known ones.
    """
    names = bundle_names()
    if name not in names:
        raise ValueError(f"unknown bundle {name!r}; the bundles shipped with monai-gvae are: {', '.join(names)}.")
    return shipped_bundles_root() / name


def bundle_summary(name: str) -> dict[str, str]:
    """``{"name", "version", "title", "task"}`` of a shipped bundle, from its ``configs/metadata.json``."""
    meta = json.loads((bundle_path(name) / "configs" / "metadata.json").read_text(encoding="utf-8"))
    return {
        "name": name,
        "version": str(meta.get("version", "")),
        "title": str(meta.get("name", name)),
        "task": str(meta.get("task", "")),
    }


def init_bundle(name: str, folder: str | os.PathLike, overwrite: bool = False) -> list[str]:
    """Write the shipped bundle ``name`` into ``folder``: its configs, metadata, docs and licence notices.

    The folder is self-contained: ``python -m monai.bundle run training --config_file FOLDER/configs/train.yaml
    --meta_file FOLDER/configs/metadata.json --bundle_root FOLDER`` runs it from any working directory (checkpoints go
    to ``FOLDER/models``).

    Args:
        name: a shipped bundle (:func:`bundle_names`).
        folder: the destination; created if missing.
        overwrite: write into a folder that is not empty (the bundle's files are replaced, other files kept).

    Returns:
        the files written (paths relative to ``folder``).

    Raises:
        ValueError: unknown ``name`` (the message lists the shipped bundles).
        FileExistsError: ``folder`` is not empty and ``overwrite`` is False (nothing written).
        NotADirectoryError: ``folder`` is a file.

    Example::

        init_bundle("gvae_brain2d", "my_bundle")
    """
    source = bundle_path(name)
    dest = Path(folder)
    if dest.exists() and not dest.is_dir():
        raise NotADirectoryError(f"cannot write the bundle into {dest}: it is a file.")
    if dest.is_dir() and any(dest.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{dest} is not empty; nothing was written. Choose an empty or new folder, or pass --overwrite to write "
            "the bundle's files into it."
        )
    files = bundle_files(source)
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, target)
    return files
