import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader
from monai.handlers import CheckpointSaver, StatsHandler, ValidationHandler
from reliability_helpers import assert_same_state

from monai_gvae.data import synthetic_slices
from monai_gvae.engines import LOSS_KEYS, GVAEEvaluator, GVAEKeys, GVAETrainer, NonFiniteLossError, loss_terms, split_condition
from monai_gvae.losses import EncoderGeneratorLoss
from monai_gvae.networks import GVAE, GVAECritic, load_gvae
from monai_gvae.transforms import PackImageLabeld

SIZE, CLASSES = 16, 3


def make_data(n=32, seed=0):
    pack = PackImageLabeld(num_classes=CLASSES)
    return [pack(d) for d in synthetic_slices(n, image_size=SIZE, num_seg_classes=CLASSES - 1, seed=seed)]


def make_trainer(objective="gvae", max_epochs=1, data=None, seed=0, **kwargs):
    torch.manual_seed(seed)
    gvae = GVAE(spatial_dims=2, in_channels=1 + CLASSES, image_size=SIZE, latent_size=8, architecture="conv",
                base_channels=8, max_channels=16, image_channels=1, num_classes=CLASSES)
    critic = GVAECritic(spatial_dims=2, in_channels=1 + CLASSES, image_size=SIZE, architecture="conv",
                        base_channels=8, max_channels=16)
    loader = DataLoader(data if data is not None else make_data(), batch_size=8, shuffle=True)
    trainer = GVAETrainer(
        device="cpu", max_epochs=max_epochs, train_data_loader=loader, network=gvae, critic=critic,
        optimizer=torch.optim.Adam(gvae.parameters(), 2e-3, betas=(0.5, 0.9)),
        critic_optimizer=torch.optim.Adam(critic.parameters(), 1e-4, betas=(0.5, 0.9)),
        objective=objective, seed=seed, **kwargs,
    )
    return trainer, gvae, critic


def test_reconstruction_loss_falls():
    trainer, _, _ = make_trainer(max_epochs=15)
    rec = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: rec.append(e.state.output["loss_rec"]))
    trainer.run()
    assert trainer.state.iteration == 60
    first, last = sum(rec[:5]) / 5, sum(rec[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    out = trainer.state.output
    for key in ("loss_d", "loss_g", "loss_rec", "loss_kl", "loss_adv", "gp", "wasserstein"):
        assert isinstance(out[key], float)
    assert out["gp"] > 0 and out["loss_kl"] > 0
    assert set(loss_terms(out)) >= {"loss_d", "loss_g", "gp"}


def test_same_seed_same_weights_and_n_critic():
    data = make_data()
    weights = []
    for _ in range(2):
        trainer, gvae, _ = make_trainer(data=data, n_critic=2, seed=3)
        trainer.data_loader = DataLoader(data, batch_size=8, shuffle=False)
        trainer.run()
        weights.append(torch.cat([p.detach().flatten() for p in gvae.parameters()]))
    assert torch.equal(weights[0], weights[1])


@pytest.mark.parametrize("objective", ["vae", "wgan_gp"])
def test_baseline_objectives_switch_terms(objective):
    trainer, gvae, critic = make_trainer(objective=objective)
    enc_before = [p.detach().clone() for p in gvae.encoder.parameters()]
    critic_before = [p.detach().clone() for p in critic.parameters()]
    trainer.run()
    out = trainer.state.output
    enc_changed = any(not torch.equal(a, b) for a, b in zip(enc_before, gvae.encoder.parameters()))
    critic_changed = any(not torch.equal(a, b) for a, b in zip(critic_before, critic.parameters()))
    if objective == "vae":
        assert out["loss_d"] == 0.0 and out["loss_adv"] == 0.0 and out["loss_rec"] > 0
        assert enc_changed and not critic_changed
    else:
        assert out["loss_rec"] == 0.0 and out["loss_kl"] == 0.0 and out["loss_d"] != 0.0
        assert critic_changed and not enc_changed


def test_vae_objective_without_critic():
    gvae = GVAE(spatial_dims=2, in_channels=1, image_size=SIZE, latent_size=4, architecture="conv", base_channels=4)
    loader = DataLoader([{"image": torch.rand(1, SIZE, SIZE)} for _ in range(4)], batch_size=2)
    GVAETrainer("cpu", 1, loader, network=gvae, optimizer=torch.optim.Adam(gvae.parameters()), objective="vae").run()
    with pytest.raises(ValueError, match="needs critic"):
        GVAETrainer("cpu", 1, loader, network=gvae, optimizer=torch.optim.Adam(gvae.parameters()))
    with pytest.raises(ValueError, match="objective"):
        GVAETrainer("cpu", 1, loader, network=gvae, optimizer=torch.optim.Adam(gvae.parameters()), objective="gan")


@pytest.mark.parametrize("custom_prepare_batch", [False, True])
def test_nan_input_batch_raises(custom_prepare_batch):
    """Checked on the host before the copy with the default prepare_batch, on the device after a custom one."""
    data = make_data(8)
    data[3]["image"][0, 2, 2] = float("nan")
    kwargs = {}
    if custom_prepare_batch:  # e.g. a batch that arrives under another key
        data = [{"volume": d["image"]} for d in data]
        kwargs["prepare_batch"] = lambda batch, device, non_blocking, **kw: batch["volume"].to(device)
    trainer, gvae, _ = make_trainer(data=data, **kwargs)
    before = [p.detach().clone() for p in gvae.parameters()]
    with pytest.raises(ValueError, match="NaN or Inf"):
        trainer.run()
    assert all(torch.equal(a, b) for a, b in zip(before, gvae.parameters()))  # no update from the NaN batch


def test_non_finite_loss_names_iteration_and_term():
    trainer, gvae, _ = make_trainer()
    with torch.no_grad():
        gvae.generator.trunk.project.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"loss_d.*critic step at iteration 1"):
        trainer.run()


def test_amp_ema_handlers_validation_and_checkpoint(tmp_path):
    trainer, gvae, critic = make_trainer(max_epochs=2, amp=True, ema_decay=0.9)
    val_loader = DataLoader(make_data(8, seed=1), batch_size=4)
    from monai.handlers import MeanAbsoluteError, from_engine

    evaluator = GVAEEvaluator("cpu", val_loader, gvae, key_val_metric={
        "val_mae": MeanAbsoluteError(output_transform=from_engine(["pred", "label"]))})
    ValidationHandler(validator=evaluator, interval=1).attach(trainer)
    StatsHandler(output_transform=loss_terms).attach(trainer)
    CheckpointSaver(str(tmp_path), {"gvae": gvae, "critic": critic, "trainer": trainer}, save_final=True,
                    final_filename="model.pt").attach(trainer)
    trainer.run()
    assert 0 < evaluator.state.metrics["val_mae"] < 2
    assert trainer.generator_ema is not None and trainer.generator_ema.n_averaged.item() == 8
    loaded = load_gvae(tmp_path / "model.pt")
    z = torch.randn(2, 8)
    gvae.eval()
    with torch.no_grad():
        assert torch.equal(loaded.decode(z), gvae.decode(z))
    ckpt = torch.load(tmp_path / "model.pt", weights_only=True)
    assert ckpt["trainer"]["iteration"] == 8


def test_ema_generator_is_the_exponential_moving_average_of_the_generator():
    """ema_decay=d: after step 1 the average is the generator itself, then e_k = d e_(k-1) + (1 - d) w_k, for the
    weights and the (BatchNorm) buffers, computed here by hand from the generator after every iteration."""
    decay = 0.75
    trainer, gvae, _ = make_trainer(max_epochs=2, ema_decay=decay)
    seen: list[dict[str, torch.Tensor]] = []

    def record(engine):
        state = gvae.generator.state_dict()
        seen.append({k: v.detach().double().clone() for k, v in state.items() if v.is_floating_point()})

    trainer.add_event_handler(Events.ITERATION_COMPLETED, record)
    trainer.run()
    assert len(seen) == 8
    expected = dict(seen[0])
    for weights in seen[1:]:
        expected = {k: decay * expected[k] + (1 - decay) * weights[k] for k in expected}
    averaged = trainer.generator_ema.module.state_dict()
    assert trainer.generator_ema.n_averaged.item() == 8 and set(expected) <= set(averaged)
    for key, value in expected.items():
        assert torch.allclose(averaged[key].double(), value, rtol=1e-5, atol=1e-7), key
    # it is an average, not the generator: the last weights differ from it
    assert any(not torch.allclose(averaged[k].double(), seen[-1][k]) for k in expected)
    # and it stands apart from the generator: training did not write into it
    assert trainer.generator_ema.module is not gvae.generator


def test_checkpoint_loader_resumes_iteration_and_optimiser(tmp_path):
    from monai.handlers import CheckpointLoader

    trainer, gvae, critic = make_trainer(max_epochs=1)
    save = {"gvae": gvae, "critic": critic, "optimizer": trainer.optimizer, "trainer": trainer}
    CheckpointSaver(str(tmp_path), save, save_final=True, final_filename="ckpt.pt").attach(trainer)
    trainer.run()
    step_before = trainer.optimizer.state_dict()["state"][0]["step"]

    resumed, gvae2, critic2 = make_trainer(max_epochs=2, seed=1)
    load = {"gvae": gvae2, "critic": critic2, "optimizer": resumed.optimizer, "trainer": resumed}
    CheckpointLoader(str(tmp_path / "ckpt.pt"), load).attach(resumed)
    seen = []
    resumed.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append(e.state.iteration))
    resumed.run()
    assert seen[0] == 5  # ignite counts the iteration before ITERATION_STARTED: continues after the first 4
    assert resumed.state.iteration == 8
    assert resumed.optimizer.state_dict()["state"][0]["step"] == step_before + 4


def test_penalty_first_backward_gives_the_joint_update():
    """The critic step back-propagates the gradient penalty on its own first (less peak memory); the updates are
    bit-identical to those of the single joint backward that a DDP critic uses (docs/performance.md: "same updates
    bit for bit")."""
    runs = []
    for penalty_first in (True, False):
        trainer, gvae, critic = make_trainer(max_epochs=1, seed=3)
        assert trainer.penalty_first  # not a DDP critic
        trainer.penalty_first = penalty_first
        trainer.run()
        runs.append([p.detach().clone() for p in list(critic.parameters()) + list(gvae.parameters())])
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    _, gvae0, critic0 = make_trainer(seed=3)  # the initial weights: training did move them
    initial = list(critic0.parameters()) + list(gvae0.parameters())
    assert any(not torch.equal(a, b.detach()) for a, b in zip(runs[0], initial))


@pytest.mark.parametrize("chunk", [1, 3])
def test_critic_step_in_chunks_gives_the_same_updates(chunk):
    """critic_chunk_size runs the penalty and the scores chunk by chunk, each back-propagated at once: the same
    updates as the whole batch (to rounding), also with n_critic=2 (fresh fakes per critic step). SGD, because
    Adam's first steps turn rounding-level differences of near-zero gradients into steps of the learning rate."""
    runs, outputs = [], []
    for chunk_size in (None, chunk):
        trainer, gvae, critic = make_trainer(max_epochs=1, seed=3, n_critic=2, critic_chunk_size=chunk_size)
        trainer.optimizer = torch.optim.SGD(gvae.parameters(), 1e-2)
        trainer.critic_optimizer = torch.optim.SGD(critic.parameters(), 1e-2)
        assert trainer.critic_chunk_size == chunk_size
        trainer.run()
        runs.append([p.detach().clone() for p in list(critic.parameters()) + list(gvae.parameters())])
        outputs.append(trainer.state.output)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(*runs))
    for key in ("loss_d", "gp", "wasserstein", "loss_g"):
        assert outputs[1][key] == pytest.approx(outputs[0][key], rel=1e-4, abs=1e-6), key
    assert outputs[1]["gp"] > 0
    _, gvae0, critic0 = make_trainer(seed=3)  # the initial weights: training did move them
    assert any(not torch.equal(a, b.detach()) for a, b in zip(runs[1], list(critic0.parameters()) + list(gvae0.parameters())))


def test_critic_chunk_size_is_checked():
    # bundle overrides arrive as strings: the bundle's settings convert them where they enter, the trainer does not
    from monai_gvae.bundle import convert_setting

    assert make_trainer(critic_chunk_size=convert_setting("critic_chunk_size", "2"))[0].critic_chunk_size == 2
    assert make_trainer(critic_chunk_size=convert_setting("critic_chunk_size", "null"))[0].critic_chunk_size is None
    for bad in (0, -2, True, "two", "2", 1.5):
        with pytest.raises(ValueError, match="critic_chunk_size must be a positive integer"):
            make_trainer(critic_chunk_size=bad)
    torch.manual_seed(0)
    gvae = GVAE(spatial_dims=2, in_channels=1 + CLASSES, image_size=SIZE, latent_size=8, architecture="conv",
                base_channels=8, max_channels=16, image_channels=1, num_classes=CLASSES)
    batch_norm_critic = GVAECritic(spatial_dims=2, in_channels=1 + CLASSES, image_size=SIZE, architecture="conv",
                                   base_channels=8, max_channels=16, norm="batch")
    with pytest.raises(ValueError, match="without BatchNorm"):
        GVAETrainer(device="cpu", max_epochs=1, train_data_loader=make_data(8), network=gvae, critic=batch_norm_critic,
                    optimizer=torch.optim.Adam(gvae.parameters()),
                    critic_optimizer=torch.optim.Adam(batch_norm_critic.parameters()), critic_chunk_size=2)


def test_critic_chunk_size_refuses_a_ddp_critic(tmp_path):
    """A DDP critic allows one backward per forward, so chunks (one backward each) are refused, clearly."""
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        trainer, gvae, critic = make_trainer()
        ddp_critic = torch.nn.parallel.DistributedDataParallel(critic)
        with pytest.raises(ValueError, match="DistributedDataParallel"):
            GVAETrainer(device="cpu", max_epochs=1, train_data_loader=make_data(8), network=gvae, critic=ddp_critic,
                        optimizer=torch.optim.Adam(gvae.parameters()),
                        critic_optimizer=torch.optim.Adam(critic.parameters()), critic_chunk_size=2)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.parametrize("wrapped", [False, True])
def test_networks_left_in_eval_mode_train_again(wrapped):
    """An evaluator leaves the networks in eval mode; the next iteration trains them again (also inside a wrapper
    such as DDP's, whose own flag an evaluator of the unwrapped model does not switch)."""
    trainer, gvae, critic = make_trainer()
    if wrapped:
        trainer.encoder = torch.nn.DataParallel(gvae.encoder)  # on a CPU it just calls the module
    modes = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: (
        modes.append([m.training for net in (gvae.encoder, gvae.generator, critic) for m in net.modules()]),
        gvae.eval(), critic.eval(),  # as an evaluator between iterations
    ))
    gvae.eval(), critic.eval()
    trainer.run()
    assert len(modes) == 4 and all(all(m) for m in modes)


# ---------------------------------------------------------------- the trainer's own state
def _through_disk(state, tmp_path):
    """``state`` after a weights-only save and load, as a checkpoint holds it."""
    torch.save(state, tmp_path / "state.pt")
    return torch.load(tmp_path / "state.pt", weights_only=True)


def test_state_dict_round_trip_continues_exactly(tmp_path):
    """A trainer built afresh (other seed) that loads the weights, the optimisers and the trainer's state_dict after
    epoch 1 ends epoch 2 bit-identical to one that trained both epochs: the EMA generator, the latent generator and
    the engine's position are in the trainer's state."""
    data = make_data(16)
    kwargs = dict(data=data, ema_decay=0.9, loss_function=EncoderGeneratorLoss(kl_warmup_iterations=3))
    reference, ref_gvae, ref_critic = make_trainer(max_epochs=2, **kwargs)
    reference.data_loader = DataLoader(data, batch_size=8, shuffle=False)
    reference.run()

    first, gvae, critic = make_trainer(max_epochs=1, **kwargs)
    first.data_loader = DataLoader(data, batch_size=8, shuffle=False)
    first.run()
    saved = _through_disk({"gvae": gvae.state_dict(), "critic": critic.state_dict(), "optimizer": first.optimizer.state_dict(),
                           "critic_optimizer": first.critic_optimizer.state_dict(), "trainer": first.state_dict()}, tmp_path)
    assert set(saved["trainer"]) >= {"iteration", "epoch_length", "max_epochs", "generator_ema", "grad_scalers",
                                     "random_generators", "loss_schedule"}
    assert saved["trainer"]["loss_schedule"]["kl_weight"] == pytest.approx(first.loss_function.kl_weight * 2 / 3)

    second, gvae2, critic2 = make_trainer(max_epochs=2, seed=7, **kwargs)
    second.data_loader = DataLoader(data, batch_size=8, shuffle=False)
    for module, key in ((gvae2, "gvae"), (critic2, "critic"), (second.optimizer, "optimizer"), (second.critic_optimizer, "critic_optimizer")):
        module.load_state_dict(saved[key])
    second.load_state_dict(saved["trainer"])
    assert (second.state.iteration, second.state.epoch, second.state.max_epochs) == (2, 1, 1)
    second.state.max_epochs = 2  # as CheckpointLoader and GVAECheckpointHandler do: the saved run's max_epochs was 1
    assert torch.equal(second.latent_generator.get_state(), first.latent_generator.get_state())
    assert second.generator_ema.n_averaged.item() == 2
    assert second.loss_function.kl_weight_at(second.state.iteration) == saved["trainer"]["loss_schedule"]["kl_weight"]
    second.run()
    assert second.state.iteration == reference.state.iteration == 4
    assert_same_state({"gvae": ref_gvae.state_dict(), "critic": ref_critic.state_dict(), "ema": reference.generator_ema.state_dict()},
                      {"gvae": gvae2.state_dict(), "critic": critic2.state_dict(), "ema": second.generator_ema.state_dict()})


def test_state_dict_carries_enabled_grad_scalers(tmp_path):
    """Float16 AMP on CUDA keeps two GradScalers; their scale and growth tracker are part of the trainer's state
    (stood in for here by enabled CPU scalers)."""
    trainer, _, _ = make_trainer()
    trainer.scaler_g = torch.amp.GradScaler("cpu", init_scale=512.0, growth_interval=3, enabled=True)
    trainer.scaler_d = torch.amp.GradScaler("cpu", init_scale=64.0, growth_interval=3, enabled=True)
    trainer.run()  # 4 steps each: the scale grew once, the growth tracker is at 1
    state = _through_disk(trainer.state_dict(), tmp_path)
    other, _, _ = make_trainer()
    other.scaler_g = torch.amp.GradScaler("cpu", enabled=True)
    other.scaler_d = torch.amp.GradScaler("cpu", enabled=True)
    other.load_state_dict(state)
    for name, scale in (("scaler_g", 1024.0), ("scaler_d", 128.0)):
        assert getattr(other, name).state_dict() == getattr(trainer, name).state_dict()
        assert getattr(other, name).get_scale() == scale and getattr(other, name).state_dict()["_growth_tracker"] == 1
    # disabled scalers (no float16 AMP) save an empty state and load nothing
    plain, _, _ = make_trainer()
    assert plain.state_dict()["grad_scalers"] == {"scaler_g": {}, "scaler_d": {}}
    plain.load_state_dict(state)
    assert not plain.scaler_g.is_enabled()


def test_load_state_dict_warns_about_missing_parts_and_a_changed_kl_schedule(caplog):
    trainer, _, _ = make_trainer(ema_decay=0.5)
    with caplog.at_level("WARNING"):
        trainer.load_state_dict({"iteration": 4, "epoch_length": 4, "max_epochs": 1})  # a plain Ignite state
    assert trainer.state.iteration == 4 and "generator_ema, latent_generator" in caplog.text
    caplog.clear()
    saved = make_trainer(loss_function=EncoderGeneratorLoss(kl_warmup_iterations=8))[0]
    saved.state.iteration, saved.state.epoch_length = 2, 4
    with caplog.at_level("WARNING"):
        make_trainer(loss_function=EncoderGeneratorLoss(kl_warmup_iterations=4))[0].load_state_dict(saved.state_dict())
    assert "KL weight at iteration 2" in caplog.text
    with pytest.raises(ValueError, match="max_epochs"):
        trainer.load_state_dict({"iteration": 4, "epoch_length": 4})


def test_describe_records_the_set_up():
    trainer, gvae, _ = make_trainer(n_critic=2, loss_function=EncoderGeneratorLoss(kl_warmup_iterations=5))
    described = trainer.describe()
    assert described["network"] == gvae.config
    assert described["trainer"]["n_critic"] == 2 and described["trainer"]["batch_size"] == 8
    assert described["trainer"]["loss_function"]["kl_warmup_iterations"] == 5
    assert described["trainer"]["critic_loss_function"]["gp_weight"] == 10.0


def test_output_keys_are_gvae_keys():
    trainer, _, _ = make_trainer()
    trainer.run()
    out = trainer.state.output
    assert set(LOSS_KEYS) | {GVAEKeys.KL_WEIGHT, GVAEKeys.PRED, GVAEKeys.IMAGE, GVAEKeys.LABEL} == set(out)
    assert out[GVAEKeys.LOSS_G] == out["loss_g"] and GVAEKeys.LOSS_G == "loss_g" and str(GVAEKeys.PRED) == "pred"
    assert loss_terms(out) == {k: out[k] for k in LOSS_KEYS} and loss_terms(None) == {}
    assert loss_terms(out, keys=(GVAEKeys.LOSS_G, GVAEKeys.LOSS_D)) == {"loss_g": out["loss_g"], "loss_d": out["loss_d"]}


def test_condition_split_is_checked_for_trainer_and_evaluator():
    x = torch.zeros(2, 5, 4, 4)
    image, condition = split_condition(x, 3, 2)
    assert image.shape[1] == 2 and condition.shape[1] == 3
    assert split_condition(x, 0, 2) == (x, None)
    assert split_condition(x, 3)[0].shape[1] == 2  # without the image channels: all before the condition
    for bad in ((x, 3, 1), (x, 5, None), (x, 6, None)):
        with pytest.raises(ValueError, match="condition channel"):
            split_condition(*bad)
    cond = GVAE(spatial_dims=2, in_channels=1, image_size=SIZE, latent_size=4, architecture="conv", base_channels=4,
                max_channels=8, num_classes=3, condition_channels=3)
    wrong = DataLoader([{"image": torch.rand(5, SIZE, SIZE)} for _ in range(2)], batch_size=2)  # 1 + 3 expected
    with pytest.raises(ValueError, match="needs batches of 4 channels"):
        GVAEEvaluator("cpu", wrong, cond).run()
    right = DataLoader([{"image": torch.rand(4, SIZE, SIZE)} for _ in range(2)], batch_size=2)
    evaluator = GVAEEvaluator("cpu", right, cond)
    evaluator.run()
    assert evaluator.state.output[GVAEKeys.PRED].shape[1] == 1 and evaluator.state.output[GVAEKeys.MU].shape == (2, 4)
