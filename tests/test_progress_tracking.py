"""Progress, logs, tracking, start-up (issue 18): one progress bar per run and a line per validation, end-of-run
messages, MONAI's MLflow tracking on the bundles, a fast `monai-gvae --help`, and `monai-gvae export-data`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import cli, monai_bundle, monai_gvae
from conftest import subprocess_env

pytestmark = [pytest.mark.filterwarnings("ignore:parsing config_file")]

REPO = Path(__file__).resolve().parents[1]
BRAIN2D = REPO / "bundles" / "gvae_brain2d"
CONFIGS = BRAIN2D / "configs"
# 4 epochs of 2 iterations, validation every 2 epochs: one bar, two validation lines
FOUR_EPOCHS = ["--max_epochs", "4", "--train#trainer#epoch_length", "2", "--val_interval", "2", "--base_channels", "4",
               "--latent_size", "8"]


def check_one_bar_and_validation_lines(stdout: str, stderr: str) -> None:
    output = stdout + stderr
    assert "Epoch[" not in output and "Complete. Time taken" not in output  # Ignite's per-epoch lines are gone
    validation = [line for line in stdout.splitlines() if "validation after epoch" in line]
    assert len(validation) == 2 and "val_reconstruction_mae" in validation[0], stdout
    bars = {line.split("|")[0].split(":")[0] for line in stderr.replace("\r", "\n").splitlines() if "it/s" in line
            or "s/it" in line}
    assert bars == {"training"}, bars  # one bar, over the whole run
    assert "8/8" in stderr and "loss_g=" in stderr and "loss_d=" in stderr


def test_training_shows_one_progress_bar_and_a_line_per_validation(tmp_path, capsys):
    proc = monai_bundle("run", "training", "--config_file", str(CONFIGS / "train.yaml"), "--meta_file",
                        str(CONFIGS / "metadata.json"), "--bundle_root", str(BRAIN2D), "--output_dir",
                        str(tmp_path / "a"), *FOUR_EPOCHS, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    check_one_bar_and_validation_lines(proc.stdout, proc.stderr)
    # monai-gvae train (the same code as the console script, in this process): the bundle's bar, not a second one
    from monai_gvae.cli import main

    assert main(["train", *FOUR_EPOCHS, "--output_dir", str(tmp_path / "b")]) == 0
    captured = capsys.readouterr()
    check_one_bar_and_validation_lines(captured.out, captured.err)
    assert "training finished" in captured.out


def test_inference_and_evaluation_say_what_they_wrote(tmp_path, capsys, monkeypatch):
    from monai.bundle import run

    from monai_gvae.networks import GVAE

    monkeypatch.chdir(tmp_path)
    model = GVAE(2, 5, 64, latent_size=8, base_channels=4, image_channels=1, num_classes=4)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    run("inferring", config_file=str(CONFIGS / "inference.yaml"), bundle_root=str(BRAIN2D),
        checkpoint=str(tmp_path / "model.pt"), output_dir=str(tmp_path / "synthetic"), num_samples=3)
    out = capsys.readouterr().out
    assert f"wrote 3 synthetic image(s) and 3 label map(s) (nifti) and manifest.json to {tmp_path / 'synthetic'}" in out
    run("evaluating", config_file=[str(CONFIGS / "train.yaml"), str(CONFIGS / "evaluate.yaml")],
        bundle_root=str(BRAIN2D), output_dir=str(tmp_path), batch_size=16, **{"evaluate#max_samples": 4})
    out = capsys.readouterr().out
    assert f"over 4 held-out image(s) to {tmp_path / 'metrics.json'}" in out


def test_mlflow_tracking_records_parameters_loss_terms_and_the_sample_grid(tmp_path, monkeypatch):
    """`python -m monai.bundle run training ... --tracking mlflow`, a local store in output_dir (no server)."""
    mlflow = pytest.importorskip("mlflow")
    from monai.bundle import run

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "run"
    run("training", config_file=str(CONFIGS / "train.yaml"), meta_file=str(CONFIGS / "metadata.json"),
        bundle_root=str(BRAIN2D), output_dir=str(out), tracking="mlflow", max_epochs=2, val_interval=1,
        base_channels=4, latent_size=8, progress=False, **{"train#trainer#epoch_length": 2})
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "monai_experiment"]
    (run_info,) = client.search_runs([experiment.experiment_id])
    params = run_info.data.params
    assert params["learning_rate"] == "0.001" and params["objective"] == "gvae" and params["max_epochs"] == "2"
    metrics = run_info.data.metrics
    assert {"loss_g", "loss_d", "loss_rec", "loss_kl", "val_reconstruction_mae"} <= set(metrics), sorted(metrics)
    assert len(client.get_metric_history(run_info.info.run_id, "loss_g")) == 4  # every iteration
    artifacts = {a.path for a in client.list_artifacts(run_info.info.run_id)}
    assert "samples.png" in artifacts and any(a.startswith("config_") for a in artifacts), artifacts


def test_help_and_version_answer_without_importing_torch(tmp_path):
    code = ("import sys, monai_gvae.cli as c; c.build_parser(); "
            "print(sorted(m for m in ('torch', 'monai', 'ignite') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
    for args in (["--help"], ["--version"], ["synthesize", "-n", "-3", "--out", "x", "--checkpoint", "m.pt"]):
        times = []
        for _ in range(3):  # the best of three: the machine may be busy with other jobs
            start = time.perf_counter()
            proc = subprocess.run([*monai_gvae(), *args], cwd=tmp_path, env=subprocess_env(), capture_output=True,
                                  text=True, timeout=60)
            times.append(time.perf_counter() - start)
        assert proc.returncode in (0, 2), proc.stderr
        assert min(times) < 1.0, (args, times)
    assert proc.returncode == 2


def test_export_data_writes_the_embedded_slices_as_folders(tmp_path):
    from monai.transforms import LoadImage

    from monai_gvae.bundle.export_data import brain_splits
    from monai_gvae.data import load_brain_slices

    proc = cli("export-data", "data", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    splits = brain_splits()
    assert "train" in splits and "test" in splits
    loader = LoadImage(image_only=True)
    for split in splits:
        slices = load_brain_slices(split)
        images = sorted((tmp_path / "data" / split / "images").iterdir())
        labels = sorted((tmp_path / "data" / split / "labels").iterdir())
        assert len(images) == len(labels) == len(slices)
        assert [p.name for p in images] == [p.name for p in labels]
        first = slices[0]
        np.testing.assert_allclose(np.asarray(loader(str(images[0]))), first["image"][0], atol=1e-6)
        np.testing.assert_array_equal(np.asarray(loader(str(labels[0]))), first["label"][0])
    assert f"wrote {sum(len(load_brain_slices(s)) for s in splits)} brain slices" in proc.stdout
    again = cli("export-data", "data", cwd=tmp_path)
    assert again.returncode == 1 and "already exist" in again.stderr and "Traceback" not in again.stderr
    assert json.dumps(splits)  # the split names are what load_brain_slices knows, not hard-coded counts
