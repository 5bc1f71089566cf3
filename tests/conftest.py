"""Shared fixtures: tiny networks and data so the whole suite runs in minutes on 2 CPU cores."""

from __future__ import annotations

import os
import sys

import pytest
import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

# One thread per test process: the suite shares 2 cores and tiny networks gain nothing from more.
torch.set_num_threads(1)


@pytest.fixture
def repo_root() -> str:
    return REPO_ROOT


def subprocess_env() -> dict:
    """Environment for `python -m ...` subprocesses: the repository importable without installation."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env
