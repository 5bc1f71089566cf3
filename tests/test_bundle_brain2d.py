"""The gvae_brain2d bundle through `python -m monai.bundle`, as the README runs it (tiny overrides)."""

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from conftest import subprocess_env

CONFIGS = os.path.join("bundles", "gvae_brain2d", "configs")


def run_bundle(repo_root, *args):
    cmd = [sys.executable, "-m", "monai.bundle", "run", *args]
    proc = subprocess.run(cmd, cwd=repo_root, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def trained_bundle(tmp_path_factory):
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path_factory.mktemp("brain2d")
    run_bundle(
        repo_root, "training",
        "--config_file", os.path.join(CONFIGS, "train.yaml"),
        "--meta_file", os.path.join(CONFIGS, "metadata.json"),
        "--bundle_root", os.path.join("bundles", "gvae_brain2d"),
        "--output_dir", str(out), "--max_epochs", "2", "--base_channels", "4", "--latent_size", "8",
    )
    return repo_root, out


def test_training_writes_checkpoint_and_png(trained_bundle):
    _, out = trained_bundle
    assert (out / "model.pt").is_file()
    png = Image.open(out / "samples.png")
    assert png.format == "PNG" and png.width > 64 and png.height > 64
    assert np.asarray(png).std() > 0  # not a blank image


def test_inference_writes_marked_nifti_pairs(trained_bundle):
    repo_root, out = trained_bundle
    synth = out / "synthetic"
    args = [
        "inferring",
        "--config_file", os.path.join(CONFIGS, "inference.yaml"),
        "--meta_file", os.path.join(CONFIGS, "metadata.json"),
        "--checkpoint", str(out / "model.pt"), "--output_dir", str(synth), "--num_samples", "3",
    ]
    run_bundle(repo_root, *args)
    manifest = json.loads((synth / "manifest.json").read_text())
    assert manifest["synthetic"] is True and len(manifest["files"]) == 3
    for entry in manifest["files"]:
        image = nib.load(synth / entry["image"])
        label = nib.load(synth / entry["label"])
        assert image.shape == label.shape == (64, 64)
        assert b"SYNTHETIC" in image.header["descrip"].tobytes()
        assert set(np.unique(np.asarray(label.dataobj))) <= {0, 1, 2, 3}
    # a second run into the same folder refuses to overwrite
    cmd = [sys.executable, "-m", "monai.bundle", "run", *args]
    proc = subprocess.run(cmd, cwd=repo_root, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "already exist" in proc.stdout + proc.stderr


def test_missing_dataset_dir_is_a_clear_error(tmp_path, repo_root):
    cmd = [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--config_file", os.path.join(CONFIGS, "train.yaml"),
        "--bundle_root", os.path.join("bundles", "gvae_brain2d"),
        "--output_dir", str(tmp_path), "--dataset_dir", str(tmp_path / "nowhere"), "--max_epochs", "1",
    ]
    proc = subprocess.run(cmd, cwd=repo_root, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "nowhere" in proc.stderr and ("not found" in proc.stderr or "No such file" in proc.stderr)


def test_training_logs_tensorboard(trained_bundle):
    _, out = trained_bundle
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(out / "tensorboard"))


def test_bundle_has_the_training_properties_monai_checks(repo_root, tmp_path):
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        config_file=os.path.join(repo_root, CONFIGS, "train.yaml"),
        meta_file=os.path.join(repo_root, CONFIGS, "metadata.json"),
        logging_file=None,
        workflow_type="train",
        bundle_root=str(tmp_path),  # initialize() creates output_dir under it
    )
    workflow.initialize()
    assert workflow.check_properties() in (None, [])
