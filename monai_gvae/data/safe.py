"""``SafeDataset``: a wrapper naming the item (and its file) when loading it fails, or skipping and counting bad items.

Research data are messy: one truncated file among a million should either stop training with an error that says
which file it is, or (``skip_bad_items=True``) be logged, skipped and counted, the count being reported at the end.
The bad items are recorded in memory shared with the data loader's worker processes, so the count is right with
``num_workers > 0`` too, and an item found bad once is not read again.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset, Subset

__all__ = ["BadItemError", "SafeDataset", "describe_item"]

logger = logging.getLogger(__name__)


class BadItemError(ValueError):
    """An item of a dataset could not be loaded; ``index`` and ``source`` (its file, when known) say which."""

    def __init__(self, message: str, index: int, source: str) -> None:
        super().__init__(message)
        self.index, self.source = index, source


def _paths(value: Any) -> list[str]:
    if isinstance(value, (str, os.PathLike)):
        return [os.fspath(value)]
    if isinstance(value, (list, tuple)) and len(value) <= 16 and all(isinstance(v, (str, os.PathLike)) for v in value):
        return [os.fspath(v) for v in value]
    return []


def describe_item(dataset: Any, index: int) -> str:
    """What item ``index`` of ``dataset`` is, for an error message: its file name(s) when the dataset's ``data`` list
    holds paths (MONAI's ``Dataset([{"image": "a.nii.gz"}])``), a ``source``/``describe`` the dataset offers, else the
    index.

    Example::

        describe_item(Dataset([{"image": "a.nii.gz", "label": 1}]), 0)  # "image=a.nii.gz"
    """
    if isinstance(dataset, Subset):
        return describe_item(dataset.dataset, int(dataset.indices[index]))
    describe = getattr(dataset, "describe_item", None)
    if callable(describe):
        try:
            return str(describe(index))
        except Exception:
            pass
    data = getattr(dataset, "data", None)
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        try:
            raw = data[index]
        except Exception:
            raw = None
        if isinstance(raw, Mapping):
            parts = [f"{k}={', '.join(_paths(v))}" for k, v in raw.items() if _paths(v)]
            if parts:
                return "; ".join(parts)
        elif _paths(raw):
            return ", ".join(_paths(raw))
    inner = getattr(dataset, "dataset", None)
    if inner is not None and inner is not dataset:
        return describe_item(inner, index)
    return f"item {index}"


class SafeDataset(Dataset):
    """Map-style dataset wrapper: errors while loading an item name the item; optionally, bad items are skipped.

    * ``skip_bad_items=False`` (default): an exception raised by ``dataset[index]`` (a truncated or unreadable file,
      a transform rejecting the data) becomes :class:`BadItemError` (a ``ValueError``) naming the index, the file(s)
      and the original error (chained as ``__cause__``).
    * ``skip_bad_items=True``: the error is logged, the item is recorded as bad and the next good item (in index
      order, wrapping around) is returned in its place, so batches keep their size. Bad items are not read again.
      :meth:`report` (or :meth:`attach` to a trainer: at the end of training) logs and returns how many were
      skipped. More than ``max_bad_fraction`` of the dataset bad raises: a data set that is mostly broken is not
      a data set to train on.

    Args:
        dataset: a map-style dataset (``__len__`` and ``__getitem__``).
        skip_bad_items: skip and count bad items instead of raising.
        max_bad_fraction: with ``skip_bad_items``, raise once more than this fraction of the items are bad.
        exceptions: exception types treated as a bad item (others, e.g. ``KeyboardInterrupt``, always propagate).
        name: name of the dataset in messages.

    Raises:
        ValueError: ``max_bad_fraction`` outside (0, 1].

    Example::

        ds = SafeDataset(Dataset(files, transform=LoadImaged("image")), skip_bad_items=True)
        ds.attach(trainer)  # logs "skipped 2 of 5000 items ..." when training completes
    """

    def __init__(
        self,
        dataset: Any,
        skip_bad_items: bool = False,
        max_bad_fraction: float = 0.5,
        exceptions: tuple[type[BaseException], ...] = (Exception,),
        name: str | None = None,
    ) -> None:
        if not 0.0 < max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in (0, 1], got {max_bad_fraction}.")
        self.dataset = dataset
        self.skip_bad_items = skip_bad_items
        self.max_bad_fraction = max_bad_fraction
        self.exceptions = tuple(exceptions)
        self.name = name or type(dataset).__name__
        self.messages: dict[int, str] = {}
        n = len(dataset)
        try:  # shared with fork/spawn worker processes
            self._bad: Any = multiprocessing.RawArray("b", n)
        except (OSError, ValueError):  # no shared memory: counts only in this process
            self._bad = bytearray(n)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        spawning = multiprocessing.context.get_spawning_popen() is not None
        if not spawning and not isinstance(self._bad, bytearray):
            state["_bad"] = bytearray(bytes(self._bad))  # a plain copy outside of starting a worker
        return state

    @property
    def bad_indices(self) -> list[int]:
        """Indices of the items found bad so far (in every worker process)."""
        return np.flatnonzero(np.frombuffer(self._bad, dtype=np.int8)).tolist()

    @property
    def num_bad(self) -> int:
        """How many items were found bad so far."""
        return int(np.count_nonzero(np.frombuffer(self._bad, dtype=np.int8)))

    def _fail(self, index: int, exc: BaseException) -> BadItemError:
        source = describe_item(self.dataset, index)
        where = f"item {index}" if source == f"item {index}" else f"item {index} ({source})"
        reason = f"{type(exc).__name__}: {exc}"
        root = _root_cause(exc)
        if root is not exc:  # MONAI wraps reader errors in "applying transform ..."; the cause says what is wrong
            reason += f" (caused by {type(root).__name__}: {root})"
        return BadItemError(f"cannot load {where} of {self.name}: {reason}", index, source)

    def _load(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except self.exceptions as exc:
            error = self._fail(index, exc)
            if not self.skip_bad_items:
                raise error from exc
            self._bad[index] = 1
            self.messages[index] = str(error)
            logger.warning(f"skipping bad item: {error}")
            limit = self.max_bad_fraction * len(self)
            if self.num_bad > limit:
                raise BadItemError(
                    f"{self.num_bad} of {len(self)} items of {self.name} are bad (more than max_bad_fraction="
                    f"{self.max_bad_fraction}); last: {error}", index, error.source
                ) from exc
            return _BAD

    def __getitem__(self, index: int) -> Any:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {self.name} of {n} items.")
        for step in range(n):
            i = (index + step) % n
            if self.skip_bad_items and self._bad[i]:
                continue
            item = self._load(i)
            if item is not _BAD:
                return item
        raise BadItemError(f"no item of {self.name} can be loaded ({self.num_bad} bad).", index, f"item {index}")

    def report(self) -> int:
        """Log how many items were skipped (and which) and return the count."""
        bad = self.bad_indices
        if bad:
            shown = ", ".join(self.messages.get(i, describe_item(self.dataset, i)) for i in bad[:10])
            more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
            logger.warning(f"{self.name}: skipped {len(bad)} of {len(self)} items that could not be loaded: {shown}{more}")
        else:
            logger.info(f"{self.name}: no bad items among {len(self)}")
        return len(bad)

    def attach(self, engine: Any) -> None:
        """Call :meth:`report` when ``engine`` completes (and set ``engine.state.skipped_items``)."""
        from ignite.engine import Events

        def _report(e: Any) -> None:
            e.state.skipped_items = self.report()

        engine.add_event_handler(Events.COMPLETED, _report)


def _root_cause(exc: BaseException) -> BaseException:
    seen = {id(exc)}
    while True:
        nxt = exc.__cause__ or exc.__context__
        if nxt is None or id(nxt) in seen or len(seen) > 16:
            return exc
        seen.add(id(nxt))
        exc = nxt


class _Bad:
    def __repr__(self) -> str:
        return "<bad item>"


_BAD = _Bad()
