"""The VAE and WGAN-GP baselines: the same trainer and bundle with one configuration id changed (`objective`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "gvae_brain2d"
TINY = {"max_epochs": 1, "base_channels": 4, "max_channels": 8, "latent_size": 8, "batch_size": 8}


def _parser(objective: str, output_dir: Path) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.yaml"))
    parser.read_meta(str(BUNDLE / "configs" / "metadata.json"))
    parser.update({"bundle_root": str(BUNDLE), "output_dir": str(output_dir), "objective": objective, **TINY})
    return parser


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}


def _changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> bool:
    after = module.state_dict()
    return any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("objective", ["vae", "wgan_gp"])
def test_baseline_trains_only_its_networks(objective, tmp_path):
    parser = _parser(objective, tmp_path)
    parser.get_parsed_content("initialize")
    trainer = parser.get_parsed_content("train#trainer")
    gvae, critic = parser.get_parsed_content("network"), parser.get_parsed_content("critic_network")
    assert trainer.objective == objective
    before = {"encoder": _snapshot(gvae.encoder), "generator": _snapshot(gvae.generator), "critic": _snapshot(critic)}
    critic_calls = []
    critic.register_forward_hook(lambda *_: critic_calls.append(1))
    outputs = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(dict(e.state.output)))
    trainer.run()
    assert trainer.state.iteration >= 2 and outputs
    assert _changed(before["generator"], gvae.generator)
    if objective == "vae":
        # no critic: never called, never updated, no adversarial or critic terms
        assert not critic_calls
        assert not _changed(before["critic"], critic)
        assert _changed(before["encoder"], gvae.encoder)
        assert all(o["loss_d"] == 0.0 and o["loss_adv"] == 0.0 and o["gp"] == 0.0 for o in outputs)
        assert any(o["loss_rec"] > 0 for o in outputs)
    else:
        # no encoder: untouched; no reconstruction or KL terms; the critic trains
        assert not _changed(before["encoder"], gvae.encoder)
        assert _changed(before["critic"], critic)
        assert all(o["loss_rec"] == 0.0 and o["loss_kl"] == 0.0 for o in outputs)
        assert any(o["gp"] > 0 for o in outputs)


def test_baseline_is_one_override_on_the_command_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--config_file", str(BUNDLE / "configs" / "train.yaml"),
        "--meta_file", str(BUNDLE / "configs" / "metadata.json"),
        "--bundle_root", str(BUNDLE), "--output_dir", str(tmp_path),
        "--objective", "wgan_gp",
    ] + [a for k, v in TINY.items() for a in (f"--{k}", str(v))]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "model.pt").is_file() and (tmp_path / "samples.png").is_file()


def test_unknown_objective_is_rejected(tmp_path):
    parser = _parser("vaegan", tmp_path)
    with pytest.raises(Exception) as excinfo:
        parser.get_parsed_content("train#trainer")
    assert "objective must be one of" in str(excinfo.value) + str(excinfo.value.__cause__)
