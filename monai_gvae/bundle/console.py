"""What a person reads at the end of a command-line run: one line for an error they can fix, and how many files a
run wrote and where.

``python -m monai.bundle run ...`` wraps an error raised inside a config expression in ``RuntimeError: Failed to
evaluate ConfigExpression`` and prints a 60-line traceback whose useful sentence is in the middle. The bundles call
:func:`readable_errors` first in ``initialize``: when the process is MONAI's bundle command line, an error a user can
fix (a used output folder, missing data, a bad setting, a missing checkpoint: the types of :data:`USER_ERRORS`) then
ends the process with that sentence alone on stderr and exit status 1. ``MONAI_GVAE_DEBUG=1`` brings the traceback
back. ``monai-gvae`` does the same for its own commands (``monai_gvae.cli``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "DEBUG_ENV",
    "USER_ERRORS",
    "debug_enabled",
    "one_line",
    "readable_errors",
    "report_evaluation",
    "report_synthesis",
    "user_error",
]

DEBUG_ENV = "MONAI_GVAE_DEBUG"
"""Environment variable: set to 1 (or any true word) for full tracebacks instead of one-line errors."""

USER_ERRORS: tuple[type[BaseException], ...] = (
    FileExistsError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    ValueError,
)
"""Errors that name a problem of the input, the settings or the files, which the person running the command can fix
(monai-gvae raises these with a message saying what is wrong and what to do)."""

# the module MONAI's bundle command line runs as (`python -m monai.bundle ...`, also under torchrun -m)
_MONAI_BUNDLE_MAIN = "monai.bundle.__main__"


def debug_enabled() -> bool:
    """Whether ``MONAI_GVAE_DEBUG`` asks for full tracebacks (any value but empty, ``0``, ``false``, ``no``, ``off``)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def user_error(error: BaseException) -> BaseException | None:
    """The error to show a person: ``error`` or, behind MONAI's wrappers (``RuntimeError: Failed to evaluate
    ConfigExpression`` / ``Failed to instantiate``, raised *from* the original), its cause, if that is one of
    :data:`USER_ERRORS`; ``None`` for anything else (a bug, whose traceback matters).

    Example::

        try:
            workflow.run()
        except Exception as e:
            shown = user_error(e)  # the FileExistsError of a used output folder, not MONAI's RuntimeError
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, USER_ERRORS):
            return current
        current = current.__cause__
    return None


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line (an ``OSError`` without a message gives its file name)."""
    text = str(error).strip()
    if not text and isinstance(error, OSError) and error.filename:
        text = f"{error.strerror or type(error).__name__}: {error.filename}"
    return " ".join(text.split()) or type(error).__name__


def _in_monai_bundle_cli() -> bool:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return getattr(spec, "name", None) == _MONAI_BUNDLE_MAIN


def readable_errors(force: bool = False) -> bool:
    """Make an uncaught user error (:func:`user_error`) of this process print one line on stderr, ``error: ...``, and
    exit with status 1, instead of a traceback; other errors keep their traceback.

    Only for MONAI's bundle command line (``python -m monai.bundle``), unless ``force``: a Python session that runs a
    bundle keeps Python's own error display. Does nothing when ``MONAI_GVAE_DEBUG`` is set. Calling it again is
    harmless.

    Returns:
        whether the one-line display is (now) installed.

    Example (the first item of every bundle's ``initialize``)::

        initialize:
          - "$monai_gvae.bundle.readable_errors()"
    """
    if debug_enabled() or not (force or _in_monai_bundle_cli()):
        return False
    if getattr(sys.excepthook, "_monai_gvae_readable", False):
        return True
    previous = sys.excepthook

    def excepthook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        shown = user_error(exc)
        if shown is None:
            previous(exc_type, exc, tb)
            return
        sys.stderr.write(f"error: {one_line(shown)}\n")
        sys.stderr.flush()

    excepthook._monai_gvae_readable = True  # type: ignore[attr-defined]
    sys.excepthook = excepthook
    return True


def report_synthesis(manifest: Mapping[str, Any] | Sequence[Mapping[str, Any]], output_dir: str | os.PathLike) -> Any:
    """Print how many synthetic samples a synthesis wrote, in which format, and where; return ``manifest``.

    Args:
        manifest: what the synthesis returned: its manifest (``files``, ``format``), or the list of its ``files``
            entries (``synthesize_to_nifti``).
        output_dir: where the files are.

    Example (a bundle's ``inferring``)::

        - "$monai_gvae.bundle.report_synthesis(monai_gvae.bundle.synthesize(...), @output_dir)"
    """
    entries = manifest.get("files", []) if isinstance(manifest, Mapping) else manifest
    files = list(entries)
    labels = sum(1 for entry in files if entry.get("label"))
    kind = manifest.get("format", "") if isinstance(manifest, Mapping) else (files[0].get("format", "") if files else "")
    what = f"{len(files)} synthetic image(s)" + (f" and {labels} label map(s)" if labels else "")
    print(f"wrote {what}{f' ({kind})' if kind else ''} and manifest.json to {os.path.abspath(output_dir)}", flush=True)
    return manifest


def report_evaluation(report: Mapping[str, Any], path: str | os.PathLike) -> Mapping[str, Any]:
    """Print what an evaluation wrote and where (``metrics.json``); return ``report``.

    Example (a bundle's ``evaluating``)::

        - "$monai_gvae.bundle.report_evaluation(monai_gvae.bundle.evaluation.evaluate_to_json(...), @metrics_file)"
    """
    metrics = report.get("metrics", {})
    images = report.get("num_images")
    over = f" over {images} held-out image(s)" if images is not None else ""
    print(f"wrote {len(metrics)} metric(s){over} to {os.path.abspath(path)}", flush=True)
    return report
