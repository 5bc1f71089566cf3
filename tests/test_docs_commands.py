"""Every command of README.md and docs/cli.md runs as written, in order, at small sizes (issue 18), from a folder
outside the repository, as a user who installed the package with pip would run them (issue 21).

The commands are read from the documents' ```bash blocks. Sizes are made small (2 training iterations, tiny
networks, 4 samples); the install and test commands are not run. `monai-gvae` commands run in this process
(``monai_gvae.cli.main``, the same code as the console script, without a second interpreter start-up); MONAI's
commands and anything needing a shell run as subprocesses.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from cli_helpers import run_command

pytestmark = [pytest.mark.filterwarnings("ignore:parsing config_file"), pytest.mark.filterwarnings("ignore:No hash")]

REPO = Path(__file__).resolve().parents[1]
SMALL_TRAINING = ["--train#trainer#epoch_length", "2", "--val_interval", "1", "--base_channels", "4",
                  "--latent_size", "8"]


def documented_commands(path: Path) -> list[str]:
    """The shell commands of the ```bash blocks of ``path``, in order (continuation lines joined, comments dropped)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(" ".join(line.split()))
    return commands


def runnable(command: str) -> str | None:
    """The part of ``command`` this test runs: installs and the test suite itself are left out."""
    if command.startswith("pip install"):
        last = command.split(" && ")[-1]
        return last if last.startswith("python -m monai.bundle") else None
    return None if "pytest" in command else command


def small(command: str) -> str:
    """``command`` at small sizes."""
    command = re.sub(r"--max_epochs \d+", "--max_epochs 1", command)
    command = re.sub(r"(^| )-n \d+", r"\1-n 4", command)
    if command.startswith("python -m monai.bundle run training") or command.startswith("monai-gvae train"):
        if "--max_epochs" not in command:
            command += " --max_epochs 1"
        command += " " + " ".join(SMALL_TRAINING)
    return command


def run_documented(command: str, cwd: Path) -> None:
    if command.startswith("monai-gvae ") and "$(" not in command:
        from monai_gvae.cli import main

        status = main(shlex.split(command)[1:])
        assert status == 0, command
        return
    proc = run_command(["bash", "-c", command], cwd)
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


def test_readme_commands_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    commands = [c for c in map(runnable, documented_commands(REPO / "README.md")) if c]
    assert commands[0] == "monai-gvae bundle init gvae_brain2d bundles/gvae_brain2d"  # a pip user's first step
    assert any(c.startswith("python -m monai.bundle run training") for c in commands)
    for command in commands:
        run_documented(small(command), tmp_path)
    for path in ("bundles/gvae_brain2d/models/model.pt", "bundles/gvae_brain2d/output/manifest.json",
                 "synthetic/manifest.json", "eval.json", "mem_report/memorization.json", "runs/a/model.pt"):
        assert (tmp_path / path).is_file(), path
    assert any((tmp_path / "data" / "test" / "images").iterdir())


def test_cli_doc_commands_run_in_order(tmp_path, monkeypatch):
    """docs/cli.md's examples follow README's quick start (a trained bundles/gvae_brain2d in the same folder)."""
    monkeypatch.chdir(tmp_path)
    readme = [c for c in map(runnable, documented_commands(REPO / "README.md")) if c]
    for command in readme[:2]:  # bundle init, then the main (training) command
        run_documented(small(command), tmp_path)
    # `ref.dcm` stands for a DICOM image of the user's: here, one written by monai-gvae
    run_documented("monai-gvae synthesize --bundle bundles/gvae_brain2d -n 1 --out generated/ --format dicom", tmp_path)
    image = json.loads((tmp_path / "generated" / "manifest.json").read_text())["files"][0]["image"]
    shutil.copy(tmp_path / "generated" / image, tmp_path / "ref.dcm")
    commands = documented_commands(REPO / "docs" / "cli.md")
    assert any("export-data" in c for c in commands) and any("bundle init" in c for c in commands)
    for command in commands:
        run_documented(small(command), tmp_path)
    for path in ("synthetic/manifest.json", "synthetic_png/manifest.json", "eval.json", "mem_report/memorization.json",
                 "mem_report_model/memorization.json", "runs/a/model.pt", "runs/b/model.pt",
                 "my_bundle/configs/train.yaml", "mnist_bundle/configs/metadata.json"):
        assert (tmp_path / path).is_file(), path
