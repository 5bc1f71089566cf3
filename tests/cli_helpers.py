"""Running the user's command lines as subprocesses: `monai-gvae ...` and `python -m monai.bundle ...`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from conftest import subprocess_env


def monai_gvae() -> list[str]:
    """The `monai-gvae` command of this environment (the console script beside the interpreter, as `pip install`
    writes it; `python -m monai_gvae`, the same program, where there is none)."""
    script = Path(sys.executable).with_name("monai-gvae")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "monai_gvae"]


def run_command(
    args: Sequence[str], cwd: str | os.PathLike, env: Mapping[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run ``args`` in ``cwd`` (text output captured) with the test environment plus ``env``."""
    full_env = subprocess_env()
    full_env.pop("MONAI_GVAE_DEBUG", None)
    full_env.update(env or {})
    return subprocess.run(list(args), cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def cli(*args: str, cwd: str | os.PathLike, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """``monai-gvae ARGS`` in ``cwd``."""
    return run_command([*monai_gvae(), *args], cwd, env)


def monai_bundle(*args: str, cwd: str | os.PathLike, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m monai.bundle ARGS`` in ``cwd``."""
    return run_command([sys.executable, "-m", "monai.bundle", *args], cwd, env)


def stderr_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """stderr without MONAI's notice that configs run code (a warning it prints on every run, two lines)."""
    lines = proc.stderr.splitlines()
    kept = []
    skip_next = False
    for line in lines:
        if skip_next:
            skip_next = False
            continue
        if "UserWarning: parsing config_file" in line:
            skip_next = True  # the warning's source line follows it
            continue
        kept.append(line)
    return [line for line in kept if line.strip()]
