"""A tiny, fast GVAE training set-up shared by the reliability tests (16x16 synthetic slices, 2 iterations per epoch).

Not collected by pytest (no ``test_`` prefix); imported by tests/test_reliability_*.py.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.data import DataLoader, Dataset
from monai.transforms import Compose, EnsureTyped, RandFlipd
from monai.utils import set_determinism

from monai_gvae.data import synthetic_slices
from monai_gvae.engines import GVAETrainer
from monai_gvae.handlers import GVAECheckpointHandler
from monai_gvae.losses import EncoderGeneratorLoss
from monai_gvae.networks import GVAE, GVAECritic
from monai_gvae.transforms import PackImageLabeld


class NaNAt(EncoderGeneratorLoss):
    """The encoder-generator loss, with a NaN reconstruction term at the given iterations (``times`` times)."""

    def __init__(self, iterations: set[int], times: int = 10**9) -> None:
        super().__init__(kl_warmup_iterations=2)
        self.iterations, self.times = set(iterations), times

    def forward(self, *args: Any, iteration: int = 0, **kwargs: Any) -> dict[str, torch.Tensor]:
        terms = super().forward(*args, iteration=iteration, **kwargs)
        if iteration in self.iterations and self.times > 0:
            self.times -= 1
            terms = dict(terms)
            terms["rec"] = terms["rec"] * float("nan")
            terms["loss"] = terms["loss"] + terms["rec"]
        return terms


class InfGradientOnce:
    """A train handler that makes one gradient infinite, once: in iteration ``iteration`` the gradient of the first
    parameter of ``module.generator`` (or of ``module``) is multiplied by inf. Only the first time that iteration
    runs, so that a run rolled back past it trains on. For bundle configs: ``_target_:
    reliability_helpers.InfGradientOnce``."""

    def __init__(self, module: torch.nn.Module, iteration: int) -> None:
        self.parameter = next(getattr(module, "generator", module).parameters())
        self.iteration = iteration
        self.armed = False
        self.fired = 0
        self.parameter.register_hook(self._poison)

    def _poison(self, grad: torch.Tensor) -> torch.Tensor:
        if not self.armed:
            return grad
        self.armed = False
        self.fired += 1
        return grad * float("inf")

    def attach(self, engine: Engine) -> None:
        def arm(e: Engine) -> None:
            if e.state.iteration == self.iteration and not self.fired:
                self.armed = True

        engine.add_event_handler(Events.ITERATION_STARTED, arm)


def tiny_run(
    out_dir: str,
    max_epochs: int = 3,
    resume: Any = False,
    epoch_level: bool = True,
    save_interval: int = 1,
    n_saved: int | None = 2,
    loss_function: EncoderGeneratorLoss | None = None,
    check_finite: bool = True,
    before_attach: Any = None,
    seed: int = 0,
    ema_decay: float | None = None,
) -> SimpleNamespace:
    """Networks, optimisers, a seeded GVAETrainer with a random flip in its data pipeline, and a checkpoint handler
    attached to it (``before_attach(run)`` may register handlers that must run before the checkpoint handler)."""
    torch.set_num_threads(1)
    set_determinism(seed)
    items = synthetic_slices(8, image_size=16, num_seg_classes=1, seed=3)
    transform = Compose([
        RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=1),
        PackImageLabeld(num_classes=2),
        EnsureTyped(keys="image", track_meta=False),
    ])
    loader = DataLoader(Dataset(items, transform), batch_size=4, shuffle=True, num_workers=0, drop_last=True)
    gvae = GVAE(2, 3, 16, 4, architecture="conv", base_channels=4, max_channels=8, image_channels=1, num_classes=2)
    critic = GVAECritic(2, 3, 16, architecture="conv", base_channels=4, max_channels=8)
    opt_g = torch.optim.Adam(gvae.parameters(), 1e-3, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(critic.parameters(), 1e-3, betas=(0.5, 0.9))
    trainer = GVAETrainer(
        "cpu", max_epochs, loader, gvae, critic, opt_g, opt_d,
        loss_function=loss_function if loss_function is not None else EncoderGeneratorLoss(kl_warmup_iterations=2),
        seed=seed, check_finite=check_finite, ema_decay=ema_decay,
    )
    handler = GVAECheckpointHandler(
        out_dir, {"gvae": gvae, "critic": critic, "optimizer": opt_g, "critic_optimizer": opt_d},
        save_interval=save_interval, epoch_level=epoch_level, n_saved=n_saved, resume=resume,
        config={"test": "tiny_run"},
    )
    run = SimpleNamespace(trainer=trainer, handler=handler, gvae=gvae, critic=critic, opt_g=opt_g, opt_d=opt_d)
    if before_attach is not None:
        before_attach(run)
    handler.attach(trainer)
    return run


def state_of(run: SimpleNamespace) -> dict[str, Any]:
    """Deep copies of the weights and optimiser states."""
    return copy.deepcopy({
        "gvae": run.gvae.state_dict(), "critic": run.critic.state_dict(),
        "optimizer": run.opt_g.state_dict(), "critic_optimizer": run.opt_d.state_dict(),
    })


def assert_same_state(a: Any, b: Any, where: str = "") -> None:
    """Bit-identical nested states (tensors compared with ``torch.equal``)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b), f"differs at {where}"
    elif isinstance(a, dict):
        assert set(a) == set(b), f"keys differ at {where}: {sorted(map(str, a))} vs {sorted(map(str, b))}"
        for k in a:
            assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"lengths differ at {where}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}.{i}")
    else:
        assert a == b, f"{a!r} != {b!r} at {where}"
