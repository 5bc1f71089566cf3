"""Divergence guard: a NaN/Inf loss, gradient or weight stops training with a clear error, the last good checkpoint
stays on disk and no poisoned checkpoint is written; rollback with a lower learning rate when asked for."""

from __future__ import annotations

import os

import pytest
import torch
from ignite.engine import Events
from reliability_helpers import NaNAt, assert_same_state, state_of, tiny_run

from monai_gvae.engines import NonFiniteLossError
from monai_gvae.handlers import DivergenceGuard, NonFiniteGradientError, NonFiniteStateError, run_with_rollback


def _snapshots(run, store):
    """Record the weights after every iteration (registered before the checkpoint handler)."""
    run.trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: store.__setitem__(e.state.iteration, state_of(run)))


def test_nan_loss_stops_with_iteration_and_term_and_keeps_last_good_checkpoint(tmp_path):
    snaps: dict = {}
    run = tiny_run(str(tmp_path), epoch_level=False, save_interval=1, loss_function=NaNAt({3}),
                   before_attach=lambda r: _snapshots(r, snaps))
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss_g, loss_rec in the encoder-generator step at iteration 3"):
        run.trainer.run()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint_iteration=1.pt", "checkpoint_iteration=2.pt"]  # no model.pt
    on_disk = torch.load(tmp_path / "checkpoint_iteration=2.pt", weights_only=True)
    assert on_disk["checkpoint_meta"]["iteration"] == 2
    assert_same_state(snaps[2]["gvae"], on_disk["gvae"])
    assert_same_state(snaps[2]["optimizer"], on_disk["optimizer"])
    # the generator step was not taken (batch-norm statistics of the failed forward passes aside), and the critic
    # left trainable (the guard raised while it was frozen)
    assert_same_params(snaps[2]["gvae"], run.gvae)
    assert all(p.requires_grad for p in run.critic.parameters())


def test_inf_gradient_stops_before_the_step_naming_the_parameter(tmp_path):
    snaps: dict = {}

    def poison(r):
        _snapshots(r, snaps)
        weight = r.gvae.generator.net[0].weight if hasattr(r.gvae.generator, "net") else next(r.gvae.generator.parameters())
        r.target = weight
        r.trainer.add_event_handler(Events.ITERATION_STARTED(once=3), lambda e: weight.register_hook(lambda g: g * float("inf")))
        DivergenceGuard().attach(r.trainer)

    run = tiny_run(str(tmp_path), epoch_level=False, save_interval=1, before_attach=poison)
    name = next(n for n, p in run.gvae.named_parameters() if p is run.target)
    with pytest.raises(NonFiniteGradientError, match=r"encoder-generator step at iteration 3") as err:
        run.trainer.run()
    assert name.split(".", 1)[1] in str(err.value) and "no optimiser step was taken" in str(err.value)
    assert isinstance(err.value, NonFiniteLossError)
    assert_same_params(snaps[2]["gvae"], run.gvae)
    assert non_finite(run.gvae) == [] and sorted(os.listdir(tmp_path))[-1] == "checkpoint_iteration=2.pt"


def assert_same_params(state, module):
    params = {n: p.detach() for n, p in module.named_parameters()}
    assert_same_state({n: state[n] for n in params}, params)


def non_finite(module):
    return [n for n, p in module.named_parameters() if not torch.isfinite(p).all()]


def test_poisoned_weights_are_never_written(tmp_path):
    """With the loss guard off, NaN weights reach the checkpoint handler: it refuses to write them."""

    def poison(r):
        def set_nan(e):
            with torch.no_grad():
                next(r.critic.parameters()).view(-1)[0] = float("nan")

        r.trainer.add_event_handler(Events.ITERATION_COMPLETED(once=3), set_nan)

    run = tiny_run(str(tmp_path), epoch_level=False, save_interval=1, check_finite=False, before_attach=poison)
    with pytest.raises(NonFiniteStateError, match=r"iteration 3 .*critic\..*the last good checkpoint is .*checkpoint_iteration=2.pt"):
        run.trainer.run()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint_iteration=1.pt", "checkpoint_iteration=2.pt"]


def test_rollback_restarts_from_last_good_checkpoint_with_lower_lr(tmp_path, caplog):
    run = tiny_run(str(tmp_path), max_epochs=3, epoch_level=False, save_interval=1, loss_function=NaNAt({5}, times=1))
    lrs = [g["lr"] for g in run.opt_g.param_groups + run.opt_d.param_groups]
    with caplog.at_level("WARNING"):
        assert run_with_rollback(run.trainer, run.handler, max_rollbacks=2, lr_factor=0.5) == 1
    assert "rollback 1/2" in caplog.text and "checkpoint_iteration=4.pt" in caplog.text
    assert run.handler.resumed_from.endswith("checkpoint_iteration=4.pt")
    assert [g["lr"] for g in run.opt_g.param_groups + run.opt_d.param_groups] == [lr * 0.5 for lr in lrs]
    assert run.trainer.state.iteration == 6 and non_finite(run.gvae) == [] and non_finite(run.critic) == []
    final = torch.load(tmp_path / "model.pt", weights_only=True)
    assert final["optimizer"]["param_groups"][0]["lr"] == lrs[0] * 0.5  # the lowered rate is in the checkpoints
    assert all(p.requires_grad for p in run.critic.parameters())


def test_rollback_off_by_default_and_bounded(tmp_path, caplog):
    run = tiny_run(str(tmp_path / "a"), epoch_level=False, save_interval=1, loss_function=NaNAt({3}))
    with pytest.raises(NonFiniteLossError, match="iteration 3"):
        run_with_rollback(run.trainer, run.handler)
    assert run.trainer.state.iteration == 3  # no rollback: stopped at the failing iteration
    always = tiny_run(str(tmp_path / "b"), epoch_level=False, save_interval=1, loss_function=NaNAt({3}))
    # the learning rates each attempt at iteration 3 trains with: halved at every rollback, compounding
    attempts: list[list[float]] = []
    always.trainer.add_event_handler(
        Events.ITERATION_STARTED(once=3),
        lambda e: attempts.append([g["lr"] for g in always.opt_g.param_groups + always.opt_d.param_groups]),
    )
    lrs = [g["lr"] for g in always.opt_g.param_groups + always.opt_d.param_groups]
    with caplog.at_level("WARNING"), pytest.raises(NonFiniteLossError, match="iteration 3"):
        run_with_rollback(always.trainer, always.handler, max_rollbacks=2)  # diverges again after each rollback
    assert attempts == [lrs, [lr * 0.5 for lr in lrs], [lr * 0.25 for lr in lrs]]  # 1 run + exactly 2 rollbacks
    rollbacks = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rollback ")]
    assert [m.split(":")[0] for m in rollbacks] == ["rollback 1/2", "rollback 2/2"]
    assert all("checkpoint_iteration=2.pt" in m for m in rollbacks)
    first = tiny_run(str(tmp_path / "c"), epoch_level=False, save_interval=1, loss_function=NaNAt({1}))
    with pytest.raises(NonFiniteLossError, match="No good checkpoint to roll back to"):
        run_with_rollback(first.trainer, first.handler, max_rollbacks=1)
    with pytest.raises(ValueError, match="lr_factor"):
        run_with_rollback(first.trainer, first.handler, max_rollbacks=1, lr_factor=1.5)
