"""What every benchmark report needs: Markdown tables, the command line and hardware of the protocol header,
an output folder that refuses to overwrite an earlier run, and files written atomically."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from monai_gvae.utils import atomic_path

__all__ = [
    "markdown_table",
    "command_line",
    "cpu_model",
    "prepare_output_dir",
    "write_text",
    "write_json",
    "read_json",
]


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table as lines: ``| a | b |``, ``|---|---|`` and one line per row.

    Args:
        header: the column titles.
        rows: the cells of each row (converted with ``str``); each row as long as ``header``.

    Raises:
        ValueError: a row whose length differs from the header's.

    Example::

        markdown_table(["arm", "k = 5"], [["classical", "0.712 ± 0.010"]])
        # ['| arm | k = 5 |', '|---|---|', '| classical | 0.712 ± 0.010 |']
    """
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(c) for c in row]
        if len(cells) != len(header):
            raise ValueError(f"a table row has {len(cells)} cells, the header {len(header)}: {cells}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def command_line(script: str, argv: Sequence[str], quote: bool = True) -> str:
    """The command that produced a report, for its protocol header: ``python <script> <argv...>``.

    Args:
        script: the script's path as the user should type it (e.g. ``examples/segmentation_benchmark.py``).
        argv: its arguments.
        quote: shell-quote each argument (so the line can be pasted back into a shell).
    """
    args = [shlex.quote(a) for a in argv] if quote else list(argv)
    return f"python {script} " + " ".join(args)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else ``lscpu``, else :func:`platform.processor`)."""
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            return names[0]
    except OSError:
        pass
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def prepare_output_dir(
    output_dir: str | os.PathLike, overwrite: bool, outputs: Sequence[str] = ("results.md", "results.json", "dice.png")
) -> None:
    """Create ``output_dir``; refuse one that holds an earlier run's ``outputs`` unless ``overwrite``.

    Raises:
        FileExistsError: some of ``outputs`` exist and ``overwrite`` is false (the message names them).
    """
    existing = [t for t in outputs if os.path.exists(os.path.join(output_dir, t))]
    if existing and not overwrite:
        raise FileExistsError(f"{output_dir} already holds {existing}; pass --overwrite or another --output-dir.")
    os.makedirs(output_dir, exist_ok=True)


def write_text(path: str | os.PathLike, text: str, overwrite: bool = False) -> None:
    """Write ``text`` to ``path`` atomically (no half-written file under the final name).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    with atomic_path(path, overwrite=overwrite) as tmp:
        Path(tmp).write_text(text)


def write_json(
    path: str | os.PathLike, obj: Any, overwrite: bool = False, indent: int = 2, default: Any = None
) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (``default``: as for :func:`json.dump`).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=indent, default=default)


def read_json(path: str | os.PathLike, what: str = "results") -> Any:
    """Read a JSON file an earlier run wrote.

    Raises:
        FileNotFoundError: no such file (the message names it and ``what`` it should hold).
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist (expected the {what} of an earlier run).")
    with open(path) as f:
        return json.load(f)
