"""The few-label benchmark's data: train / val / test slabs of the embedded slices or of a user's NIfTI
folders (:func:`fewlabel_splits`, :class:`FewLabelData`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from monai.data import partition_dataset

from monai_gvae.benchmarks.segmentation import IMAGE_SIZE, NUM_CLASSES
from monai_gvae.data import (
    BRAIN_CLASS_NAMES,
    brain_slab_split,
    labelled_subset,
    load_brain_slices,
    load_labelled_slices,
)

from .arms import K_UNITS

__all__ = ["FewLabelData", "fewlabel_splits", "labelled_and_pool", "SPLIT_UNITS", "MIN_VOLUMES_FOR_VOLUME_SPLIT",
           "VOLUME_SPLIT_SEED"]

SPLIT_UNITS = ("auto", "slab", "volume")
"""How :func:`fewlabel_splits` holds data out: ``"slab"`` (contiguous slabs of slices with gaps, inside each volume),
``"volume"`` (whole volumes: held-out subjects), ``"auto"`` (volumes when there are enough of them)."""

MIN_VOLUMES_FOR_VOLUME_SPLIT = 4
"""``split_unit="auto"`` holds whole volumes out from this many 3D volumes on (one each for test and val, and two for
train: the k labelled ones and an unlabelled pool need one each at least)."""

VOLUME_SPLIT_SEED = 0
"""Seed of the volume split's shuffle (:func:`monai.data.partition_dataset`): fixed, so that every seed of a run, and
every run on the same folder, scores the same held-out volumes (the cells' seeds pair)."""


@dataclass
class FewLabelData:
    """The benchmark's data: ``train`` (the k labelled items are drawn from it; the rest is the unlabelled pool),
    ``val`` (for choosing settings), ``test`` (held out: reported once per setting): contiguous slabs of slices
    separated by gaps (:func:`~monai_gvae.data.brain_slab_split`), or whole volumes (:func:`fewlabel_splits`).

    Attributes:
        train, val, test: the splits' items (``image`` ``(1, S, S)`` in [0, 1], ``label`` ``(1, S, S)`` in
            ``0..num_classes-1``, ``slice_index``).
        num_classes: label classes, background included.
        class_names: names of the foreground classes 1.. (for per-class Dice).
        description: where the slices come from, for the report's header.
        left_right_flip: whether the slices' columns run left-right, so that the augmentation may flip them
            (:attr:`FewLabelSettings.left_right_flip`): true for the embedded axial slices and ``data_dir``'s axial
            and coronal slices (and 2D files), false for sagittal slices (``axis=0``).
        split_unit: ``"slab"`` (slabs of slices held out) or ``"volume"`` (whole volumes held out): what was used.
    """

    train: list[dict]
    val: list[dict]
    test: list[dict]
    num_classes: int
    class_names: tuple[str, ...]
    description: str
    left_right_flip: bool = True
    split_unit: str = "slab"


def fewlabel_splits(
    data_dir: str | os.PathLike | None = None,
    axis: int = 2,
    num_classes: int | None = None,
    holdout_fraction: float = 0.25,
    val_fraction: float = 0.15,
    gap: int = 3,
    split_layout: str = "alternate",
    split_unit: str = "auto",
    volume_pattern: str | None = None,
) -> FewLabelData:
    """Train / val / test splits of the embedded brain slices, or of a user's ``images/`` + ``labels/`` NIfTI folders.

    Slices of one volume are near-duplicates of their neighbours, so nothing held out may lie next to a training
    slice (benchmark rule 10: slabs with gaps, or whole subjects). ``split_unit="slab"`` cuts contiguous slabs with
    ``gap``-slice gaps inside each volume (:func:`~monai_gvae.data.brain_slab_split`; a folder of 2D files is one
    series in file order). ``split_unit="volume"`` holds whole volumes out (held-out subjects): MONAI's
    :func:`~monai.data.partition_dataset` shuffles the volumes with the fixed :data:`VOLUME_SPLIT_SEED` and gives
    ``holdout_fraction`` of them to test and ``val_fraction`` to val. ``"auto"``: volumes for a folder of at least
    :data:`MIN_VOLUMES_FOR_VOLUME_SPLIT` 3D volumes, slabs otherwise (one volume, a few, or 2D files).

    Args:
        data_dir: ``None`` for the embedded slices (:func:`~monai_gvae.data.load_brain_slices`); else a folder read
            by :func:`~monai_gvae.data.load_labelled_slices` (2D slices, or 3D volumes sliced along ``axis``,
            resized to 64 x 64, labels remapped to ``0..C-1``); the slices are split in their file and slice order.
        axis: the anatomical axis along which 3D volumes are sliced, after RAS reorientation: 0 sagittal,
            1 coronal, 2 axial (``data_dir`` only).
        num_classes: classes declared for ``data_dir`` (an error when the labels hold more); ``None``: as found.
        holdout_fraction, val_fraction: shares of the slices (slabs) or of the volumes (volume split) held out.
        gap: the slab split's gap (:func:`~monai_gvae.data.brain_slab_split`).
        split_layout: slabs: ``"alternate"`` (val and test slabs at different levels, the recorded runs) or
            ``"paired"`` (a val slab beside each test slab, so that validation sees the levels the test slabs score).
        split_unit: ``"auto"``, ``"slab"`` or ``"volume"`` (:data:`SPLIT_UNITS`, see above).
        volume_pattern: ``data_dir`` of 2D slice files: a regular expression whose first group names each file's
            subject, so that one subject's files are one volume (:func:`~monai_gvae.data.load_labelled_slices`); then
            they count as 3D volumes here (slabs inside each, or whole subjects held out).

    Returns:
        :class:`FewLabelData`.

    Raises:
        FileNotFoundError, InputImageError: as the loaders (each names the file).
        ValueError: an unknown ``split_unit``, ``"volume"`` for the embedded slices (one volume), a volume split
            that leaves test, val (when ``val_fraction`` > 0) or train without a volume, or a train split of fewer
            than two volumes, or a volume too short for its slabs (named).

    Example::

        data = fewlabel_splits("my_scans", axis=2, num_classes=3)  # 20 volumes: 5 test, 3 val, 12 train volumes
        len(data.train), len(data.val), len(data.test), data.split_unit
    """
    if split_unit not in SPLIT_UNITS:
        raise ValueError(f"split_unit must be one of {SPLIT_UNITS}, got {split_unit!r}.")
    if data_dir is None:
        if split_unit == "volume":
            raise ValueError("the embedded slices are one volume: hold out slabs (split_unit 'slab' or 'auto'), or "
                             "pass data_dir with several volumes.")
        splits = {s: load_brain_slices(s, holdout_fraction, None, val_fraction, gap, split_layout)
                  for s in ("train", "val", "test")}
        return FewLabelData(**splits, num_classes=NUM_CLASSES, class_names=tuple(BRAIN_CLASS_NAMES[1:]),
                            description="embedded Colin27/AAL axial brain slices (4 classes)")
    items = load_labelled_slices(data_dir, image_size=IMAGE_SIZE, num_classes=num_classes, axis=axis,
                                 volume_pattern=volume_pattern)
    values = items[0]["label_values"]
    classes = num_classes if num_classes is not None else len(values)
    volumes = _volume_slices(items)
    volumes_3d = [v for v, members in volumes.items() if len(members) > 1]
    if split_unit == "auto":
        split_unit = "volume" if len(volumes_3d) >= MIN_VOLUMES_FOR_VOLUME_SPLIT else "slab"
    if split_unit == "volume":
        roles = _volume_roles(list(volumes), holdout_fraction, val_fraction)
        held_out = (f"; volumes: {sum(r == 'train' for r in roles.values())} train, "
                    f"{sum(r == 'val' for r in roles.values())} val, {sum(r == 'test' for r in roles.values())} test")
        item_roles = [roles[i["volume"]] for i in items]
    else:
        item_roles = [""] * len(items)
        # one ordered series: a single volume, or 2D files in file order; else slabs inside each volume
        series = [list(range(len(items)))] if len(volumes_3d) <= 1 else list(volumes.values())
        for members in series:
            try:
                slab_roles = brain_slab_split(len(members), holdout_fraction, val_fraction, gap,
                                              layout=split_layout)
            except ValueError as error:
                if len(series) == 1:
                    raise
                raise ValueError(f"volume {items[members[0]]['volume']}: {len(members)} slices are too few for the "
                                 f"slab split ({error}); hold out whole volumes instead (split_unit 'volume')."
                                 ) from error
            for position, role in zip(members, slab_roles):
                item_roles[position] = role
        held_out = "; slabs inside each volume" if len(series) > 1 else ""
    splits = {s: [i for i, role in zip(items, item_roles) if role == s] for s in ("train", "val", "test")}
    grouped = f"(2D files grouped by {volume_pattern!r}) " if volume_pattern else ""
    names = tuple(f"class_{v}" for v in values[1:]) + tuple(f"class_{c}" for c in range(len(values), classes))
    return FewLabelData(**splits, num_classes=classes, class_names=names,
                        description=f"{os.fspath(data_dir)} ({len(items)} slices of {len(volumes)} "
                                    f"{'volume' if volume_pattern else 'file'}{'s' if len(volumes) > 1 else ''} "
                                    f"{grouped}along axis {axis}, label values {values} as classes "
                                    f"0..{classes - 1}{held_out})",
                        left_right_flip=axis != 0,  # a sagittal slice's columns run anterior-posterior
                        split_unit=split_unit)


def labelled_and_pool(
    train: Sequence[dict], k: int, seed: int, k_unit: str = "slice"
) -> tuple[list[dict], list[dict]]:
    """The k labelled items of a cell and its unlabelled pool (the other train items, labels hidden by the arms).

    Args:
        train: the train split's items.
        k: labelled slices (``k_unit="slice"``: :func:`~monai_gvae.data.labelled_subset`) or labelled volumes
            (``"volume"``: every slice of k volumes drawn by the same function from the train split's volumes, the
            way a user labels whole scans; the pool is the other train volumes).
        seed: the draw's seed.
        k_unit: ``"slice"`` or ``"volume"`` (:data:`~monai_gvae.benchmarks.fewlabels.arms.K_UNITS`).

    Returns:
        ``(labelled, pool)``, each in the train split's order.

    Raises:
        ValueError: an unknown ``k_unit``; ``k`` outside ``[1, len(train)]`` (slices), or leaving no volume for the
            pool (volumes).

    Example::

        labelled, pool = labelled_and_pool(data.train, k=5, seed=0, k_unit="volume")  # five whole scans
    """
    if k_unit not in K_UNITS:
        raise ValueError(f"k_unit must be one of {K_UNITS}, got {k_unit!r}.")
    if k_unit == "slice":
        labelled = labelled_subset(train, k, seed)
    else:
        volumes = list(_volume_slices(train))
        if not 1 <= k < len(volumes):
            raise ValueError(f"k = {k} labelled volumes: the train split holds {len(volumes)} volumes, and at least "
                             f"one must stay unlabelled (the pool); choose k in [1, {len(volumes) - 1}].")
        chosen = {v["volume"] for v in labelled_subset([{"volume": v} for v in volumes], k, seed)}
        labelled = [i for i in train if _volume_of(i) in chosen]
    indices = {i["slice_index"] for i in labelled}
    return labelled, [i for i in train if i["slice_index"] not in indices]


def _volume_of(item: Mapping[str, Any]) -> str:
    """The item's volume (``--data-dir`` items name it; the embedded slices are one volume)."""
    return str(item.get("volume", ""))


def _volume_slices(items: Sequence[Mapping[str, Any]]) -> dict[str, list[int]]:
    """Each volume's item positions, volumes in order of first appearance."""
    volumes: dict[str, list[int]] = {}
    for position, item in enumerate(items):
        volumes.setdefault(_volume_of(item), []).append(position)
    return volumes


def _volume_roles(volumes: Sequence[str], holdout_fraction: float, val_fraction: float) -> dict[str, str]:
    """Each volume's split: ``partition_dataset``'s shuffle with :data:`VOLUME_SPLIT_SEED`; errors name the counts."""
    for name, value in (("holdout_fraction", holdout_fraction), ("val_fraction", val_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    shares = {"train": 1.0 - holdout_fraction - val_fraction, "val": val_fraction, "test": holdout_fraction}
    if shares["train"] <= 0:
        raise ValueError(f"holdout_fraction + val_fraction must be below 1, got {holdout_fraction + val_fraction}.")
    wanted = [role for role, share in shares.items() if share > 0]
    parts = partition_dataset(list(volumes), ratios=[shares[r] for r in wanted], shuffle=True,
                              seed=VOLUME_SPLIT_SEED)
    roles = {volume: role for role, part in zip(wanted, parts) for volume in part}
    counts = {role: sum(r == role for r in roles.values()) for role in wanted}
    if counts["train"] < 2 or any(counts[r] < 1 for r in wanted):
        raise ValueError(f"the volume split of {len(volumes)} volumes gives {counts}: every split needs a volume and "
                         "train two (labelled and pool); add volumes, or hold out slabs (split_unit 'slab').")
    return roles


def _stack(items: Sequence[Mapping[str, Any]], key: str) -> torch.Tensor:
    """``items[i][key]`` stacked along a new first axis."""
    return torch.stack([torch.as_tensor(i[key]) for i in items])
