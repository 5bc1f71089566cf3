"""Every bundle trains one short epoch on fixture data, evaluates, verifies, exports and synthesises; resume."""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import socket
import struct
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from evaluation_oracle import expected_metrics
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export, run, verify_metadata, verify_net_in_out
from PIL import Image

from monai_gvae.bundle import SCHEMA_FILE
from monai_gvae.metrics import default_metrics
from monai_gvae.networks import load_gvae

# MONAI warns at every parse that configs run code; these configs are the repository's own
pytestmark = [pytest.mark.filterwarnings("ignore:parsing config_file"), pytest.mark.filterwarnings("ignore:No hash value provided")]

REPO = Path(__file__).resolve().parents[1]
BUNDLES = ("gvae_brain2d", "gvae_mnist", "gvae_lsun", "gvae_celebahq", "gvae_brain3d")
# tiny networks: every bundle's run takes a second or two on a CPU
TINY = {"max_epochs": 1, "base_channels": 4, "latent_size": 8, "num_workers": 0, "val_interval": 1}


@pytest.fixture(autouse=True)
def in_repo_root(monkeypatch):
    """The tests name the bundles by repository-relative paths (the bundles themselves run from anywhere)."""
    monkeypatch.chdir(REPO)
    torch.set_num_threads(1)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def rgb(h, w, seed):
    return np.random.RandomState(seed).randint(0, 256, size=(h, w, 3)).astype(np.uint8)


def png_bytes(array):
    import io

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def mnist_data(root: Path) -> dict:
    for prefix, n in (("train", 8), ("t10k", 4)):
        images = np.random.RandomState(n).randint(0, 256, size=(n, 28, 28)).astype(np.uint8)
        for kind, arr in (("images", images), ("labels", np.arange(n, dtype=np.uint8) % 10)):
            data = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
            (root / f"{prefix}-{kind}-idx{arr.ndim}-ubyte.gz").write_bytes(gzip.compress(data))
    return {"dataset_dir": str(root), "image_size": 16, "batch_size": 4}


def lsun_data(root: Path) -> dict:
    import lmdb

    for split, n in (("train", 8), ("val", 4)):
        env = lmdb.open(str(root / f"bedroom_{split}_lmdb"), map_size=1 << 22)
        with env.begin(write=True) as txn:
            for i in range(n):
                txn.put(f"{i:04d}".encode(), png_bytes(rgb(20, 24, i)))
        env.close()
    return {"dataset_dir": str(root), "image_size": 16, "batch_size": 4}


def celebahq_data(root: Path) -> dict:
    archive = root / "celeba_hq.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(12):
            zf.writestr(f"data128x128/{i}.png", png_bytes(rgb(24, 24, i)))
    # every 3rd image held out: 8 train, 4 test
    return {"dataset_dir": str(archive), "image_size": 16, "batch_size": 4, "holdout_fraction": 1 / 3}


def brain3d_data(root: Path) -> dict:
    rs = np.random.RandomState(0)
    for i in range(6):
        volume = np.zeros((14, 12, 10), np.float32)
        volume[2:12, 2:10, 2:8] = 100.0 + 50.0 * rs.rand(10, 8, 6)
        nib.save(nib.Nifti1Image(volume, np.diag([1.0, 1.2, 1.5, 1.0])), root / f"subject{i}.nii.gz")
    # every 3rd volume held out: 4 train, 2 test
    return {"dataset_dir": str(root), "image_size": 16, "batch_size": 2, "holdout_fraction": 1 / 3}


def brain2d_data(root: Path) -> dict:
    return {"batch_size": 16}  # the embedded slices (46 train, 15 test) at their 64x64


DATA = {"gvae_brain2d": brain2d_data, "gvae_mnist": mnist_data, "gvae_lsun": lsun_data,
        "gvae_celebahq": celebahq_data, "gvae_brain3d": brain3d_data}


def configs(name: str, *extra: str) -> dict:
    folder = f"bundles/{name}/configs"
    files = [f"{folder}/train.yaml"] + [f"{folder}/{e}.yaml" for e in extra]
    return {"config_file": files if extra else files[0], "meta_file": f"{folder}/metadata.json", "bundle_root": f"bundles/{name}"}


@pytest.mark.parametrize("name", BUNDLES)
def test_bundle_train_evaluate_verify_export_infer(name, tmp_path, no_network):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data = DATA[name](data_dir)
    out = tmp_path / "run"

    # MONAI's properties of a training bundle are all there
    workflow = ConfigWorkflow(workflow_type="train", **configs(name), **TINY, **data, output_dir=str(tmp_path / "props"))
    workflow.initialize()
    assert workflow.check_properties() == []

    # one short epoch on the fixture data, validation included
    run("training", **configs(name), **TINY, **data, output_dir=str(out))
    model = load_gvae(out / "model.pt")
    ckpt = torch.load(out / "model.pt", weights_only=False)
    assert {"gvae", "critic", "optimizer", "critic_optimizer", "trainer"} <= set(ckpt)
    assert ckpt["trainer"]["iteration"] >= 1 and (out / "samples.png").is_file()

    # evaluate: metrics.json with finite values; the image size comes from the checkpoint
    eval_data = {k: v for k, v in data.items() if k != "image_size"}
    run("evaluating", **configs(name, "evaluate"), **eval_data, output_dir=str(out), **{"evaluate#max_samples": 8})
    report = json.loads((out / "metrics.json").read_text())
    metrics = report["metrics"]
    keys = default_metrics(model)
    assert all(isinstance(metrics[k], float) and math.isfinite(metrics[k]) for k in keys), metrics
    assert set(metrics) == set(default_metrics(model)) == set(report["definitions"]), report
    assert 2 <= report["num_images"] <= 8 and report["model_sha256"] == model.checksum
    # the values, recomputed by hand on the same held-out images (the bundle's validate#dataset, first 8, on the
    # checkpoint's grid) from the definitions
    parser = ConfigParser()
    parser.read_config(configs(name, "evaluate")["config_file"])
    parser.update({**eval_data, "output_dir": str(out), "bundle_root": f"bundles/{name}", "device": "$torch.device('cpu')"})
    dataset = parser.get_parsed_content("validate#dataset")
    held_out = torch.stack([torch.as_tensor(dataset[i]["image"]) for i in range(min(8, len(dataset)))]).float()
    assert held_out.shape[0] == report["num_images"]
    for key, value in expected_metrics(model, held_out, seed=0).items():
        assert metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-7), (name, key)
    assert metrics["elbo"] <= -metrics["kl"]  # E_q[log p(x|z)] <= 0 for a discretised likelihood
    with pytest.raises(RuntimeError) as refused:  # never overwritten silently (MONAI wraps the error)
        run("evaluating", **configs(name, "evaluate"), **eval_data, output_dir=str(out))
    assert isinstance(refused.value.__cause__, FileExistsError) and "metrics.json" in str(refused.value.__cause__)

    # offline metadata check, generator in/out check, TorchScript export of the generator
    verify_metadata(meta_file=configs(name)["meta_file"], filepath=SCHEMA_FILE)
    verify_net_in_out(net_id="generator_def", device="cpu", base_channels=4, **configs(name))
    ts_file = tmp_path / "model.ts"
    ckpt_export(net_id="generator_def", filepath=str(ts_file), ckpt_file=str(out / "model.pt"), key_in_ckpt="gvae",
                **configs(name), **{k: v for k, v in TINY.items() if k in ("base_channels", "latent_size")},
                image_size=model.image_size)
    exported = torch.jit.load(str(ts_file))
    z = torch.randn(3, model.latent_size)
    with torch.no_grad():
        torch.testing.assert_close(exported(z), model.decode(z))

    # synthesis: files marked synthetic
    synth = tmp_path / "synthetic"
    infer = {**configs(name), "config_file": f"bundles/{name}/configs/inference.yaml"}
    run("inferring", **infer, checkpoint=str(out / "model.pt"), output_dir=str(synth), num_samples=2)
    manifest = json.loads((synth / "manifest.json").read_text())
    assert manifest["synthetic"] is True and len(manifest["files"]) == 2
    first = synth / manifest["files"][0]["image"]
    if first.suffix == ".png":
        assert "SYNTHETIC" in Image.open(first).text["Description"]
    else:
        assert b"SYNTHETIC" in nib.load(first).header["descrip"].tobytes()


def test_resume_continues_iteration_and_optimiser_state(tmp_path):
    """The shared checkpoint block gives every bundle `--resume true` (here the MNIST bundle on an IDX fixture)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    out = tmp_path / "run"
    tiny = {**TINY, **mnist_data(data_dir), "output_dir": str(out)}  # 8 training images, batch 4: 2 iterations
    run("training", **configs("gvae_mnist"), **tiny)
    first = torch.load(out / "model.pt", weights_only=False)
    assert first["trainer"]["iteration"] == 2

    with pytest.raises(Exception) as refused:  # without --resume, a used output_dir is refused
        run("training", **configs("gvae_mnist"), **tiny)
    assert "already holds checkpoints" in repr(refused.value) + repr(refused.value.__cause__)

    run("training", **configs("gvae_mnist"), **{**tiny, "max_epochs": 2}, resume=True)
    second = torch.load(out / "model.pt", weights_only=False)
    assert second["trainer"]["iteration"] == 4 and second["trainer"]["max_epochs"] == 2
    # Adam's step counters went on from the loaded state (a fresh optimiser would be at 2)
    for key in ("optimizer", "critic_optimizer"):
        steps = {int(s["step"]) for s in second[key]["state"].values()}
        assert steps == {4}, (key, steps)
    assert not torch.equal(first["gvae"]["generator.trunk.project.weight"], second["gvae"]["generator.trunk.project.weight"])

    # --resume PATH: from that checkpoint (epoch 1), not the newest (model.pt, epoch 2); epoch 2 trained again
    # from the same state gives the same weights
    written = (out / "model.pt").stat().st_mtime_ns
    run("training", **configs("gvae_mnist"), **{**tiny, "max_epochs": 2}, resume=str(out / "checkpoint_epoch=1.pt"))
    third = torch.load(out / "model.pt", weights_only=True)
    assert (out / "model.pt").stat().st_mtime_ns != written  # trained and written again (resuming model.pt would not)
    assert third["trainer"]["iteration"] == 4
    for key in ("gvae", "critic"):
        for name, value in second[key].items():
            if torch.is_tensor(value):
                assert torch.equal(value, third[key][name]), (key, name)


POISON = """
# test-only third config: an infinite generator gradient in iteration 3 (the first time only)
poison:
  _target_: reliability_helpers.InfGradientOnce
  module: "@network_def"
  iteration: 3
train#trainer#train_handlers: "$@train#handlers + [@poison]"
"""


def _causes(error: BaseException) -> list[BaseException]:
    chain = [error]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    return chain


def test_divergence_guard_and_max_rollbacks_through_a_bundle_run(tmp_path):
    """The bundle's handler list carries the DivergenceGuard: an infinite gradient stops the run naming the step and
    iteration (the epoch-1 checkpoint kept, no model.pt); with --max_rollbacks 1 the run goes back to that checkpoint
    with learning rates x rollback_lr_factor and completes."""
    from monai_gvae.handlers import NonFiniteGradientError

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (tmp_path / "poison.yaml").write_text(POISON)
    files = {**configs("gvae_mnist"), "config_file": [configs("gvae_mnist")["config_file"], str(tmp_path / "poison.yaml")]}
    tiny = {**TINY, **mnist_data(data_dir), "max_epochs": 2}  # 8 images, batch 4: 2 iterations per epoch

    with pytest.raises(Exception) as stopped:
        run("training", **files, **tiny, output_dir=str(tmp_path / "stopped"))
    guard = next((e for e in _causes(stopped.value) if isinstance(e, NonFiniteGradientError)), None)
    assert guard is not None, repr(stopped.value)
    assert "encoder-generator step at iteration 3" in str(guard) and "generator.trunk.project.weight (inf)" in str(guard)
    written = os.listdir(tmp_path / "stopped")
    assert [n for n in written if n.endswith(".pt")] == ["checkpoint_epoch=1.pt"]  # the last good one; no model.pt

    out = tmp_path / "rolled_back"
    # the bundle's logging.conf replaces the root logger's handlers (caplog's among them): listen on the module's
    records: list[logging.LogRecord] = []
    listener = logging.Handler(logging.WARNING)
    listener.emit = records.append
    rollback_logger = logging.getLogger("monai_gvae.handlers.divergence")
    rollback_logger.addHandler(listener)
    try:
        run("training", **files, **tiny, output_dir=str(out), max_rollbacks=1)
    finally:
        rollback_logger.removeHandler(listener)
    rollbacks = [r.getMessage() for r in records if r.getMessage().startswith("rollback ")]
    assert len(rollbacks) == 1 and rollbacks[0].startswith("rollback 1/1") and "checkpoint_epoch=1.pt" in rollbacks[0]
    assert "NonFiniteGradient" in rollbacks[0] or "iteration 3" in rollbacks[0]
    final = torch.load(out / "model.pt", weights_only=True)
    assert final["trainer"]["iteration"] == 4
    for key in ("optimizer", "critic_optimizer"):  # learning_rate = critic_learning_rate = 1e-3, x0.5 once
        assert [g["lr"] for g in final[key]["param_groups"]] == [0.5e-3], key
    assert all(torch.isfinite(v).all() for v in final["gvae"].values() if torch.is_tensor(v) and v.is_floating_point())


def test_bundles_share_one_copy_of_the_common_blocks():
    """The trainer, handlers and optimisers have one source (bundles/common), written into each bundle by
    bundles/common/generate.py; a bundle's own part of train.yaml does not define them again."""
    import subprocess
    import sys

    check = subprocess.run([sys.executable, "bundles/common/generate.py", "--check"], cwd=REPO, capture_output=True,
                           text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    for name in BUNDLES:
        text = (REPO / "bundles" / name / "configs" / "train.yaml").read_text()
        own, _, generated = text.partition("# ---- generated by bundles/common/generate.py from bundles/common/train.yaml")
        assert generated, name
        assert "build_trainer" not in own and "CheckpointSaver" not in own and "checkpoint_handler" not in own
        assert "monai_gvae.bundle.build_trainer" in generated and "GVAETrainer" in generated
        for extra in ("evaluate", "multi_gpu_train", "inference"):
            assert f"from bundles/common/{extra}.yaml" in (REPO / "bundles" / name / "configs" / f"{extra}.yaml").read_text()
    meta = {name: json.loads((REPO / "bundles" / name / "configs" / "metadata.json").read_text()) for name in BUNDLES}
    assert all(m["network_data_format"]["inputs"]["image"]["format"] == "latent" for m in meta.values())
    assert os.path.isfile(SCHEMA_FILE)
