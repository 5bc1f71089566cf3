"""Errors a person can read (issue 18): refusals end the user's command with one sentence on stderr and a non-zero
exit status, before anything is built; MONAI_GVAE_DEBUG=1 brings the traceback back. Command lines as typed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from cli_helpers import cli, monai_bundle, stderr_lines

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundles" / "gvae_brain2d" / "configs"
TRAIN = ["run", "training", "--config_file", str(CONFIGS / "train.yaml"), "--meta_file", str(CONFIGS / "metadata.json"),
         "--bundle_root", str(REPO / "bundles" / "gvae_brain2d")]
SMALL = ["--max_epochs", "1", "--train#trainer#epoch_length", "2", "--base_channels", "4", "--latent_size", "8"]


def one_error_line(proc, *words: str) -> str:
    """The one line a refused command printed on stderr (besides MONAI's parsing notice), holding ``words``."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    lines = stderr_lines(proc)
    assert len(lines) == 1, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def used_output(tmp_path):
    """An output folder holding an earlier run's final checkpoint (its name is what marks a used folder)."""
    out = tmp_path / "used_output"
    out.mkdir()
    (out / "model.pt").write_bytes(b"an earlier run")
    return out


def test_training_into_a_used_output_dir_is_refused_before_anything_is_built(used_output, tmp_path):
    proc = monai_bundle(*TRAIN, *SMALL, "--output_dir", str(used_output), cwd=tmp_path)
    line = one_error_line(proc, "already holds checkpoints", "--resume true", "--overwrite true")
    assert line.startswith("error: ")
    assert sorted(p.name for p in used_output.iterdir()) == ["model.pt"]  # not even a TensorBoard folder
    assert "training:" not in proc.stderr  # no progress bar: the trainer was never built
    # the same through monai-gvae
    proc = cli("train", *SMALL, "--output_dir", str(used_output), cwd=tmp_path)
    assert proc.returncode == 1
    one_error_line(proc, "monai-gvae train: error:", "already holds checkpoints")
    # and with MONAI_GVAE_DEBUG=1 the traceback is back
    proc = monai_bundle(*TRAIN, *SMALL, "--output_dir", str(used_output), cwd=tmp_path, env={"MONAI_GVAE_DEBUG": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "already holds checkpoints" in proc.stderr


def test_inference_into_a_used_output_dir_is_one_line(tmp_path):
    """README's second command run again: the synthetic files are there already."""
    from monai_gvae.networks import GVAE

    torch.save(GVAE(2, 5, 64, latent_size=8, base_channels=4, image_channels=1, num_classes=4).state_dict(),
               tmp_path / "model.pt")
    used = tmp_path / "synthetic"
    used.mkdir()
    (used / "synthetic_00000_image.nii.gz").write_bytes(b"earlier")
    proc = monai_bundle("run", "inferring", "--config_file", str(CONFIGS / "inference.yaml"), "--meta_file",
                        str(CONFIGS / "metadata.json"), "--checkpoint", str(tmp_path / "model.pt"), "--output_dir",
                        str(used), cwd=tmp_path)
    one_error_line(proc, "already exist", "synthetic_00000_image.nii.gz", "--overwrite")
    assert sorted(p.name for p in used.iterdir()) == ["synthetic_00000_image.nii.gz"]


def test_overwrite_true_replaces_an_earlier_run(used_output):
    from monai.bundle import run

    run("training", config_file=str(CONFIGS / "train.yaml"), bundle_root=str(REPO / "bundles" / "gvae_brain2d"),
        output_dir=str(used_output), overwrite="true", progress=False, max_epochs=1, base_channels=4, latent_size=8,
        **{"train#trainer#epoch_length": 2})
    assert torch.load(used_output / "model.pt", weights_only=False)["trainer"]["iteration"] == 2


def test_bad_override_values_are_one_line(tmp_path):
    proc = monai_bundle(*TRAIN, "--output_dir", str(tmp_path / "run"), "--max_epochs", "abc", cwd=tmp_path)
    one_error_line(proc, "max_epochs must be a positive integer", "'abc'")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "override, words",
    [
        ({"batch_size": 0}, ["batch_size must be a positive integer"]),
        ({"amp": "ture"}, ["amp", "ture"]),
        ({"learning_rate": -1}, ["learning_rate must be a positive number"]),
        ({"resume": "missing.pt"}, ["missing.pt", "does not exist"]),
    ],
)
def test_bad_override_values_are_refused_before_anything_is_built(override, words, tmp_path, monkeypatch):
    """The same refusals from Python: the named error behind MONAI's wrapper, nothing written."""
    from monai.bundle import ConfigWorkflow

    from monai_gvae.bundle.console import user_error

    monkeypatch.chdir(tmp_path)
    workflow = ConfigWorkflow(config_file=str(CONFIGS / "train.yaml"), workflow_type="train",
                              bundle_root=str(REPO / "bundles" / "gvae_brain2d"), output_dir=str(tmp_path / "run"),
                              **override)
    with pytest.raises(Exception) as raised:
        workflow.initialize()
    shown = user_error(raised.value)
    assert shown is not None and all(w in str(shown) for w in words), repr(raised.value)
    assert not (tmp_path / "run").exists()


def test_missing_data_is_one_line(tmp_path):
    proc = monai_bundle(*TRAIN, "--output_dir", str(tmp_path / "run"), "--dataset_dir", str(tmp_path / "nowhere"),
                        cwd=tmp_path)
    one_error_line(proc, "nowhere")


def test_missing_checkpoint_is_one_line(tmp_path):
    proc = monai_bundle("run", "inferring", "--config_file", str(CONFIGS / "inference.yaml"), "--meta_file",
                        str(CONFIGS / "metadata.json"), "--checkpoint", str(tmp_path / "none.pt"), "--output_dir",
                        str(tmp_path / "synthetic"), cwd=tmp_path)
    one_error_line(proc, "no trained model", "none.pt")
    from monai.bundle import ConfigWorkflow

    evaluation = ConfigWorkflow(config_file=[str(CONFIGS / "train.yaml"), str(CONFIGS / "evaluate.yaml")],
                                workflow_type="infer", run_id="evaluating", output_dir=str(tmp_path / "empty"),
                                bundle_root=str(REPO / "bundles" / "gvae_brain2d"))
    with pytest.raises(Exception, match="Failed to evaluate") as raised:
        evaluation.initialize()
    assert isinstance(raised.value.__cause__, FileNotFoundError) and "no trained model" in str(raised.value.__cause__)
    proc = cli("synthesize", "--checkpoint", str(tmp_path / "none.pt"), "-n", "2", "--out", "x", cwd=tmp_path)
    assert proc.returncode == 1
    one_error_line(proc, "none.pt")


@pytest.mark.parametrize("args", [["-n", "-3"], ["-n", "0"], ["-n", "2", "--batch-size", "0"]])
def test_invalid_arguments_exit_2(args, tmp_path):
    proc = cli("synthesize", "--checkpoint", "model.pt", "--out", "x", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "positive integer" in proc.stderr and "Traceback" not in proc.stderr


def _bad_checkpoints(folder: Path) -> dict[str, str]:
    from monai_gvae.networks import GVAE

    good = folder / "good.pt"
    torch.save(GVAE(2, 1, 16, latent_size=4, base_channels=4).state_dict(), good)
    (folder / "empty.pt").write_bytes(b"")
    (folder / "text.pt").write_text("model weights are in the cloud\n")
    data = good.read_bytes()
    (folder / "truncated.pt").write_bytes(data[: len(data) // 2])
    return {"empty.pt": "empty (0 bytes)", "text.pt": "a text file", "truncated.pt": "truncated"}


def test_unreadable_checkpoints_say_what_the_file_is(tmp_path):
    from monai_gvae.networks import load_gvae

    for name, words in _bad_checkpoints(tmp_path).items():
        with pytest.raises(ValueError) as raised:
            load_gvae(tmp_path / name)
        message = str(raised.value)
        assert "\n" not in message and name in message and words in message, message
        assert "expected a PyTorch checkpoint" in message
    # on the command line: that one line, exit status 1, nothing written
    proc = cli("synthesize", "--checkpoint", "empty.pt", "-n", "1", "--out", "out", cwd=tmp_path)
    assert proc.returncode == 1
    one_error_line(proc, "monai-gvae synthesize: error: cannot read GVAE checkpoint empty.pt: the file is empty")
    assert not (tmp_path / "out").exists()


def test_python_callers_keep_ordinary_exceptions(tmp_path):
    """From Python the errors stay exceptions (MONAI's wrapper, caused by the named error), nothing exits."""
    from monai.bundle import run

    from monai_gvae.bundle.console import user_error

    with pytest.raises(Exception) as raised:
        run("training", config_file=str(CONFIGS / "train.yaml"), bundle_root=str(REPO / "bundles" / "gvae_brain2d"),
            output_dir=str(tmp_path), max_epochs="abc")
    shown = user_error(raised.value)
    assert isinstance(shown, ValueError) and "max_epochs" in str(shown)
    assert os.listdir(tmp_path) == []
