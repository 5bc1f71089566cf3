"""monai_gvae.benchmarks.timing and .throughput: interleaved timing, ratios, FLOP counting, and the hand-written
loop that figure (a) compares the trainer with."""

import copy
import itertools

import pytest
import torch

from monai_gvae.benchmarks.throughput import (
    Config,
    ThroughputSettings,
    make_batches,
    make_networks,
    make_optimisers,
    make_trainer,
    plain_loop,
    run_figures,
)
from monai_gvae.benchmarks.timing import fmt_ratio, flop_counter, interleaved, machine_info, ratio_stats, timed, verdict

CPU = torch.device("cpu")


def test_interleaved_rotates_the_order_and_times_each_arm():
    ticks = itertools.count()
    calls = []
    arms = {name: (lambda n=name: calls.append(n)) for name in ("a", "b", "c")}
    times = interleaved(arms, reps=3, device=CPU, clock=lambda: float(next(ticks)))
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert times == {"a": [1.0] * 3, "b": [1.0] * 3, "c": [1.0] * 3}  # one tick per call on the fake clock
    assert timed(lambda: None, CPU, clock=lambda: 5.0) == 0.0


def test_ratios_of_known_times():
    assert ratio_stats([2.0, 3.0, 8.0], [1.0, 1.0, 2.0]) == (3.0, 2.0, 4.0)
    assert fmt_ratio((1.23456, 1.0, 2.0), 5) == "1.235 (median of 5, min-max 1.000-2.000)"
    assert verdict(True) == "MET" and verdict(False) == "NOT MET"
    info = machine_info(CPU)
    assert info["cpus"] >= 1 and info["device"] == "cpu" and info["cpu"]


def test_flop_counter_counts_a_convolution_and_survives_a_gradient_penalty():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    w = torch.randn(4, 3, 3, 3)
    with flop_counter() as fc:
        y = torch.nn.functional.conv2d(x, w, padding=1)
        (grad,) = torch.autograd.grad(y.sum(), x, create_graph=True)  # what the gradient penalty does
    assert fc.get_total_flops() >= 2 * 2 * 4 * 8 * 8 * 3 * 3 * 3  # the forward convolution alone
    assert grad.shape == x.shape


def test_plain_loop_makes_the_trainers_updates():
    cfg = Config(image_size=16, batch_size=2, base_channels=4, max_channels=8, latent_size=8)
    assert cfg.describe().startswith("2D 16x16, 5 channels, architecture=conv")
    batches = make_batches(cfg, 2)
    gvae_t, critic_t = make_networks(cfg, CPU)
    gvae_p, critic_p = copy.deepcopy(gvae_t), copy.deepcopy(critic_t)
    make_trainer(cfg, gvae_t, critic_t, *make_optimisers(gvae_t, critic_t), batches, CPU, seed=3).run()
    plain_loop(gvae_p, critic_p, *make_optimisers(gvae_p, critic_p), batches, CPU, seed=3)
    for a, b in zip(list(gvae_t.parameters()) + list(critic_t.parameters()),
                    list(gvae_p.parameters()) + list(critic_p.parameters())):
        assert torch.equal(a, b)
    untouched, _ = make_networks(cfg, CPU)
    assert not torch.equal(next(untouched.parameters()), next(gvae_t.parameters()))


def test_run_figures_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown figure"):
        run_figures(ThroughputSettings(quick=True, reps=1, iters=1), CPU, {"z"}, {})
