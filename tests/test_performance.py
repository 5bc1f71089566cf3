"""Speed options: gradient checkpointing, channels-last, torch.compile wrapper, backend flags, lazy loss outputs,
their bundle config ids, and the throughput benchmark's quick mode."""

import copy
import json
import os
import subprocess
import sys

import pytest
import torch
from monai.bundle import ConfigParser

from conftest import subprocess_env
from monai_gvae.engines import (
    channels_last_format,
    configure_backends,
    loss_terms,
    maybe_compile,
    prepare_network,
)
from monai_gvae.losses import gradient_penalty
from monai_gvae.networks import GVAE, GVAECritic, GVAEGeneratorWrapper, load_gvae
from test_trainer import make_trainer

TINY = {"base_channels": 4, "max_channels": 8}


def _train_step(gvae, critic, x, seed=1):
    """Forward + backward through everything the trainer differentiates, including the penalty's double backward."""
    torch.manual_seed(seed)  # dropout masks and reparameterisation noise
    recon, mu, logvar = gvae(x)
    gp = gradient_penalty(critic, x, recon.detach(), torch.Generator().manual_seed(seed))
    loss = recon.abs().mean() + critic(recon).mean() + gp + mu.pow(2).mean() + logvar.mean()
    loss.backward()
    grads = [p.grad.clone() for p in list(gvae.parameters()) + list(critic.parameters())]
    buffers = [b.clone() for b in list(gvae.buffers()) + list(critic.buffers())]
    return recon.detach(), gp.detach(), grads, buffers


@pytest.mark.parametrize(
    "spatial_dims,architecture", [(2, "resnet"), (3, "conv")], ids=["2d-resnet", "3d-conv"]
)
def test_gradient_checkpointing_identical_outputs_gradients_and_running_stats(spatial_dims, architecture):
    torch.manual_seed(0)
    # batch norm (running statistics must not be updated twice by the recomputation) and dropout (same masks)
    gvae = GVAE(spatial_dims, 3, 16, 4, architecture, dropout=0.2, image_channels=1, num_classes=2, **TINY)
    critic = GVAECritic(spatial_dims, 3, 16, architecture, norm="batch", dropout=0.1, **TINY)
    gvae_ck = copy.deepcopy(gvae).set_gradient_checkpointing(True)
    critic_ck = copy.deepcopy(critic)
    critic_ck.trunk.gradient_checkpointing = True
    x = torch.rand((3, 3) + (16,) * spatial_dims) * 2 - 1

    plain = _train_step(gvae, critic, x)
    ckpt = _train_step(gvae_ck, critic_ck, x)
    assert torch.equal(plain[0], ckpt[0]) and torch.equal(plain[1], ckpt[1])
    assert all(torch.equal(a, b) for a, b in zip(plain[2], ckpt[2]))
    assert all(torch.equal(a, b) for a, b in zip(plain[3], ckpt[3]))  # running means/vars, batch counters
    assert gvae.encoder.trunk.levels == gvae_ck.encoder.trunk.levels and len(gvae.encoder.trunk.levels) > 1


def _saved_bytes(fn):
    """Bytes of the tensors autograd keeps for backward while ``fn`` runs its forward."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return total, out


def test_gradient_checkpointing_keeps_fewer_activations_and_is_off_without_grad():
    torch.manual_seed(0)
    gvae = GVAE(3, 2, 16, 4, "resnet", image_channels=1, num_classes=2, **TINY)
    x = torch.rand(2, 2, 16, 16, 16)
    full, out_full = _saved_bytes(lambda: gvae(x)[0])
    gvae.set_gradient_checkpointing(True)
    kept, out_ck = _saved_bytes(lambda: gvae(x)[0])
    assert kept < 0.5 * full, (kept, full)
    # not a configuration: the state dict, and what load_gvae rebuilds, are the same
    assert "gradient_checkpointing" not in gvae.config
    assert set(gvae.state_dict()) == set(GVAE(3, 2, 16, 4, "resnet", image_channels=1, num_classes=2, **TINY).state_dict())
    with torch.no_grad():  # inference runs the plain path
        gvae.eval()
        assert torch.equal(gvae.decode(torch.zeros(1, 4)), gvae.set_gradient_checkpointing(False).decode(torch.zeros(1, 4)))


def test_gradient_checkpointing_constructor_arguments_reach_every_trunk(tmp_path):
    gvae = GVAE(2, 1, 16, 4, "conv", gradient_checkpointing=True, **TINY)
    critic = GVAECritic(2, 1, 16, "conv", gradient_checkpointing=True, **TINY)
    assert gvae.encoder.trunk.gradient_checkpointing and gvae.generator.trunk.gradient_checkpointing
    assert critic.trunk.gradient_checkpointing
    torch.save(gvae.state_dict(), tmp_path / "m.pt")
    assert not load_gvae(tmp_path / "m.pt").encoder.trunk.gradient_checkpointing
    # the bundles' TorchScript export (ckpt_export generator_def) still compiles: the checkpointed path is left out
    scripted = torch.jit.script(GVAEGeneratorWrapper(gvae).eval())
    z = torch.randn(2, 4)
    assert torch.equal(scripted(z), GVAEGeneratorWrapper(gvae).eval()(z))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_prepare_network_channels_last_same_outputs(spatial_dims):
    torch.manual_seed(0)
    critic = GVAECritic(spatial_dims, 2, 16, "conv", **TINY)
    fast = prepare_network(copy.deepcopy(critic), "cpu", channels_last=True)
    fmt = channels_last_format(spatial_dims)
    weights = [p for p in fast.parameters() if p.ndim == spatial_dims + 2]
    assert weights and all(p.is_contiguous(memory_format=fmt) for p in weights)
    x = torch.rand((2, 2) + (16,) * spatial_dims)
    torch.testing.assert_close(fast(x), critic(x), rtol=1e-4, atol=1e-5)
    assert prepare_network(critic, None) is critic
    assert not critic.trunk.body[0].conv.weight.is_contiguous(memory_format=fmt)  # the original is untouched


def test_performance_helpers_reject_bad_input_and_compile_only_when_enabled(monkeypatch):
    with pytest.raises(ValueError, match="2 or 3 spatial dims"):
        channels_last_format(1)
    with pytest.raises(ValueError, match="spatial_dims"):
        prepare_network(torch.nn.Conv2d(1, 1, 3), channels_last=True)
    conv = prepare_network(torch.nn.Conv2d(1, 2, 3), channels_last=True, spatial_dims=2)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    gen = GVAE(2, 1, 16, 4, "conv", **TINY).generator
    assert maybe_compile(gen, False) is gen and maybe_compile(None, True) is None
    # importing torch._dynamo takes seconds: check the call, not the compiler
    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: ("compiled", module, kwargs))
    assert maybe_compile(gen, True, mode="max-autotune") == ("compiled", gen, {"mode": "max-autotune"})


def test_configure_backends_only_touches_cuda_flags():
    before = (torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision())
    assert configure_backends("cpu") == {}
    assert (torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()) == before
    try:
        flags = configure_backends(torch.device("cuda"), cudnn_benchmark=True, tf32=True)
        assert flags == {"cudnn.benchmark": True, "float32_matmul_precision": "high"}
        assert torch.backends.cudnn.benchmark and torch.get_float32_matmul_precision() == "high"
    finally:
        torch.backends.cudnn.benchmark = before[0]
        torch.set_float32_matmul_precision(before[1])


def test_float_outputs_false_keeps_tensors_with_the_same_values():
    outputs = []
    for float_outputs in (True, False):
        trainer, _, _ = make_trainer(float_outputs=float_outputs, seed=5)
        trainer.run()
        outputs.append(trainer.state.output)
    eager, lazy = outputs
    assert all(isinstance(eager[k], float) for k in ("loss_d", "gp", "loss_g"))
    assert all(isinstance(lazy[k], torch.Tensor) and lazy[k].ndim == 0 for k in ("loss_d", "gp", "loss_g"))
    assert loss_terms(lazy) == loss_terms(eager)  # read as floats only when a handler asks


BUNDLES = ("gvae_brain2d", "gvae_brain3d", "gvae_celebahq", "gvae_lsun", "gvae_mnist")
SPEED_IDS = ("channels_last", "compile", "gradient_checkpointing", "cudnn_benchmark", "pin_memory", "non_blocking",
             "float_outputs", "critic_chunk_size")


@pytest.mark.parametrize("bundle", BUNDLES)
def test_every_bundle_defines_the_speed_ids(repo_root, bundle):
    parser = ConfigParser()
    parser.read_config(os.path.join(repo_root, "bundles", bundle, "configs", "train.yaml"))
    for key in SPEED_IDS:
        assert key in parser, f"{bundle} lacks {key}"
    assert parser["channels_last"] is True and parser["compile"] is False and parser["gradient_checkpointing"] is False
    assert parser["critic_chunk_size"] is None


def test_bundle_speed_ids_reach_networks_loader_and_trainer(repo_root, monkeypatch, tmp_path):
    monkeypatch.chdir(repo_root)  # the shared blocks are included by macros relative to the working directory
    parser = ConfigParser()
    parser.read_config(os.path.join("bundles", "gvae_brain2d", "configs", "train.yaml"))
    parser.update({"base_channels": 4, "max_channels": 8, "latent_size": 4, "gradient_checkpointing": True,
                   "float_outputs": False, "critic_chunk_size": 2, "device": "$torch.device('cpu')",
                   "output_dir": str(tmp_path)})
    network = parser.get_parsed_content("network")
    critic = parser.get_parsed_content("critic_network")
    assert network.encoder.trunk.gradient_checkpointing and critic.trunk.gradient_checkpointing
    assert network.encoder.trunk.body[0].conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert parser.get_parsed_content("train#dataloader").pin_memory == torch.cuda.is_available()
    trainer = parser.get_parsed_content("train#trainer")
    assert trainer.float_outputs is False and trainer.encoder is network.encoder  # compile off: the module itself
    assert trainer.critic_chunk_size == 2
    assert any("configure_backends" in str(line) for line in parser["initialize"])


def test_command_line_flag_strings_are_read_as_booleans(repo_root, monkeypatch, tmp_path):
    """`python -m monai.bundle run ... --amp true --channels_last false` hands the bundle the strings "true" and
    "false" (fire reads only Python literals); "false" must switch off, and a typo must fail, not count as on."""
    monkeypatch.chdir(repo_root)
    parser = ConfigParser()
    parser.read_config(os.path.join("bundles", "gvae_brain2d", "configs", "train.yaml"))
    parser.update({"base_channels": 4, "max_channels": 8, "latent_size": 4, "device": "$torch.device('cpu')",
                   "output_dir": str(tmp_path), "channels_last": "false", "gradient_checkpointing": "True",
                   "amp": "true", "float_outputs": "FALSE", "compile": "false", "pin_memory": "false"})
    network = parser.get_parsed_content("network")
    assert network.encoder.trunk.body[0].conv.weight.is_contiguous()  # channels-last off
    assert not network.encoder.trunk.body[0].conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert network.encoder.trunk.gradient_checkpointing is True
    assert parser.get_parsed_content("train#dataloader").pin_memory is False
    trainer = parser.get_parsed_content("train#trainer")
    assert trainer.amp is True and trainer.float_outputs is False and trainer.encoder is network.encoder
    parser.update({"amp": "ture"})
    with pytest.raises(RuntimeError) as error:  # MONAI wraps the ValueError; the traceback shows both
        parser.get_parsed_content("train#trainer", lazy=False)
    assert "amp must be true or false, got 'ture'" in str(error.value.__cause__)
    # a nested override (--train#trainer#amp false) reaches GVAETrainer itself as a string
    parser.update({"amp": True, "train#trainer#amp": "false"})
    assert parser.get_parsed_content("train#trainer", lazy=False).amp is False
    from monai_gvae.bundle import flag

    assert [flag(v) for v in (True, 0, "Yes", " off ", "1")] == [True, False, True, False, True]
    with pytest.raises(ValueError, match="overwrite must be true or false, got 'maybe'"):
        flag("maybe", "overwrite")


def test_throughput_script_quick_prints_every_figure(repo_root, tmp_path):
    out = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, os.path.join("examples", "benchmarks", "throughput.py"), "--quick", "--json", str(out)],
        cwd=repo_root, env=subprocess_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for figure in ("(a) engine overhead", "(b) achieved FLOP/s", "(options)", "(c) synthesis", "(d) segmentation",
                   "(e) peak memory"):
        assert figure in proc.stdout, figure
    results = json.loads(out.read_text())
    assert results["a"]["max_weight_diff"] == 0.0  # the plain loop made exactly the trainer's updates
    assert results["a"]["trainer_it_s"] > 0 and results["b"]["gflop_per_iteration"] > 0
    assert results["a_fixed_cost"]["trainer_ms"] > 0 and results["a_fixed_cost"]["plain_ms"] > 0
    assert "the engine adds" in proc.stdout
    assert results["c"]["pooled_items_s"] > 0 and results["c"]["transform_pool_items_s"] > 0
    assert results["d"]["measured"] and results["d"]["with_s"] > 0 and results["d"]["without_s"] > 0
    assert all(row["rows"] for row in results["e"]) and results["machine"]["cpus"] >= 1
    rows = results["e"][0]["rows"]  # peak bytes from allocation events: deterministic
    assert rows["ckpt=True,amp=False,chunks=True"][0] < rows["ckpt=True,amp=False,chunks=False"][0]
