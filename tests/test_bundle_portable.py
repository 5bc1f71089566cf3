"""Every bundle folder is self-contained: copied out of the repository, it trains, evaluates and synthesises with
MONAI's own commands from its own folder and from any other working directory (issue 18)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import run

from conftest import subprocess_env
from test_bundles import BUNDLES, DATA

pytestmark = [pytest.mark.filterwarnings("ignore:parsing config_file"), pytest.mark.filterwarnings("ignore:No hash value")]

REPO = Path(__file__).resolve().parents[1]
# two training iterations (one epoch of two batches), validation after it, tiny networks
TWO_ITERATIONS = {"max_epochs": 1, "train#trainer#epoch_length": 2, "val_interval": 1, "base_channels": 4,
                  "latent_size": 8, "num_workers": 0, "progress": False}


def copy_bundle(name: str, dest: Path) -> Path:
    """``bundles/NAME`` copied to ``dest`` (outside the repository), without anything a run left in it."""
    folder = dest / name
    shutil.copytree(REPO / "bundles" / name, folder, ignore=shutil.ignore_patterns("models", "output", "eval", "logs"))
    return folder


def commands(bundle: Path | str) -> dict[str, dict]:
    """The keyword arguments of MONAI's run for training, evaluating and inferring a bundle at path ``bundle``."""
    configs = os.path.join(bundle, "configs")
    meta = {"meta_file": os.path.join(configs, "metadata.json"), "bundle_root": str(bundle)}
    return {
        "training": {"config_file": os.path.join(configs, "train.yaml"), **meta},
        "evaluating": {"config_file": [os.path.join(configs, "train.yaml"), os.path.join(configs, "evaluate.yaml")],
                       **meta},
        "inferring": {"config_file": os.path.join(configs, "inference.yaml"), **meta},
    }


def test_bundle_configs_refer_only_to_their_own_folder():
    """No config macro (``%FILE#ID``, resolved against the working directory) and no path into the repository."""
    for name in BUNDLES:
        for config in (REPO / "bundles" / name / "configs").glob("*.yaml"):
            for number, line in enumerate(config.read_text().splitlines(), 1):
                code = line.split("#", 1)[0] if line.lstrip().startswith("#") else line
                assert '"%' not in code and ": %" not in code, f"{config}:{number}: {line}"
                assert "bundles/" not in code, f"{config}:{number}: {line}"


@pytest.mark.parametrize("name", BUNDLES)
def test_copied_bundle_runs_from_its_folder_and_from_elsewhere(name, tmp_path, monkeypatch):
    outside = tmp_path / "elsewhere"
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    outside.mkdir()
    data = DATA[name](data_dir)  # fixture data (none for the embedded brain slices), image size and batch size
    bundle = copy_bundle(name, tmp_path / "copied")
    assert not str(bundle).startswith(str(REPO))

    for cwd, root in ((bundle, "."), (outside, str(bundle))):
        monkeypatch.chdir(cwd)
        run("training", **commands(root)["training"], **TWO_ITERATIONS, **data)
        # the default output_dir is the bundle's own models/ (relative to bundle_root, not to the working directory)
        ckpt = torch.load(bundle / "models" / "model.pt", weights_only=False)
        assert ckpt["trainer"]["iteration"] == 2
        eval_data = {k: v for k, v in data.items() if k != "image_size"}
        run("evaluating", **commands(root)["evaluating"], **eval_data, **{"evaluate#max_samples": 4})
        assert json.loads((bundle / "models" / "metrics.json").read_text())["num_images"] >= 2
        run("inferring", **commands(root)["inferring"], num_samples=2, batch_size=2)
        manifest = json.loads((bundle / "output" / "manifest.json").read_text())
        assert manifest["synthetic"] is True and len(manifest["files"]) == 2
        # the next working directory starts from a bundle without outputs
        shutil.rmtree(bundle / "models")
        shutil.rmtree(bundle / "output")
    assert not any(outside.iterdir()), "nothing is written into the working directory"


def test_copied_bundle_runs_with_monais_command_line(tmp_path):
    """The issue's command, as a user types it: `cd copy && python -m monai.bundle run training ... --bundle_root .`"""
    bundle = copy_bundle("gvae_brain2d", tmp_path)
    small = ["--max_epochs", "1", "--train#trainer#epoch_length", "2", "--base_channels", "4", "--latent_size", "8"]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", "configs/train.yaml",
           "--meta_file", "configs/metadata.json", "--bundle_root", "."]
    proc = subprocess.run(cmd + small, cwd=bundle, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (bundle / "models" / "model.pt").is_file() and (bundle / "models" / "samples.png").is_file()
