"""The package's layers (docs/architecture.md), enforced by import-linter's contracts in setup.cfg.

``test_package_keeps_its_import_contracts`` runs ``lint-imports`` on the package: an import from a lower layer into
a higher one fails the suite (and ``.ci/run``, which also runs ``lint-imports`` as a step of its own after the
suite). The other tests check that the contract itself catches such an import (on a scratch package with the same
layers), and that the optional ``benchmarks`` layer works whether or not it exists.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS_CONTRACT = "importlinter:contract:layers"


def lint_imports(cwd: Path, config: str = "setup.cfg", extra_path: Path | None = None) -> subprocess.CompletedProcess:
    """``lint-imports`` (import-linter's command) run in ``cwd``, without a cache folder."""
    env = dict(os.environ)
    if extra_path is not None:  # find the scratch package before the installed one
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    command = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-c", command, "--no-cache", config],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )


def test_package_keeps_its_import_contracts():
    proc = lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def layer_names() -> list[str]:
    """The main contract's layers, top to bottom, as module names (optional layers without their parentheses)."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    names = []
    for line in config[LAYERS_CONTRACT]["layers"].split("\n"):
        for token in line.replace("|", ":").split(":"):
            if token.strip():
                names.append(token.strip().strip("()"))
    return names


@pytest.fixture
def scratch(tmp_path):
    """A package ``monai_gvae`` made of one empty module per layer, checked by a copy of the main contract."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    scratch_config = configparser.ConfigParser()
    for section in ("importlinter", LAYERS_CONTRACT):
        scratch_config[section] = dict(config[section])
    with open(tmp_path / "setup.cfg", "w") as f:
        scratch_config.write(f)
    package = tmp_path / "monai_gvae"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in layer_names():
        if name != "benchmarks":  # optional: added by the tests that need it
            (package / f"{name}.py").write_text("")
    return tmp_path


def test_layers_contract_lists_the_agreed_order():
    names = layer_names()
    order = ["cli", "benchmarks", "bundle", "metrics", "handlers", "engines", "transforms", "data", "networks", "utils"]
    assert [n for n in names if n in order] == order
    assert names.index("losses") == names.index("networks") + 1  # same level as networks ("networks | losses")


def test_scratch_package_with_the_same_layers_passes(scratch):
    (scratch / "monai_gvae" / "transforms.py").write_text("from monai_gvae import networks, utils\n")
    proc = lint_imports(scratch, extra_path=scratch)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_contract_fails_on_an_upward_import(scratch):
    # the import this redesign removed: transforms/pool.py reading the model checksum from the bundle layer
    (scratch / "monai_gvae" / "transforms.py").write_text("from monai_gvae.bundle import model_checksum\n")
    proc = lint_imports(scratch, extra_path=scratch)
    assert proc.returncode == 1, proc.stdout[-4000:]
    assert "monai_gvae.transforms is not allowed to import monai_gvae.bundle" in proc.stdout
    assert "1 broken" in proc.stdout


def test_contract_fails_on_a_module_without_a_layer(scratch):
    (scratch / "monai_gvae" / "helpers.py").write_text("")  # exhaustive: every top-level module must be placed
    proc = lint_imports(scratch, extra_path=scratch)
    assert proc.returncode != 0 and "monai_gvae.helpers" in proc.stdout + proc.stderr


def test_optional_benchmarks_layer_sits_between_bundle_and_cli(scratch):
    benchmarks = scratch / "monai_gvae" / "benchmarks.py"
    benchmarks.write_text("from monai_gvae import bundle, data\n")
    proc = lint_imports(scratch, extra_path=scratch)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    (scratch / "monai_gvae" / "bundle.py").write_text("from monai_gvae import benchmarks\n")
    proc = lint_imports(scratch, extra_path=scratch)
    assert proc.returncode == 1 and "monai_gvae.bundle is not allowed to import monai_gvae.benchmarks" in proc.stdout


def test_ci_runs_lint_imports_as_its_own_step_after_the_readme_test_command():
    # a step of its own: CI keeps failing on an upward import even if the test above is marked slow or skipped
    commands = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    commands = [c for c in commands if c and not c.startswith("#")]
    assert commands.index('eval "$test_command"') < commands.index("lint-imports --no-cache")
