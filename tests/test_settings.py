"""Typed values inside, text only at the edge: one set of boolean words, the bundles' settings component, and the
engines, handlers and transforms refusing strings (monai_gvae.utils, monai_gvae.bundle.settings)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from monai.data import DataLoader

from monai_gvae.bundle import BundleSettings, build_checkpoint_handler, build_trainer, convert_setting
from monai_gvae.bundle.settings import SETTING_CONVERTERS
from monai_gvae.cli import parse_overrides
from monai_gvae.engines import GVAETrainer, configure_backends, maybe_compile
from monai_gvae.handlers import GVAECheckpointHandler
from monai_gvae.networks import GVAE, GVAECritic, prepare_network
from monai_gvae.transforms import GVAESamplePool, GVAESynthesize
from monai_gvae.utils import check_bool, flag, flag_word, module_device

from conftest import REPO_ROOT, subprocess_env

BRAIN2D = "bundles/gvae_brain2d"


def test_one_set_of_boolean_words():
    for word in ("true", "YES", " on ", "1"):
        assert flag_word(word) is True and flag(word) is True
    for word in ("false", "No", "OFF", "0"):
        assert flag_word(word) is False and flag(word) is False
    assert flag_word("ture") is None and flag_word("") is None
    with pytest.raises(ValueError, match="amp must be true or false, got 'ture'"):
        flag("ture", "amp")
    # the command line reads the same words in `monai-gvae train` overrides; numbers stay numbers
    assert parse_overrides(["--amp", "on", "--compile", "No", "--max_epochs", "1", "--critic_chunk_size", "null"]) == {
        "amp": True, "compile": False, "max_epochs": 1, "critic_chunk_size": None,
    }


def test_check_bool_refuses_strings_naming_the_argument():
    assert check_bool(True, "amp") is True and check_bool(0, "amp") is False
    with pytest.raises(TypeError, match="amp must be a bool, got the string 'false'"):
        check_bool("false", "amp")
    with pytest.raises(TypeError, match="channels_last must be a bool, got NoneType"):
        check_bool(None, "channels_last")


def test_bundle_settings_convert_each_declared_id_once():
    settings = BundleSettings(amp="true", channels_last="off", pin_memory=False, critic_chunk_size="4",
                              resume="latest", overwrite="1")
    assert settings.as_dict() == {"amp": True, "channels_last": False, "pin_memory": False, "critic_chunk_size": 4,
                                  "resume": True, "overwrite": True}
    assert convert_setting("critic_chunk_size", "null") is None and convert_setting("critic_chunk_size", 2) == 2
    assert convert_setting("resume", "false") is False and convert_setting("resume", "none") is False
    assert convert_setting("resume", "runs/a/checkpoint_epoch=2.pt") == "runs/a/checkpoint_epoch=2.pt"
    with pytest.raises(ValueError, match="amp must be true or false, got 'ture'"):
        BundleSettings(amp="ture")
    with pytest.raises(ValueError, match="critic_chunk_size must be a positive integer or null, got 'two'"):
        convert_setting("critic_chunk_size", "two")
    with pytest.raises(KeyError, match="no type is declared for the bundle setting 'learning_rate'"):
        BundleSettings(learning_rate="0.1")
    # every boolean id a bundle config reads through a settings component has a declared type
    for name in ("amp", "channels_last", "compile", "gradient_checkpointing", "cudnn_benchmark", "pin_memory",
                 "non_blocking", "float_outputs", "overwrite", "conditional", "freeze_encoder"):
        assert SETTING_CONVERTERS[name] is flag, name


def tiny_trainer_arguments(**kwargs):
    gvae = GVAE(spatial_dims=2, in_channels=1, image_size=16, latent_size=4, architecture="conv", base_channels=4,
                max_channels=8)
    critic = GVAECritic(spatial_dims=2, in_channels=1, image_size=16, architecture="conv", base_channels=4,
                        max_channels=8)
    loader = DataLoader([{"image": torch.zeros(1, 16, 16)}] * 2, batch_size=2)
    return dict(device="cpu", max_epochs=1, train_data_loader=loader, network=gvae, critic=critic,
                optimizer=torch.optim.Adam(gvae.parameters()), critic_optimizer=torch.optim.Adam(critic.parameters()),
                **kwargs)


@pytest.mark.parametrize("name", ["amp", "non_blocking", "check_finite", "float_outputs"])
def test_trainer_refuses_a_string_flag(name):
    with pytest.raises(TypeError, match=f"{name} must be a bool, got the string 'false'"):
        GVAETrainer(**tiny_trainer_arguments(**{name: "false"}))
    # the bundles' entry converts the same text once, before the trainer sees it
    trainer = build_trainer(**tiny_trainer_arguments(**{name: "false", "critic_chunk_size": "null"}))
    assert getattr(trainer, name) is False and trainer.critic_chunk_size is None


def test_checkpoint_handler_refuses_strings(tmp_path):
    save_dict = {"gvae": GVAE(spatial_dims=2, in_channels=1, image_size=16, latent_size=4, architecture="conv")}
    for name in ("overwrite", "save_final", "epoch_level", "check_finite"):
        with pytest.raises(TypeError, match=f"{name} must be a bool, got the string 'false'"):
            GVAECheckpointHandler(tmp_path, save_dict, **{name: "false"})
    with pytest.raises(TypeError, match="resume must be a bool or a checkpoint path, got the string 'false'"):
        GVAECheckpointHandler(tmp_path, save_dict, resume="false")
    assert GVAECheckpointHandler(tmp_path, save_dict, resume="latest").resume is True  # the documented sentinel
    handler = build_checkpoint_handler(save_dir=tmp_path, save_dict=save_dict, resume="false", overwrite="yes")
    assert handler.resume is False and handler.overwrite is True


def test_transforms_and_speed_settings_refuse_strings():
    gvae = GVAE(spatial_dims=2, in_channels=1, image_size=16, latent_size=4, architecture="conv", base_channels=4,
                max_channels=8)
    with pytest.raises(TypeError, match="channels_last must be a bool"):
        prepare_network(gvae, channels_last="false")
    with pytest.raises(TypeError, match="amp must be a bool"):
        GVAESamplePool(gvae, amp="false")
    with pytest.raises(TypeError, match="channels_last must be a bool"):
        GVAESamplePool(gvae, channels_last="false")
    with pytest.raises(TypeError, match="resize must be a bool"):
        GVAESynthesize(gvae, resize="false")
    with pytest.raises(TypeError, match="enabled must be a bool"):
        maybe_compile(gvae.encoder, "false")
    with pytest.raises(TypeError, match="cudnn_benchmark must be a bool"):
        configure_backends("cpu", cudnn_benchmark="false")  # checked on a CPU too, where it changes nothing


def run_bundle(tmp_path, *overrides: str) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run probe`` on gvae_brain2d's train.yaml (tiny networks), as a user types it:
    every override reaches the config as text, through fire."""
    folder = f"{BRAIN2D}/configs"
    cmd = [
        sys.executable, "-m", "monai.bundle", "run", "probe", "--config_file", f"{folder}/train.yaml",
        "--meta_file", f"{folder}/metadata.json", "--bundle_root", BRAIN2D, "--output_dir", str(tmp_path / "run"),
        "--base_channels", "4", "--max_channels", "8", "--latent_size", "4", *overrides,
    ]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)


def test_bundle_command_line_false_turns_channels_last_off(tmp_path):
    probe = ("$print('PROBE', @network.encoder.trunk.body[0].conv.weight.is_contiguous(memory_format="
             "torch.channels_last), @train#trainer.amp, @train#trainer.critic_chunk_size, type(@settings.amp).__name__)")
    result = run_bundle(tmp_path, "--channels_last", "false", "--amp", "true", "--critic_chunk_size", "2",
                        "--probe", probe)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "PROBE False True 2 bool" in result.stdout
    # the default (channels_last: true) is on, so "false" above really switched it off
    result = run_bundle(tmp_path, "--probe", "$print('PROBE', @network.encoder.trunk.body[0].conv.weight"
                        ".is_contiguous(memory_format=torch.channels_last))")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "PROBE True" in result.stdout


def test_bundle_command_line_typo_stops_with_a_clear_error(tmp_path):
    result = run_bundle(tmp_path, "--amp", "ture", "--probe", "$print('PROBE reached')")
    assert result.returncode != 0
    assert "amp must be true or false, got 'ture'" in result.stderr
    assert "PROBE reached" not in result.stdout
    assert not os.path.exists(tmp_path / "run" / "model.pt")


def test_module_device_reads_parameters_then_buffers_and_falls_back_to_the_host():
    assert module_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    buffered = torch.nn.Module()
    buffered.register_buffer("scale", torch.ones(1, device="meta"))  # a buffer alone says where the module runs
    assert module_device(buffered) == torch.device("meta")
    assert module_device(torch.nn.Linear(2, 2, device="meta")) == torch.device("meta")
    assert module_device(torch.nn.ReLU()) == torch.device("cpu")  # no tensors: the host
    assert module_device(lambda x: x) == torch.device("cpu")
