"""Command-line settings of a bundle as typed values, converted once where the text enters.

``python -m monai.bundle run training ... --amp true`` hands the bundle the *string* ``"true"``: MONAI passes
command-line overrides through ``fire``, which turns only Python literals (``True``, ``1``, ``None``) into values,
and any non-empty string counts as true (``--channels_last false`` would leave channels-last on). So the bundle
configs convert the ids a user may set on the command line in one place, a settings component::

    settings:
      _target_: monai_gvae.bundle.BundleSettings
      amp: "@amp"
      channels_last: "@channels_last"
    network: "$monai_gvae.networks.prepare_network(@network_def, @device, channels_last=@settings.channels_last)"

and every other block reads ``@settings.NAME``. The type of each settable id is declared once, in
:data:`SETTING_CONVERTERS`; a typo (``--amp ture``) stops the run naming the id. The trainer and the checkpoint
handler are built through :func:`build_trainer` and :func:`build_checkpoint_handler`, which convert the same way
what a nested override (``--train#trainer#amp false``) hands them. The engines, handlers and transforms themselves
take only typed values and refuse a string (``monai_gvae.utils.check_bool``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from monai_gvae.engines import GVAETrainer
from monai_gvae.handlers import GVAECheckpointHandler
from monai_gvae.utils import flag, flag_word

__all__ = [
    "BOOLEAN_SETTINGS",
    "SETTING_CONVERTERS",
    "BundleSettings",
    "convert_setting",
    "convert_settings",
    "build_trainer",
    "build_checkpoint_handler",
]

BOOLEAN_SETTINGS = (
    # speed (docs/performance.md)
    "amp", "channels_last", "compile", "gradient_checkpointing", "cudnn_benchmark", "pin_memory", "non_blocking",
    "float_outputs",
    # the trainer's and the checkpoint handler's own switches
    "check_finite", "save_final", "epoch_level",
    # training, inference and evaluation: replace existing outputs; training: show a progress bar
    "overwrite", "progress",
    # gvae_brain2d's adapt.yaml
    "conditional", "freeze_encoder",
)
"""Settable ids that are booleans: true/false, yes/no, on/off, 1/0 (any case; ``monai_gvae.utils.flag``)."""


def optional_positive_int(value: Any, name: str) -> int | None:
    """A positive integer or ``None`` from a setting: ``"null"``/``"none"``/``""`` are ``None``, digits an int.

    Numbers are passed on as they are (the consumer checks their range).

    Raises:
        ValueError: a string that is neither (``--critic_chunk_size two``).

    Example::

        optional_positive_int("null", "critic_chunk_size")  # None
        optional_positive_int("4", "critic_chunk_size")     # 4
    """
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    if text in ("", "null", "none"):
        return None
    if text.isdigit():
        return int(text)
    raise ValueError(f"{name} must be a positive integer or null, got {value!r}")


def resume_setting(value: Any, name: str = "resume") -> bool | str | os.PathLike | None:
    """The checkpoint handler's ``resume`` from a setting: a boolean word, ``"latest"`` (true), ``"null"``/``"none"``/
    ``""`` (false), or else a checkpoint path, passed on as it is.

    Example::

        resume_setting("true")                 # True
        resume_setting("runs/a/model.pt")      # "runs/a/model.pt"
    """
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    if text in ("", "null", "none"):
        return False
    if text == "latest":
        return True
    word = flag_word(text)
    return value if word is None else word


SETTING_CONVERTERS: dict[str, Callable[[Any, str], Any]] = {
    **{name: flag for name in BOOLEAN_SETTINGS},
    "critic_chunk_size": optional_positive_int,
    "resume": resume_setting,
}
"""How each command-line-settable id is converted from text: ``converter(value, name) -> typed value``."""


def convert_setting(name: str, value: Any) -> Any:
    """``value`` of the setting ``name`` as its declared type (:data:`SETTING_CONVERTERS`).

    Args:
        name: the id (its last part for a nested id: ``amp`` for ``train#trainer#amp``).
        value: the value, typed already or command-line text.

    Returns:
        the typed value.

    Raises:
        KeyError: no type is declared for ``name``.
        ValueError: text that is not a value of the declared type (``--amp ture``), naming the id.

    Example::

        convert_setting("channels_last", "false")  # False
    """
    try:
        converter = SETTING_CONVERTERS[name]
    except KeyError:
        raise KeyError(
            f"no type is declared for the bundle setting {name!r}; add it to "
            f"monai_gvae.bundle.settings.SETTING_CONVERTERS (known: {', '.join(sorted(SETTING_CONVERTERS))})."
        ) from None
    return converter(value, name)


def convert_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with every declared setting converted (:func:`convert_setting`); other entries unchanged.

    Example::

        convert_settings({"amp": "true", "max_epochs": 5})  # {"amp": True, "max_epochs": 5}
    """
    return {k: convert_setting(k, v) if k in SETTING_CONVERTERS else v for k, v in values.items()}


class BundleSettings:
    """The command-line-settable ids of a bundle config as typed values, converted once (one attribute per id).

    A bundle config instantiates it with ``_target_`` from the raw ids and reads ``@settings.NAME`` everywhere else,
    so ``--amp true`` (the string ``"true"``) reaches the trainer as ``True`` and ``--channels_last false`` really
    turns channels-last off. MONAI instantiates a component once per parse and shares it between references.

    Args:
        values: ``name=value`` for each setting; every name must have a declared type (:data:`SETTING_CONVERTERS`).

    Raises:
        KeyError: a name without a declared type.
        ValueError: a value that is not of its declared type (``--amp ture``), naming the id.

    Example::

        settings = BundleSettings(amp="true", channels_last="off", critic_chunk_size="null")
        settings.amp, settings.channels_last, settings.critic_chunk_size  # True, False, None
    """

    def __init__(self, **values: Any) -> None:
        for name, value in values.items():
            setattr(self, name, convert_setting(name, value))

    def as_dict(self) -> dict[str, Any]:
        """The settings as a dictionary."""
        return dict(vars(self))

    def __repr__(self) -> str:
        return f"BundleSettings({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


def build_trainer(**kwargs: Any) -> GVAETrainer:
    """``GVAETrainer(**kwargs)``, with command-line text among the arguments converted first.

    The bundles' ``train#trainer_factory`` targets this function, so that a nested override such as
    ``--train#trainer#amp false`` (the string ``"false"``, set after ``@settings`` was read) is converted like a
    top-level one; ``GVAETrainer`` itself refuses strings for its flags.

    Example::

        trainer = build_trainer(device="cpu", max_epochs=1, train_data_loader=loader, network=gvae, amp="false")
    """
    return GVAETrainer(**convert_settings(kwargs))


def build_checkpoint_handler(**kwargs: Any) -> GVAECheckpointHandler:
    """``GVAECheckpointHandler(**kwargs)``, with command-line text among the arguments converted first
    (``--train#checkpoint_saver#resume true``); see :func:`build_trainer`.

    Example::

        handler = build_checkpoint_handler(save_dir="runs/a", save_dict={"gvae": gvae}, resume="true")
    """
    return GVAECheckpointHandler(**convert_settings(kwargs))
