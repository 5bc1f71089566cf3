"""Refusals a bundle run makes before anything is built (the bundles' ``initialize``): a used output folder, settings
that are not numbers of the right kind, missing or empty data, a missing checkpoint.

Each raises an error of :data:`monai_gvae.bundle.console.USER_ERRORS` whose message names the problem and what to
do, so that on the command line it is one line (``readable_errors``), and it happens before the trainer, the networks
or the optimisers exist: nothing is written and no time is spent.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Sized
from typing import Any

from monai_gvae.bundle.settings import convert_setting
from monai_gvae.handlers import check_earlier_run

__all__ = ["NUMBER_RULES", "check_checkpoint", "check_datasets", "check_numbers", "check_training_run"]


def _positive_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def _non_negative_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0


def _positive_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value > 0 and value == value


NUMBER_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "max_epochs": (_positive_int, "a positive integer"),
    "val_interval": (_positive_int, "a positive integer"),
    "batch_size": (_positive_int, "a positive integer"),
    "num_workers": (_non_negative_int, "an integer >= 0"),
    "learning_rate": (_positive_number, "a positive number"),
    "critic_learning_rate": (_positive_number, "a positive number"),
}
"""What each numeric bundle id must be: ``name -> (test, description)``."""


def check_numbers(**values: Any) -> None:
    """Refuse a numeric setting of the wrong kind (``--max_epochs abc``, ``--batch_size 0``), naming the id.

    Raises:
        ValueError: a value that fails its rule in :data:`NUMBER_RULES`.
        KeyError: a name without a rule.

    Example::

        check_numbers(max_epochs=5, learning_rate=1e-3)
    """
    for name, value in values.items():
        test, description = NUMBER_RULES[name]
        if not test(value):
            raise ValueError(f"{name} must be {description}, got {value!r} (--{name} on the command line).")


def check_training_run(
    output_dir: str | os.PathLike,
    resume: Any = False,
    overwrite: Any = False,
    final_filename: str | None = "model.pt",
    file_prefix: str = "checkpoint",
    **numbers_: Any,
) -> None:
    """The refusals of a training run, before anything is built.

    Args:
        output_dir: where the run writes its checkpoints.
        resume: the checkpoint handler's ``resume`` (a boolean, a checkpoint path, or their command-line text).
        overwrite: the checkpoint handler's ``overwrite`` (or its command-line text).
        final_filename, file_prefix: the checkpoint handler's file names (what marks an earlier run).
        numbers_: numeric settings checked by :func:`check_numbers` (``max_epochs=...``).

    Raises:
        ValueError: a numeric setting of the wrong kind, or ``resume``/``overwrite`` text that is not a boolean.
        FileNotFoundError: ``resume`` names a checkpoint that does not exist.
        FileExistsError: ``output_dir`` holds an earlier run's checkpoints, and neither ``resume`` nor ``overwrite``.

    Example::

        check_training_run("runs/a", resume="false", overwrite=False, max_epochs=5)
    """
    check_numbers(**numbers_)
    resume = convert_setting("resume", resume)
    overwrite = convert_setting("overwrite", overwrite)
    if isinstance(resume, (str, os.PathLike)):
        if not os.path.isfile(resume):
            raise FileNotFoundError(f"the checkpoint to resume from does not exist: {os.fspath(resume)} (--resume).")
        return
    if resume or overwrite:
        return
    check_earlier_run(
        output_dir,
        file_prefix=file_prefix,
        final_filename=final_filename,
        hint="nothing was run. Resume it (--resume true), replace it (--overwrite true) or choose another --output_dir",
    )


def check_datasets(**datasets: Any) -> None:
    """Refuse an empty data set (a folder without images, a split without items), naming it.

    Referring to the data sets in a bundle's ``initialize`` also builds them there, so a missing folder or file is
    reported (by the reader, naming it) before the engine is built.

    Raises:
        ValueError: a data set of length 0.

    Example::

        check_datasets(train=train_ds, validate=val_ds)
    """
    for name, dataset in datasets.items():
        if isinstance(dataset, Sized) and len(dataset) == 0:
            raise ValueError(f"the {name} data set is empty: check --dataset_dir and the data settings of the bundle.")


def check_checkpoint(path: str | os.PathLike, hint: str = "train the model first or give another checkpoint") -> None:
    """Refuse a missing checkpoint file before anything is loaded.

    Raises:
        FileNotFoundError: ``path`` is not a file; the message names it and ``hint``.

    Example::

        check_checkpoint("bundles/gvae_brain2d/models/model.pt", hint="run training first")
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no trained model at {os.fspath(path)}: {hint}.")
