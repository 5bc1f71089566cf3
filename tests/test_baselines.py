"""The baselines: VAE, WGAN-GP, VAE-GAN and alpha-GAN are the same trainer and bundle with one configuration id changed
(`objective`); VAE-GAN's feature-matching loss, alpha-GAN's code critic and its penalty on latent interpolates; the
code critic in checkpoints and resumption."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser

from monai_gvae.engines import OBJECTIVES, GVAETrainer
from monai_gvae.handlers import DivergenceGuard, GVAECheckpointHandler
from monai_gvae.losses import CriticLoss, FeatureMatchingLoss
from monai_gvae.networks import GVAE, CodeCritic, GVAECritic, GVAEGenerator

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "gvae_brain2d"
TINY = {"max_epochs": 1, "base_channels": 4, "max_channels": 8, "latent_size": 8, "batch_size": 8}
NETS = {"architecture": "conv", "base_channels": 4, "max_channels": 8}

pytestmark = [pytest.mark.filterwarnings("ignore:parsing config_file"), pytest.mark.filterwarnings("ignore:No hash value")]


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


@pytest.mark.parametrize("objective", ["vae", "wgan_gp", "vaegan", "alpha_gan"])
def test_baseline_trains_only_its_networks(objective, tmp_path):
    parser = _parser(objective, tmp_path)
    parser.get_parsed_content("initialize")
    trainer = parser.get_parsed_content("train#trainer")
    gvae, critic = parser.get_parsed_content("network"), parser.get_parsed_content("critic_network")
    code_critic = parser.get_parsed_content("code_critic_network")
    assert trainer.objective == objective
    # the code critic (and its optimiser) exist for alpha-GAN only
    assert (code_critic is not None) == (objective == "alpha_gan") and trainer.code_critic is code_critic
    assert (parser.get_parsed_content("code_critic_optimizer") is not None) == (objective == "alpha_gan")
    before = {"encoder": _snapshot(gvae.encoder), "generator": _snapshot(gvae.generator), "critic": _snapshot(critic)}
    if code_critic is not None:
        before["code_critic"] = _snapshot(code_critic)
    critic_calls = []
    critic.register_forward_hook(lambda *_: critic_calls.append(1))
    outputs = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(dict(e.state.output)))
    trainer.run()
    assert trainer.state.iteration >= 2 and outputs
    assert _changed(before["generator"], gvae.generator)
    if objective != "alpha_gan":
        assert all(o["loss_code"] == 0.0 and o["loss_code_critic"] == 0.0 and o["code_gp"] == 0.0 for o in outputs)
    if objective == "vae":
        # no critic: never called, never updated, no adversarial or critic terms
        assert not critic_calls
        assert not _changed(before["critic"], critic)
        assert _changed(before["encoder"], gvae.encoder)
        assert all(o["loss_d"] == 0.0 and o["loss_adv"] == 0.0 and o["gp"] == 0.0 for o in outputs)
        assert any(o["loss_rec"] > 0 for o in outputs)
    elif objective == "wgan_gp":
        # no encoder: untouched; no reconstruction or KL terms; the critic trains
        assert not _changed(before["encoder"], gvae.encoder)
        assert _changed(before["critic"], critic)
        assert all(o["loss_rec"] == 0.0 and o["loss_kl"] == 0.0 for o in outputs)
        assert any(o["gp"] > 0 for o in outputs)
    elif objective == "vaegan":
        # GVAE's three networks and terms, with the reconstruction measured on the critic's features, not pixels
        assert _changed(before["encoder"], gvae.encoder) and _changed(before["critic"], critic)
        assert all(o["loss_kl"] > 0 and o["gp"] > 0 and o["loss_rec"] > 0 for o in outputs)
        last = outputs[-1]
        pixel_l1 = float((last["pred"] - last["image"]).abs().mean())
        assert abs(last["loss_rec"] - pixel_l1) > 1e-3
    else:
        # alpha-GAN: encoder (its mean, not its log-variance head), generator, critic and code critic all train;
        # no KL term, the code critic's terms instead
        assert _changed(before["critic"], critic) and _changed(before["code_critic"], code_critic)
        mean_head = {k: v for k, v in before["encoder"].items() if not k.startswith("logvar.")}
        assert _changed(mean_head, gvae.encoder)
        assert not _changed({k: v for k, v in before["encoder"].items() if k.startswith("logvar.")}, gvae.encoder)
        assert all(o["loss_kl"] == 0.0 and o["code_gp"] > 0 and o["loss_code"] != 0.0 for o in outputs)
        assert all(o["loss_rec"] > 0 and o["gp"] > 0 for o in outputs)


def _volumes(root: Path) -> dict:
    """Six tiny NIfTI volumes (4 train, 2 held out), as tests/test_bundles.py's 3D fixture."""
    rs = np.random.RandomState(0)
    root.mkdir(parents=True)
    for i in range(6):
        volume = np.zeros((14, 12, 10), np.float32)
        volume[2:12, 2:10, 2:8] = 100.0 + 50.0 * rs.rand(10, 8, 6)
        nib.save(nib.Nifti1Image(volume, np.diag([1.0, 1.2, 1.5, 1.0])), root / f"subject{i}.nii.gz")
    return {"dataset_dir": str(root), "image_size": 16, "batch_size": 2, "holdout_fraction": 1 / 3}


@pytest.mark.parametrize(
    "bundle, objective",
    [("gvae_brain2d", "wgan_gp"), ("gvae_brain2d", "vaegan"), ("gvae_brain2d", "alpha_gan"),
     # 3D: the conv architecture's four-convolution encoder and critics (Kwon et al.'s setting)
     ("gvae_brain3d", "vaegan"), ("gvae_brain3d", "alpha_gan")],
)
def test_baseline_is_one_override_on_the_command_line(bundle, objective, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    folder = REPO / "bundles" / bundle
    sizes = TINY if bundle == "gvae_brain2d" else {**TINY, **_volumes(tmp_path / "volumes")}
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--config_file", str(folder / "configs" / "train.yaml"),
        "--meta_file", str(folder / "configs" / "metadata.json"),
        "--bundle_root", str(folder), "--output_dir", str(out),
        "--objective", objective, "--progress", "false",
    ] + [a for k, v in sizes.items() for a in (f"--{k}", str(v))]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "model.pt").is_file() and (out / "samples.png").is_file()
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert ckpt["trainer"]["iteration"] >= 2 and ckpt["config"]["trainer"]["objective"] == objective
    # alpha-GAN's code critic and its optimiser are in the checkpoint (the trainer's state), for the others nothing new
    assert ("code_critic" in ckpt["trainer"]) == (objective == "alpha_gan")
    if objective == "alpha_gan":
        assert {"network", "optimizer"} == set(ckpt["trainer"]["code_critic"])
        assert ckpt["trainer"]["code_critic"]["optimizer"]["state"]  # it took Adam steps


def test_unknown_objective_is_rejected(tmp_path):
    parser = _parser("bigan", tmp_path)
    with pytest.raises(Exception) as excinfo:
        parser.get_parsed_content("train#trainer")
    assert "objective must be one of" in str(excinfo.value) + str(excinfo.value.__cause__)


# ------------------------------------------------------------------------------------------ networks and losses
def test_code_critic_scores_latent_vectors_and_rejects_other_shapes():
    critic = CodeCritic(latent_size=6, hidden_channels=(10, 10))
    assert critic(torch.randn(3, 6)).shape == (3, 1)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in critic.modules())
    with pytest.raises(ValueError, match=r"shape \(N, 6\), got \(3, 5\)"):
        critic(torch.randn(3, 5))
    with pytest.raises(ValueError, match="latent_size"):
        CodeCritic(0)
    with pytest.raises(ValueError, match="hidden_channels"):
        CodeCritic(4, hidden_channels=(8, 0))


@pytest.mark.parametrize("architecture", ["conv", "resnet"])
def test_critic_features_are_intermediate_maps_and_leave_the_scores_alone(architecture):
    torch.manual_seed(0)
    critic = GVAECritic(2, 1, 32, architecture=architecture, base_channels=4, max_channels=16)
    x = torch.randn(2, 1, 32, 32)
    scores = critic(x)
    assert critic.num_feature_layers == 4
    shapes = [tuple(critic.features(x, layer=i).shape[2:]) for i in range(4)]
    assert shapes[0] == (16, 16) and shapes[1] == (8, 8)
    # the deepest map is the one the linear head scores; features() changed nothing of forward()
    deepest = critic.features(x)
    assert torch.allclose(critic.score(deepest.flatten(1)), scores, atol=1e-6)
    assert torch.equal(critic(x), scores) and torch.equal(critic.features(x, layer=-2), critic.features(x, layer=2))
    with pytest.raises(ValueError, match=r"layer must be an integer in \[-4, 4\)"):
        critic.features(x, layer=4)


def test_critic_features_with_gradient_checkpointing_are_the_same():
    torch.manual_seed(0)
    plain = GVAECritic(3, 1, 16, **NETS)
    checkpointed = GVAECritic(3, 1, 16, **NETS, gradient_checkpointing=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 1, 16, 16, 16, requires_grad=True)
    a, b = plain.features(x, layer=1), checkpointed.features(x, layer=1)
    assert torch.allclose(a, b)
    (ga,) = torch.autograd.grad(a.square().sum(), x)
    (gb,) = torch.autograd.grad(b.square().sum(), x)
    assert torch.allclose(ga, gb, atol=1e-6)


@pytest.mark.parametrize("distance", ["mse", "l1"])
@pytest.mark.parametrize("normalize", [True, False])
def test_feature_matching_is_zero_for_identical_inputs(distance, normalize):
    torch.manual_seed(0)
    critic = GVAECritic(2, 1, 16, **NETS)
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    loss = FeatureMatchingLoss(layer=1, distance=distance, normalize=normalize)
    assert float(loss(critic, x.clone(), x).detach()) == 0.0
    assert float(loss(critic, x.flip(-1), x).detach()) > 0.0


def test_feature_matching_gradient_reaches_the_generator_through_the_reconstruction_only():
    torch.manual_seed(0)
    generator = GVAEGenerator(2, 1, 16, latent_size=8, **NETS)
    critic = GVAECritic(2, 1, 16, **NETS)
    real = (torch.rand(4, 1, 16, 16) * 2 - 1).requires_grad_(True)
    recon = generator(torch.randn(4, 8))
    recon.retain_grad()
    FeatureMatchingLoss()(critic, recon, real).backward()
    assert real.grad is None  # the target's features carry no graph
    assert recon.grad is not None and recon.grad.abs().sum() > 0
    assert all(p.grad is not None for p in generator.parameters() if p.requires_grad)
    # its value is the relative squared error of the critic's features (the target's scale is a constant)
    with torch.no_grad():
        fr, ft = critic.features(recon, layer=-2), critic.features(real, layer=-2)
        expected = (fr - ft).square().mean() / ft.square().mean()
    assert torch.allclose(FeatureMatchingLoss()(critic, recon.detach(), real.detach()), expected)
    with pytest.raises(TypeError, match="features"):
        FeatureMatchingLoss()(torch.nn.Identity(), recon, real)


# ------------------------------------------------------------------------------------------ the trainer
def _loader(n_batches: int = 2, batch: int = 4, size: int = 16, dims: int = 2):
    g = torch.Generator().manual_seed(7)
    return [{"image": torch.rand(batch, 1, *([size] * dims), generator=g) * 2 - 1} for _ in range(n_batches)]


def _trainer(objective: str, code_critic: torch.nn.Module | None = None, loader=None, dims: int = 2, **kwargs):
    torch.manual_seed(0)
    gvae = GVAE(dims, 1, 16, latent_size=8, **NETS)
    critic = GVAECritic(dims, 1, 16, **NETS)
    if code_critic is None and objective == "alpha_gan":
        code_critic = CodeCritic(8, hidden_channels=(16, 16))
    return GVAETrainer(
        "cpu", kwargs.pop("max_epochs", 1), loader if loader is not None else _loader(dims=dims), gvae, critic,
        torch.optim.Adam(gvae.parameters(), 1e-3), torch.optim.Adam(critic.parameters(), 1e-3),
        code_critic=code_critic,
        code_critic_optimizer=torch.optim.Adam(code_critic.parameters(), 1e-3) if code_critic is not None else None,
        objective=objective, seed=0, **kwargs,
    )


class SpyCodeCritic(torch.nn.Module):
    """A linear code critic ``C(z) = w . z`` that records its inputs: the gradient of its score is ``w`` everywhere,
    so its gradient penalty is ``(||w|| - 1)^2`` in closed form."""

    def __init__(self, latent_size: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(latent_size, 1)
        self.calls: list[torch.Tensor] = []

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.calls.append(z.detach().clone())
        return self.linear(z)


def test_code_critic_penalty_is_computed_on_latent_interpolates():
    spy = SpyCodeCritic(8)
    trainer = _trainer("alpha_gan", code_critic=spy, loader=_loader(n_batches=1))
    encoder = copy.deepcopy(trainer.encoder)
    x = trainer.data_loader[0]["image"]
    with torch.no_grad():
        codes = encoder(x)[0]  # the deterministic encoder's codes before any update
    w = spy.linear.weight.detach().clone()
    outputs = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(dict(e.state.output)))
    trainer.run()
    # the critic step scores [prior; E(x)], then the penalty scores the interpolates; the encoder step scores E(x)
    scored, interpolates, encoder_step = spy.calls
    prior, fake = scored[:4], scored[4:]
    assert torch.allclose(fake, codes, atol=1e-6)
    assert not torch.allclose(prior, fake) and interpolates.shape == (4, 8)
    # every penalty input lies on the segment between its prior latent and its code: eps * z + (1 - eps) * E(x)
    direction = prior - fake
    eps = ((interpolates - fake) * direction).sum(1) / direction.square().sum(1)
    assert torch.allclose(interpolates, eps[:, None] * prior + (1 - eps[:, None]) * fake, atol=1e-5)
    assert bool(((eps >= 0) & (eps <= 1)).all()) and eps.unique().numel() == 4  # one weight per pair
    # the penalty of a linear critic: (||w|| - 1)^2
    assert outputs[0]["code_gp"] == pytest.approx(float((w.norm() - 1) ** 2), rel=1e-5)
    assert encoder_step.shape == (4, 8)


def test_vaegan_feature_matching_never_trains_the_critic():
    trainer = _trainer("vaegan", feature_matching_loss=FeatureMatchingLoss(layer=1))
    after_critic_step = {}

    def keep(optimizer, args, kwargs):
        after_critic_step.update({n: p.grad.clone() for n, p in trainer.critic.named_parameters()})

    trainer.critic_optimizer.register_step_post_hook(keep)
    seen = []

    def compare(engine):
        # the encoder-generator step (feature matching included) added nothing to the critic's gradients
        seen.append(all(torch.equal(p.grad, after_critic_step[n]) for n, p in engine.critic.named_parameters()))

    trainer.add_event_handler(Events.ITERATION_COMPLETED, compare)
    trainer.run()
    assert seen == [True, True] and trainer.describe()["trainer"]["feature_matching_loss"]["layer"] == 1


def test_objectives_check_their_networks():
    gvae = GVAE(2, 1, 16, latent_size=8, **NETS)
    critic = GVAECritic(2, 1, 16, **NETS)
    networks = (gvae, critic, torch.optim.Adam(gvae.parameters()), torch.optim.Adam(critic.parameters()))
    with pytest.raises(ValueError, match="needs code_critic, code_critic_optimizer"):
        GVAETrainer("cpu", 1, _loader(), *networks, objective="alpha_gan")
    with pytest.raises(ValueError, match="alpha_gan' only, not 'gvae'"):
        _trainer("gvae", code_critic=CodeCritic(8))
    featureless = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 1))
    with pytest.raises(ValueError, match="features"):
        GVAETrainer("cpu", 1, _loader(), gvae, featureless, torch.optim.Adam(gvae.parameters()),
                    torch.optim.Adam(featureless.parameters()), objective="vaegan")
    assert OBJECTIVES == ("gvae", "vae", "wgan_gp", "vaegan", "alpha_gan")


def test_alpha_gan_trains_in_3d():
    trainer = _trainer("alpha_gan", dims=3, loader=_loader(n_batches=1, batch=2, dims=3))
    before = _snapshot(trainer.code_critic)
    trainer.run()
    assert _changed(before, trainer.code_critic) and trainer.state.output["code_gp"] > 0


# ------------------------------------------------------------------------------------------ state and resumption
def test_trainer_state_holds_the_code_critic_and_old_states_still_load(caplog):
    trainer = _trainer("alpha_gan")
    trainer.run()
    state = trainer.state_dict()
    assert set(state["code_critic"]) == {"network", "optimizer"} and trainer.owned_optimizers() == [trainer.code_critic_optimizer]
    other = _trainer("alpha_gan")
    other.load_state_dict(copy.deepcopy(state))
    for k, v in trainer.code_critic.state_dict().items():
        assert torch.equal(other.code_critic.state_dict()[k], v)
    assert other.code_critic_optimizer.state_dict()["state"][0]["step"] == 2
    # the other objectives' states have exactly the entries they had before alpha-GAN existed, and load as before
    gvae = _trainer("gvae")
    gvae.run()
    old = gvae.state_dict()
    assert set(old) == {"iteration", "epoch_length", "max_epochs", "grad_scalers", "random_generators", "loss_schedule"}
    assert gvae.owned_optimizers() == []
    _trainer("vaegan").load_state_dict(old)
    with caplog.at_level("WARNING"):
        other.load_state_dict(old)  # an alpha-GAN trainer from a GVAE state: its code critic is kept, with a warning
        _trainer("gvae").load_state_dict(state)  # and the other way round: ignored, with a warning
    assert "has no code_critic" in caplog.text and "holds a code critic" in caplog.text


def _alpha_gan_run(out: Path, max_epochs: int, resume: bool):
    trainer = _trainer("alpha_gan", max_epochs=max_epochs)
    gvae, critic = trainer.network, trainer.critic
    handler = GVAECheckpointHandler(
        out, {"gvae": gvae, "critic": critic, "optimizer": trainer.optimizer, "critic_optimizer": trainer.critic_optimizer},
        save_interval=1, resume=resume,
    )
    DivergenceGuard().attach(trainer)
    handler.attach(trainer)
    return trainer, handler


def test_alpha_gan_resumes_exactly_with_its_code_critic(tmp_path):
    """A run stopped after epoch 1 and resumed ends where an uninterrupted one does: the code critic and its Adam
    state come back from the trainer's entry of the checkpoint (the handler was given only the usual networks)."""
    straight, _ = _alpha_gan_run(tmp_path / "straight", max_epochs=2, resume=False)
    straight.run()
    first, _ = _alpha_gan_run(tmp_path / "resumed", max_epochs=1, resume=False)
    first.run()
    resumed, handler = _alpha_gan_run(tmp_path / "resumed", max_epochs=2, resume=True)
    # the rollback's learning rates and the divergence guard include the code critic's optimiser
    assert handler.optimizers[-1] is resumed.code_critic_optimizer and len(handler.optimizers) == 3
    resumed.run()
    assert handler.resumed_from is not None and resumed.state.iteration == straight.state.iteration == 4
    for name in ("code_critic", "critic", "encoder", "generator"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    sa, sb = straight.code_critic_optimizer.state_dict()["state"], resumed.code_critic_optimizer.state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)


def test_alpha_gan_under_torchrun_keeps_the_code_critic_identical_on_both_ranks(tmp_path):
    """The multi-GPU config wraps the code critic in DDP (and lets the encoder's unused log-variance head be)."""
    probe = tmp_path / "probe.yaml"
    probe.write_text(
        "finalize:\n"
        "  - \"$torch.save({'ddp': isinstance(@train#trainer.code_critic, torch.nn.parallel.DistributedDataParallel), "
        "'iteration': @train#trainer.state.iteration, "
        "'params': {k: v.detach().clone() for k, v in @code_critic.named_parameters()}}, "
        "os.path.join(@output_dir, 'rank%d.pt' % torch.distributed.get_rank()))\"\n"
        "  - \"$torch.distributed.barrier()\"\n"
        "  - \"$torch.distributed.destroy_process_group()\"\n"
    )
    folder = "bundles/gvae_brain2d/configs"
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "monai.bundle", "run", "training",
        "--config_file", f"['{folder}/train.yaml','{folder}/multi_gpu_train.yaml','{probe}']",
        "--meta_file", f"{folder}/metadata.json", "--bundle_root", "bundles/gvae_brain2d",
        # 46 slices over 2 ranks, batch 8: 2 iterations per epoch; 2 epochs (an unused DDP parameter fails the 2nd)
        "--max_epochs", "2", "--base_channels", "4", "--latent_size", "8", "--batch_size", "8",
        "--val_interval", "2", "--output_dir", str(out), "--objective", "alpha_gan", "--progress", "false",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(r["ddp"] for r in ranks) and [r["iteration"] for r in ranks] == [4, 4]
    for key, value in ranks[0]["params"].items():
        assert torch.equal(value, ranks[1]["params"][key]), key
