"""Throughput and memory of GVAE training and synthesis, each figure a ratio measured side by side in one process.

Figures (targets from the project's performance issue; docs/performance.md):

(a) ``GVAETrainer`` iterations/s against a hand-written PyTorch loop doing the same updates (same networks,
    losses, optimisers and random draws: the final weights are compared) -- target >= 0.95.
(b) FLOP/s achieved by the training step (``torch.utils.flop_counter``) against a large ``conv2d`` timed in the
    same repetitions -- target >= 0.5 on a CPU for the 2D 64x64 configuration.
(c) pooled batched synthesis against per-item synthesis, items/s (``monai_gvae.bundle.generate``, and
    ``GVAESynthesize`` with a pool against a pool of one) -- target >= 10.
(d) a segmentation epoch with ``GVAESynthesized`` against the same epoch without it, through a DataLoader with
    2 workers -- target <= 10 % overhead.
(e) peak memory of a 3D 64^3 training step with and without gradient checkpointing and mixed precision --
    target: checkpointing cuts the peak by >= 30 %.
Plus the speed options (channels-last, bfloat16 autocast, ``float_outputs``/``check_finite`` off, ``torch.compile``)
as step-time ratios against the default step.

Each ``figure_*`` prints its figure and stores it in ``results`` under its letter; :func:`run_figures` runs a
selection. Timing helpers: :mod:`monai_gvae.benchmarks.timing`.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from monai_gvae.benchmarks.timing import (
    Clock,
    flop_counter,
    fmt_ratio,
    interleaved,
    profiler_peak_bytes,
    ratio_stats,
    sync,
    timed,
    verdict,
)
from monai_gvae.bundle import generate
from monai_gvae.data import synthetic_slices
from monai_gvae.engines import GVAETrainer, maybe_compile, prepare_network
from monai_gvae.losses import CriticLoss, EncoderGeneratorLoss
from monai_gvae.networks import GVAE, GVAECritic
from monai_gvae.transforms import PackImageLabeld

__all__ = [
    "Config",
    "ThroughputSettings",
    "bundle_config",
    "make_networks",
    "make_optimisers",
    "make_batches",
    "make_trainer",
    "plain_loop",
    "conv_reference",
    "trainer_and_plain_times",
    "segmentation_epoch",
    "peak_step_memory",
    "figure_a_b",
    "figure_a_fixed_cost",
    "figure_b_resnet",
    "figure_options",
    "figure_c",
    "figure_d",
    "figure_e",
    "FIGURES",
    "run_figures",
]

NUM_CLASSES = 4  # image + 4 one-hot label channels, as the gvae_brain2d bundle
# figure (e): items per chunk of the critic step (GVAETrainer(critic_chunk_size=)); 2 cost no time in our runs, 1 does
CRITIC_CHUNK_SIZE = 2
REC_WEIGHT, KL_WEIGHT, ADV_WEIGHT, KL_WARMUP, GP_WEIGHT = 1.0, 1e-3, 1e-2, 200, 10.0


@dataclass
class Config:
    """One network/batch configuration."""

    spatial_dims: int = 2
    image_size: int = 64
    batch_size: int = 16
    architecture: str = "conv"
    base_channels: int = 16
    max_channels: int = 128
    latent_size: int = 64

    @property
    def in_channels(self) -> int:
        return 1 + NUM_CLASSES

    def describe(self) -> str:
        size = "x".join([str(self.image_size)] * self.spatial_dims)
        return (
            f"{self.spatial_dims}D {size}, {self.in_channels} channels, architecture={self.architecture}, "
            f"base/max channels {self.base_channels}/{self.max_channels}, latent {self.latent_size}, "
            f"batch {self.batch_size}"
        )


def bundle_config(quick: bool) -> Config:
    """The gvae_brain2d bundle's network and batch (tiny in quick mode)."""
    if quick:
        return Config(image_size=32, batch_size=4, base_channels=4, max_channels=8, latent_size=8)
    return Config()


@dataclass(frozen=True)
class ThroughputSettings:
    """How the figures are measured.

    Attributes:
        quick: tiny sizes and few repetitions (seconds; the figures are not meaningful).
        reps: interleaved repetitions of each comparison.
        iters: training iterations per repetition (one epoch).
        compile: also time ``torch.compile`` (slow to compile).
        clock: the clock of the timings (``time.process_time`` on a CPU with one thread, else
            ``time.perf_counter``); figures whose work runs in other processes use the wall clock regardless.
    """

    quick: bool = False
    reps: int = 15
    iters: int = 2
    compile: bool = False
    clock: Clock = time.process_time


# --------------------------------------------------------------------------------------------- helpers


def make_networks(cfg: Config, device: torch.device, seed: int = 0, **kwargs) -> tuple[GVAE, GVAECritic]:
    """GVAE (image + one-hot label channels) and critic of ``cfg``, seeded, prepared for ``device``.

    Args:
        kwargs: ``gradient_checkpointing`` and ``channels_last`` (both off by default).
    """
    torch.manual_seed(seed)
    common = dict(
        spatial_dims=cfg.spatial_dims, in_channels=cfg.in_channels, image_size=cfg.image_size,
        architecture=cfg.architecture, base_channels=cfg.base_channels, max_channels=cfg.max_channels,
    )
    ckpt = kwargs.pop("gradient_checkpointing", False)
    gvae = GVAE(latent_size=cfg.latent_size, image_channels=1, num_classes=NUM_CLASSES,
                gradient_checkpointing=ckpt, **common)
    critic = GVAECritic(gradient_checkpointing=ckpt, **common)
    channels_last = kwargs.pop("channels_last", False)
    return (prepare_network(gvae, device, channels_last=channels_last),
            prepare_network(critic, device, channels_last=channels_last))


def make_optimisers(
    gvae: torch.nn.Module, critic: torch.nn.Module
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """The bundle's optimisers: Adam 1e-3 (encoder + generator) and 1e-4 (critic), betas (0.5, 0.9)."""
    return (torch.optim.Adam(gvae.parameters(), 1e-3, betas=(0.5, 0.9)),
            torch.optim.Adam(critic.parameters(), 1e-4, betas=(0.5, 0.9)))


def make_batches(cfg: Config, num_batches: int, device: torch.device | None = None) -> list[dict[str, torch.Tensor]]:
    """Pre-collated CPU batches of packed image+label (2D: synthetic slices; 3D: random volumes in [-1, 1]),
    in page-locked memory when the device is a GPU (so that ``non_blocking`` copies are asynchronous)."""
    n = cfg.batch_size * num_batches
    if cfg.spatial_dims == 2:
        pack = PackImageLabeld(num_classes=NUM_CLASSES)
        slices = synthetic_slices(n, image_size=cfg.image_size, num_seg_classes=NUM_CLASSES - 1)
        x = torch.stack([torch.as_tensor(pack(d)["image"], dtype=torch.float32) for d in slices])
    else:
        g = torch.Generator().manual_seed(0)
        x = torch.rand((n, cfg.in_channels) + (cfg.image_size,) * 3, generator=g) * 2 - 1
    pin = device is not None and device.type == "cuda"
    return [
        {"image": x[i * cfg.batch_size : (i + 1) * cfg.batch_size].contiguous().pin_memory() if pin
         else x[i * cfg.batch_size : (i + 1) * cfg.batch_size].contiguous()}
        for i in range(num_batches)
    ]


def make_trainer(cfg: Config, gvae, critic, opt_g, opt_d, batches, device, seed: int, **kwargs) -> GVAETrainer:
    """A one-epoch ``GVAETrainer`` over ``batches`` with the bundle's loss weights (``kwargs``: trainer options)."""
    return GVAETrainer(
        device=device, max_epochs=1, train_data_loader=batches, epoch_length=len(batches), network=gvae,
        critic=critic, optimizer=opt_g, critic_optimizer=opt_d,
        loss_function=EncoderGeneratorLoss(REC_WEIGHT, KL_WEIGHT, ADV_WEIGHT, KL_WARMUP),
        critic_loss_function=CriticLoss(GP_WEIGHT), seed=seed, non_blocking=device.type == "cuda", **kwargs,
    )


def plain_loop(gvae: GVAE, critic, opt_g, opt_d, batches, device: torch.device, seed: int) -> None:
    """The same GVAE updates as ``GVAETrainer`` (objective "gvae", n_critic=1, float32), written out by hand."""
    gen = torch.Generator(device=device).manual_seed(seed)
    encoder, generator = gvae.encoder, gvae.generator
    low, high = gvae.config["logvar_clamp"]
    latent = gvae.latent_size
    encoder.train(), generator.train(), critic.train()
    for iteration, batch in enumerate(batches, start=1):
        x = batch["image"].to(device, non_blocking=device.type == "cuda")
        n = x.shape[0]
        # critic step on detached fakes: reconstructions and prior samples
        with torch.no_grad():
            mu, logvar = encoder(x)
            logvar = logvar.clamp(low, high)
            z_e = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=gen, device=device)
            z_p = torch.randn((n, latent), generator=gen, device=device)
            fakes = generator(torch.cat([z_e, z_p]))
        opt_d.zero_grad(set_to_none=True)
        # gradient penalty first, back-propagated on its own; then the Wasserstein term (gradients add up)
        reals = x.repeat(2, *([1] * (x.ndim - 1)))
        eps = torch.rand((2 * n,) + (1,) * (x.ndim - 1), generator=gen, device=device)
        interpolates = (eps * reals + (1.0 - eps) * fakes).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(interpolates).sum(), interpolates, create_graph=True)
        gp = (grad.flatten(1).norm(2, dim=1) - 1.0).pow(2).mean()
        (GP_WEIGHT * gp).backward()
        scores = critic(torch.cat([x, fakes]))
        loss_d = scores[n:].mean() - scores[:n].mean()
        loss_d.backward()
        opt_d.step()
        # encoder-generator step
        opt_g.zero_grad(set_to_none=True)
        mu, logvar = encoder(x)
        logvar = logvar.clamp(low, high)
        z_e = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=gen, device=device)
        z_p = torch.randn((n, latent), generator=gen, device=device)
        fakes = generator(torch.cat([z_e, z_p]))
        critic.requires_grad_(False)
        adv = -critic(fakes).mean()
        rec = (fakes[:n] - x).abs().mean()
        kl = (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).sum(1).mean()
        kl_weight = KL_WEIGHT * min(1.0, iteration / KL_WARMUP)
        loss_g = REC_WEIGHT * rec + kl_weight * kl + ADV_WEIGHT * adv
        loss_g.backward()
        opt_g.step()
        critic.requires_grad_(True)



def conv_reference(quick: bool, device: torch.device, dtype: torch.dtype = torch.float32):
    """A large 3x3 ``conv2d`` in both memory formats: returns ``(flops, {layout: callable}, (n, c, size))``."""
    n, c, s = (4, 64, 32) if quick else (16, 128, 64)
    x = torch.randn(n, c, s, s, device=device, dtype=dtype)
    w = torch.randn(c, c, 3, 3, device=device, dtype=dtype)
    layouts = {
        "contiguous": (x, w),
        "channels_last": (x.contiguous(memory_format=torch.channels_last),
                          w.contiguous(memory_format=torch.channels_last)),
    }
    with flop_counter() as fc:
        F.conv2d(x, w, padding=1)
    fns = {name: (lambda a=a, b=b: F.conv2d(a, b, padding=1)) for name, (a, b) in layouts.items()}
    for fn in fns.values():
        fn()  # warm-up
    return fc.get_total_flops(), fns, (n, c, s)



def trainer_and_plain_times(settings: ThroughputSettings, cfg: Config, iters: int, device: torch.device,
                            last: dict[str, Callable[[], float]] | None = None):
    """Time ``GVAETrainer`` and the plain loop on copies of the same networks in ``settings.reps`` interleaved
    repetitions of ``iters`` iterations (the two alternate in first place; each of ``last``'s arms runs after them).

    Returns ``(times, batches, (gvae, critic) trained by the trainer, (gvae, critic) trained by the plain loop)``.
    """
    batches = make_batches(cfg, iters, device)
    gvae_t, critic_t = make_networks(cfg, device)
    gvae_p, critic_p = copy.deepcopy(gvae_t), copy.deepcopy(critic_t)
    opt_g_t, opt_d_t = make_optimisers(gvae_t, critic_t)
    opt_g_p, opt_d_p = make_optimisers(gvae_p, critic_p)
    # warm-up both (allocator, oneDNN/cuDNN primitive caches) with the same seed, so that the copies stay equal
    make_trainer(cfg, gvae_t, critic_t, opt_g_t, opt_d_t, batches, device, 1000).run()
    plain_loop(gvae_p, critic_p, opt_g_p, opt_d_p, batches, device, 1000)
    last = last or {}
    times: dict[str, list[float]] = {name: [] for name in ["trainer", "plain", *last]}
    for r in range(settings.reps):
        # the trainer is built outside the timed region, as a user builds it once; each repetition reseeds both
        trainer = make_trainer(cfg, gvae_t, critic_t, opt_g_t, opt_d_t, batches, device, r)
        arms = {
            "trainer": lambda: timed(trainer.run, device, settings.clock),
            "plain": lambda: timed(lambda: plain_loop(gvae_p, critic_p, opt_g_p, opt_d_p, batches, device, r),
                                   device, settings.clock),
            **last,
        }
        for name in (["trainer", "plain"] if r % 2 == 0 else ["plain", "trainer"]) + list(last):
            times[name].append(arms[name]())
    return times, batches, (gvae_t, critic_t), (gvae_p, critic_p)


def figure_a_b(settings: ThroughputSettings, cfg: Config, device: torch.device, results: dict) -> None:
    """(a) engine vs plain loop, and (b) achieved FLOP/s vs a large conv2d, from the same repetitions."""
    conv_flops, conv_fns, conv_shape = conv_reference(settings.quick, device)
    # the reference convolution runs last in each repetition, so that trainer and plain loop each follow its
    # cache footprint equally often; best layout
    conv = {"conv": lambda: min(timed(fn, device, settings.clock) for fn in conv_fns.values())}
    times, batches, (gvae_t, critic_t), (gvae_p, critic_p) = trainer_and_plain_times(settings, cfg, settings.iters,
                                                                                     device, conv)

    diffs = [
        (a - b).abs().max().item()
        for m_t, m_p in ((gvae_t, gvae_p), (critic_t, critic_p))
        for a, b in zip(list(m_t.parameters()) + list(m_t.buffers()), list(m_p.parameters()) + list(m_p.buffers()))
        if a.is_floating_point()
    ]
    max_diff = max(diffs)
    k = settings.iters
    a_stats = ratio_stats(times["plain"], times["trainer"])  # trainer it/s over plain it/s
    it_s_trainer = k / statistics.median(times["trainer"])
    it_s_plain = k / statistics.median(times["plain"])
    print(f"\n(a) engine overhead -- {cfg.describe()}, objective gvae, n_critic 1, float32, "
          f"{k} iterations x {settings.reps} interleaved repetitions")
    print(f"    GVAETrainer {it_s_trainer:.2f} it/s, plain PyTorch loop {it_s_plain:.2f} it/s")
    print(f"    ratio trainer/plain {fmt_ratio(a_stats, settings.reps)}  target >= 0.95: {verdict(a_stats[0] >= 0.95)}")
    print(f"    same updates: weights after {k * (settings.reps + 1)} iterations "
          f"{'identical' if max_diff == 0 else f'differ by at most {max_diff:.2e}'}")
    results["a"] = {"config": asdict(cfg), "trainer_it_s": it_s_trainer, "plain_it_s": it_s_plain,
                    "ratio": a_stats, "max_weight_diff": max_diff, "target": 0.95, "met": a_stats[0] >= 0.95}

    # (b) FLOPs of one training iteration, counted on a copy so that the compared pair is not disturbed
    g_c, c_c = copy.deepcopy(gvae_p), copy.deepcopy(critic_p)
    o_g, o_d = make_optimisers(g_c, c_c)
    with flop_counter() as fc:
        plain_loop(g_c, c_c, o_g, o_d, batches[:1], device, 0)
    step_flops = fc.get_total_flops()
    achieved = [step_flops * k / t for t in times["trainer"]]
    peak = [conv_flops / t for t in times["conv"]]
    b_stats = ratio_stats(achieved, peak)
    print(f"\n(b) achieved FLOP/s of the training step -- same configuration; {step_flops / 1e9:.2f} GFLOP per "
          f"iteration (FlopCounterMode, gradient penalty's double backward included)")
    print(f"    train step {statistics.median(achieved) / 1e9:.1f} GFLOP/s, reference conv2d "
          f"{statistics.median(peak) / 1e9:.1f} GFLOP/s (3x3, batch {conv_shape[0]}, {conv_shape[1]}->{conv_shape[1]} "
          f"channels, {conv_shape[2]}x{conv_shape[2]}, float32, best of contiguous/channels-last)")
    print(f"    ratio {fmt_ratio(b_stats, settings.reps)}  target >= 0.5: {verdict(b_stats[0] >= 0.5)}")
    results["b"] = {"config": asdict(cfg), "gflop_per_iteration": step_flops / 1e9,
                    "step_gflop_s": statistics.median(achieved) / 1e9, "conv_gflop_s": statistics.median(peak) / 1e9,
                    "ratio": b_stats, "target": 0.5, "met": b_stats[0] >= 0.5}


def figure_a_fixed_cost(settings: ThroughputSettings, device: torch.device, results: dict) -> None:
    """The engine's fixed cost per iteration, on a network so small that the step is mostly Python and kernel
    launches: on a CPU the closest stand-in for a GPU step, where (a) is bound by that cost."""
    cfg = Config(image_size=16, batch_size=2, base_channels=4, max_channels=8, latent_size=8)
    iters = 4 if settings.quick else 20
    times = trainer_and_plain_times(settings, cfg, iters, device)[0]
    stats = ratio_stats(times["plain"], times["trainer"])
    per_it = {name: statistics.median(t) / iters * 1e3 for name, t in times.items()}
    fixed = statistics.median(t - p for t, p in zip(times["trainer"], times["plain"])) / iters * 1e3
    print(f"\n(a) the engine's fixed cost -- {cfg.describe()}, {iters} iterations x {settings.reps} interleaved "
          f"repetitions (a step of mostly Python and kernel launches, like the bundle's network on a GPU)")
    print(f"    GVAETrainer {per_it['trainer']:.2f} ms/iteration, plain loop {per_it['plain']:.2f} ms: the engine adds "
          f"{fixed:.2f} ms per iteration; ratio trainer/plain {fmt_ratio(stats, settings.reps)}")
    results["a_fixed_cost"] = {"config": asdict(cfg), "trainer_ms": per_it["trainer"], "plain_ms": per_it["plain"],
                               "engine_ms_per_iteration": fixed, "ratio": stats}


def figure_b_resnet(settings: ThroughputSettings, device: torch.device, results: dict) -> None:
    """(b) for the resnet architecture (denser convolutions) at the same size and batch."""
    cfg = Config(architecture="resnet")
    batches = make_batches(cfg, 1, device)
    gvae, critic = make_networks(cfg, device, channels_last=True)
    opt_g, opt_d = make_optimisers(gvae, critic)
    conv_flops, conv_fns, _ = conv_reference(False, device)
    g_c, c_c = copy.deepcopy(gvae), copy.deepcopy(critic)
    o_g, o_d = make_optimisers(g_c, c_c)
    with flop_counter() as fc:
        plain_loop(g_c, c_c, o_g, o_d, batches, device, 0)
    step_flops = fc.get_total_flops()
    make_trainer(cfg, gvae, critic, opt_g, opt_d, batches, device, 0).run()  # warm-up
    reps = 3
    times = interleaved({
        "trainer": lambda: make_trainer(cfg, gvae, critic, opt_g, opt_d, batches, device, 0).run(),
        "conv": lambda: min(timed(fn, device, settings.clock) for fn in conv_fns.values()),
    }, reps, device, settings.clock)
    b_stats = ratio_stats([step_flops / t for t in times["trainer"]], [conv_flops / t for t in times["conv"]])
    print(f"    architecture=resnet, channels-last ({cfg.describe()}): {step_flops / 1e9:.1f} GFLOP/iteration, "
          f"{step_flops / statistics.median(times['trainer']) / 1e9:.1f} GFLOP/s; ratio {fmt_ratio(b_stats, reps)}  "
          f"target >= 0.5: {verdict(b_stats[0] >= 0.5)}")
    results["b_resnet"] = {"config": asdict(cfg), "gflop_per_iteration": step_flops / 1e9, "ratio": b_stats,
                           "met": b_stats[0] >= 0.5}


def figure_options(settings: ThroughputSettings, cfg: Config, device: torch.device, results: dict) -> None:
    """Step-time ratios of the speed options against the default trainer (same configuration)."""
    iters = settings.iters
    batches = make_batches(cfg, iters, device)
    variants = {
        "default": ({}, {}),
        "channels_last": ({"channels_last": True}, {}),
        "amp_bf16" if device.type == "cpu" else "amp_fp16": ({}, {"amp": True}),
        "channels_last+amp": ({"channels_last": True}, {"amp": True}),
        "float_outputs=False,check_finite=False": ({}, {"float_outputs": False, "check_finite": False}),
    }
    state = {}
    for name, (net_kw, tr_kw) in variants.items():
        gvae, critic = make_networks(cfg, device, **net_kw)
        opts = make_optimisers(gvae, critic)
        state[name] = (gvae, critic, opts, tr_kw)
        make_trainer(cfg, gvae, critic, *opts, batches[:1], device, 0, **tr_kw).run()  # warm-up

    def arm(name):
        gvae, critic, opts, tr_kw = state[name]
        trainer = make_trainer(cfg, gvae, critic, *opts, batches, device, 0, **tr_kw)
        return trainer.run

    times = interleaved({name: (lambda n=name: arm(n)()) for name in variants}, settings.reps, device, settings.clock)
    print(f"\n(options) step time of each setting relative to the default trainer ({cfg.describe()}; "
          f"> 1 = faster), {iters} iterations x {settings.reps} interleaved repetitions")
    results["options"] = {}
    for name in variants:
        if name == "default":
            continue
        stats = ratio_stats(times["default"], times[name])
        print(f"    {name:40s} speed-up {fmt_ratio(stats, settings.reps)}")
        results["options"][name] = stats
    if not settings.quick:
        figure_channels_last_3d(settings, device, results)
    if settings.compile:
        figure_compile(settings, cfg, device, results)


def figure_channels_last_3d(settings: ThroughputSettings, device: torch.device, results: dict) -> None:
    """channels_last_3d against contiguous for the gvae_brain3d bundle's conv network at 64^3."""
    cfg = Config(3, 64, 4, "conv", 16, 128, 64)
    batches = make_batches(cfg, 1, device)
    state = {}
    for channels_last in (False, True):
        gvae, critic = make_networks(cfg, device, channels_last=channels_last)
        opts = make_optimisers(gvae, critic)
        state[channels_last] = (gvae, critic, opts)
        make_trainer(cfg, gvae, critic, *opts, batches, device, 0).run()  # warm-up
    reps = 5
    times = interleaved({
        str(cl): (lambda cl=cl: make_trainer(cfg, state[cl][0], state[cl][1], *state[cl][2], batches, device, 0).run())
        for cl in (False, True)
    }, reps, device, settings.clock)
    stats = ratio_stats(times["False"], times["True"])
    print(f"    {'channels_last (' + cfg.describe() + ')':40s} speed-up {fmt_ratio(stats, reps)}")
    results["options"]["channels_last_3d"] = stats


def figure_compile(settings: ThroughputSettings, cfg: Config, device: torch.device, results: dict) -> None:
    """torch.compile of encoder and generator (the critic's double backward cannot be compiled)."""
    iters = settings.iters
    batches = make_batches(cfg, iters, device)
    gvae_e, critic_e = make_networks(cfg, device)
    gvae_c, critic_c = copy.deepcopy(gvae_e), copy.deepcopy(critic_e)
    opts_e, opts_c = make_optimisers(gvae_e, critic_e), make_optimisers(gvae_c, critic_c)
    enc, gen = maybe_compile(gvae_c.encoder, True), maybe_compile(gvae_c.generator, True)

    def compiled():
        make_trainer(cfg, gvae_c, critic_c, *opts_c, batches, device, 0, encoder=enc, generator=gen).run()

    # wall clock: inductor compiles in worker processes whose CPU time is not this process's
    first = timed(lambda: make_trainer(cfg, gvae_c, critic_c, *opts_c, batches[:1], device, 0, encoder=enc,
                                       generator=gen).run(), device, time.perf_counter)
    make_trainer(cfg, gvae_e, critic_e, *opts_e, batches[:1], device, 0).run()
    times = interleaved({
        "eager": lambda: make_trainer(cfg, gvae_e, critic_e, *opts_e, batches, device, 0).run(),
        "compiled": compiled,
    }, settings.reps, device, settings.clock)
    stats = ratio_stats(times["eager"], times["compiled"])
    per_it_saving = (statistics.median(times["eager"]) - statistics.median(times["compiled"])) / iters
    break_even = first / per_it_saving if per_it_saving > 0 else float("inf")
    print(f"    {'torch.compile(encoder, generator)':40s} speed-up {fmt_ratio(stats, settings.reps)}; first iteration "
          f"(compilation, wall clock) {first:.1f} s, break-even after ~{break_even:.0f} iterations")
    results["options"]["compile"] = {"ratio": stats, "first_iteration_s": first, "break_even_iterations": break_even}


def figure_c(settings: ThroughputSettings, cfg: Config, device: torch.device, results: dict) -> None:
    """(c) pooled batched synthesis vs per-item synthesis."""
    gvae, _ = make_networks(cfg, device)
    gvae.eval()
    n = 16 if settings.quick else 64

    def per_item():
        for _ in generate(gvae, n, seed=0, batch_size=1):
            pass

    def pooled():
        for _ in generate(gvae, n, seed=0, batch_size=n):
            pass

    per_item(), pooled()  # warm-up
    times = interleaved({"per_item": per_item, "pooled": pooled}, settings.reps, device, settings.clock)
    stats = ratio_stats(times["per_item"], times["pooled"])
    a = torch.cat([img for img, _ in generate(gvae, n, seed=0, batch_size=1)])
    b = torch.cat([img for img, _ in generate(gvae, n, seed=0, batch_size=n)])
    print(f"\n(c) synthesis, {n} samples of {cfg.describe().rsplit(', batch', 1)[0]} "
          f"(monai_gvae.bundle.generate: decode + unpack image/label)")
    print(f"    pooled (one batch of {n}) {n / statistics.median(times['pooled']):.1f} items/s, per-item "
          f"{n / statistics.median(times['per_item']):.1f} items/s; max |difference| of the images "
          f"{(a - b).abs().max().item():.1e}")
    print(f"    ratio pooled/per-item {fmt_ratio(stats, settings.reps)}  target >= 10: {verdict(stats[0] >= 10)}")
    # the fastest pooled setting on this device against the same per-item baseline
    fast = copy.deepcopy(gvae)
    prepare_network(fast, device, channels_last=True)
    amp_dtype = torch.bfloat16 if device.type == "cpu" else torch.float16

    def pooled_fast():
        with torch.autocast(device.type, dtype=amp_dtype):
            for _ in generate(fast, n, seed=0, batch_size=n):
                pass

    pooled_fast()
    fast_times = interleaved({"per_item": per_item, "pooled_fast": pooled_fast}, settings.reps, device, settings.clock)
    fast_stats = ratio_stats(fast_times["per_item"], fast_times["pooled_fast"])
    print(f"    pooled with channels-last + {str(amp_dtype).split('.')[-1]} autocast "
          f"{n / statistics.median(fast_times['pooled_fast']):.1f} items/s: ratio to per-item float32 "
          f"{fmt_ratio(fast_stats, settings.reps)}")
    # What batching can gain at most here: per-item generation against the device's convolution throughput.
    with flop_counter() as fc, torch.no_grad():
        gvae.generator(torch.zeros(1, gvae.latent_size, device=device))
    item_flops = fc.get_total_flops()
    conv_flops, conv_fns, _ = conv_reference(settings.quick, device)
    conv_rate = conv_flops / statistics.median(
        min(timed(fn, device, settings.clock) for fn in conv_fns.values()) for _ in range(max(3, settings.reps // 3)))
    item_rate = item_flops * n / statistics.median(times["per_item"])
    bound = conv_rate / item_rate
    print(f"    bound: the generator costs {item_flops / 1e6:.1f} MFLOP per item; per-item generation runs at "
          f"{item_rate / 1e9:.1f} GFLOP/s, {item_rate / conv_rate:.2f} of the reference conv2d's "
          f"{conv_rate / 1e9:.1f} GFLOP/s, so pooled generation running at the full reference throughput would be "
          f"{bound:.1f}x per-item{'' if bound >= 10 else ': the 10x target is out of reach on this device'}")
    pool_stats, pool_items_s, item_items_s = transform_pool_vs_per_item(settings, cfg, gvae, n, device)
    print(f"    GVAESynthesize (prior mode, on the CPU, {n} calls on image + label items; every call consumes one "
          f"generated sample): pool of {n} filled in one batch {pool_items_s:.1f} items/s, pool of 1 "
          "(per-item generation) "
          f"{item_items_s:.1f} items/s")
    print(f"    ratio {fmt_ratio(pool_stats, settings.reps)}  target >= 10: {verdict(pool_stats[0] >= 10)}")
    results["c"] = {"n": n, "ratio": stats, "target": 10, "met": stats[0] >= 10, "ratio_fast_pooled": fast_stats,
                    "per_item_flops": item_flops, "per_item_flop_rate": item_rate, "conv_flop_rate": conv_rate,
                    "ratio_bound": bound,
                    "pooled_items_s": n / statistics.median(times["pooled"]),
                    "per_item_items_s": n / statistics.median(times["per_item"]),
                    "transform_ratio": pool_stats, "transform_pool_items_s": pool_items_s,
                    "transform_per_item_items_s": item_items_s, "transform_met": pool_stats[0] >= 10}


def transform_pool_vs_per_item(settings: ThroughputSettings, cfg: Config, model: GVAE, n: int, device: torch.device):
    """``GVAESynthesize`` with a pool of ``n`` filled in one batch against a pool of 1 (one generation per call).

    ``refresh_every`` equals the pool size in both, so every call consumes one freshly generated sample and the
    pool's generation cost is inside the timing: the comparison is batched against per-item generation through
    the same transform (same output formatting, metadata and label decoding).
    """
    from monai_gvae.transforms import GVAESynthesize

    slices = synthetic_slices(4, image_size=cfg.image_size, num_seg_classes=NUM_CLASSES - 1)
    items = [(d["image"], d["label"]) for d in slices]
    # on the CPU, where the transform runs in DataLoader workers
    pooled = GVAESynthesize(model, prob=1.0, intensity_range=(0.0, 1.0), pool_size=n, batch_size=n,
                            refresh_every=n, device="cpu")
    per_item = GVAESynthesize(pooled.pool.model, prob=1.0, intensity_range=(0.0, 1.0), pool_size=1, batch_size=1,
                              refresh_every=1, device="cpu")

    def arm(synth):
        def run():
            synth.set_random_state(0)  # empties the pool: the n calls below generate n samples
            for i in range(n):
                image, label = synth(*items[i % len(items)])
            assert label.shape == items[0][1].shape
        return run

    arm(pooled)(), arm(per_item)()  # warm-up
    times = interleaved({"per_item": arm(per_item), "pooled": arm(pooled)}, settings.reps, device, settings.clock)
    return (ratio_stats(times["per_item"], times["pooled"]), n / statistics.median(times["pooled"]),
            n / statistics.median(times["per_item"]))


def figure_d(settings: ThroughputSettings, cfg: Config, device: torch.device, results: dict) -> None:
    """(d) a segmentation training epoch with vs without GVAESynthesized, DataLoader with 2 persistent workers."""
    from monai_gvae.transforms import GVAESamplePool, GVAESynthesized

    gvae, _ = make_networks(cfg, device)
    prob = 0.5
    # one model shared by the workers' pools (the pool is copied per worker; the model is not)
    pool = GVAESamplePool(gvae.cpu().eval(), pool_size=64)
    synth = GVAESynthesized(["image", "label"], pool, prob=prob, intensity_range=(0.0, 1.0))
    arms = {"without": segmentation_epoch(settings, cfg, device, None),
            "with": segmentation_epoch(settings, cfg, device, synth)}
    for run in arms.values():
        run()  # warm-up: workers start (persistent), pools fill, primitive caches warm
    reps = 2 if settings.quick else max(11, settings.reps)
    times = interleaved(arms, reps, device, time.perf_counter)  # wall clock: the workers' time is not ours
    # overhead = with / without - 1, per repetition
    ratios = sorted(b / a - 1 for a, b in zip(times["without"], times["with"]))
    med = statistics.median(ratios)
    print(f"\n(d) segmentation epoch ({SEG_ITEMS[settings.quick]} items of {cfg.image_size}x{cfg.image_size}, batch 8, "
          f"MONAI UNet channels {SEG_CHANNELS[settings.quick]}, num_res_units 1, DiceCE, Adam; DataLoader with 2 "
          f"persistent workers; wall clock) with vs without GVAESynthesized(prob={prob}, prior mode, pool 64)")
    print(f"    without {statistics.median(times['without']):.2f} s, with {statistics.median(times['with']):.2f} s per "
          f"epoch; overhead {100 * med:+.1f} % (median of {reps}, min-max {100 * ratios[0]:+.1f} to "
          f"{100 * ratios[-1]:+.1f} %)  target <= 10 %: {verdict(med <= 0.10)}")
    results["d"] = {"measured": True, "overhead": med, "overhead_min_max": (ratios[0], ratios[-1]),
                    "without_s": statistics.median(times["without"]), "with_s": statistics.median(times["with"]),
                    "target": 0.10, "met": med <= 0.10}


SEG_ITEMS = {False: 128, True: 16}
SEG_CHANNELS = {False: (8, 16, 32, 64), True: (4, 8, 16)}


def segmentation_epoch(
    settings: ThroughputSettings, cfg: Config, device: torch.device, synth_transform=None
) -> Callable[[], None]:
    """One epoch of the segmentation benchmark's MONAI UNet on 2D slices, as a callable, through a DataLoader
    with 2 persistent workers (``synth_transform``, a dictionary transform on ``image``/``label``, goes before the
    flip)."""
    from monai.data import DataLoader, Dataset
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet
    from monai.transforms import Compose, EnsureTyped, RandFlipd

    data = synthetic_slices(SEG_ITEMS[settings.quick], image_size=cfg.image_size, num_seg_classes=NUM_CLASSES - 1)
    data = [{"image": d["image"], "label": d["label"]} for d in data]
    chain = [EnsureTyped(keys=["image", "label"])]
    if synth_transform is not None:
        chain.append(synth_transform)
    chain += [RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=1),
              EnsureTyped(keys=["image", "label"], track_meta=False)]
    loader = DataLoader(Dataset(data, Compose(chain)), batch_size=8, shuffle=True, num_workers=2,
                        persistent_workers=True, pin_memory=device.type == "cuda")
    channels = SEG_CHANNELS[settings.quick]
    torch.manual_seed(0)
    net = UNet(2, 1, NUM_CLASSES, channels=channels, strides=(2,) * (len(channels) - 1), num_res_units=1).to(device)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.Adam(net.parameters(), 1e-3)

    def epoch():
        for batch in loader:
            x = batch["image"].to(device, non_blocking=True)
            y = batch["label"].to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            loss_fn(net(x), y).backward()
            opt.step()

    epoch.loader = loader  # keeps the workers referenced with the callable
    return epoch


def peak_step_memory(cfg: Config, device: torch.device, gradient_checkpointing: bool, amp: bool,
                     penalty_first: bool = True, critic_chunk_size: int | None = None,
                     clock: Clock = time.process_time) -> tuple[float, float]:
    """Peak bytes allocated by one GVAETrainer iteration above what was live before it, and its seconds.

    Networks in the channels-last memory format, as the bundles build them (``channels_last: true``).

    CPU: the peak of the running sum of PyTorch's CPU-allocator allocation/free events recorded by
    ``torch.profiler`` (``profile_memory=True``) during the third iteration (the first allocates the optimiser
    state, the second is timed without the profiler). CUDA: ``torch.cuda.max_memory_allocated``.
    """
    from ignite.engine import Events

    batches = make_batches(cfg, 1, device) * 3
    gvae, critic = make_networks(cfg, device, gradient_checkpointing=gradient_checkpointing, channels_last=True)
    opt_g, opt_d = make_optimisers(gvae, critic)
    trainer = make_trainer(cfg, gvae, critic, opt_g, opt_d, batches, device, 0, amp=amp,
                           critic_chunk_size=critic_chunk_size)
    trainer.penalty_first = penalty_first  # False: one joint critic backward (what a DDP critic does)
    out: dict[str, float] = {}

    def started(engine):
        sync(device)
        out["t0"] = clock()
        if engine.state.iteration == 3:
            if device.type == "cuda":
                out["base"] = torch.cuda.memory_allocated(device)
                torch.cuda.reset_peak_memory_stats(device)
            else:
                from torch.profiler import ProfilerActivity, profile

                out["prof"] = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
                out["prof"].__enter__()

    def completed(engine):
        sync(device)
        if engine.state.iteration == 2:
            out["seconds"] = clock() - out["t0"]
        if engine.state.iteration == 3:
            if device.type == "cuda":
                out["peak"] = torch.cuda.max_memory_allocated(device) - out["base"]
            else:
                prof = out.pop("prof")
                prof.__exit__(None, None, None)
                out["peak"] = profiler_peak_bytes(prof)

    trainer.add_event_handler(Events.ITERATION_STARTED, started)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, completed)
    trainer.run()
    return out["peak"], out["seconds"]



def figure_e(settings: ThroughputSettings, device: torch.device, results: dict) -> None:
    """(e) peak memory of a 3D training step with/without gradient checkpointing and mixed precision."""
    if settings.quick:
        configs = [Config(3, 16, 2, "resnet", 4, 8, 8)]
    else:
        # gvae_brain3d's network and batch; a 3D resnet
        configs = [Config(3, 64, 4, "conv", 16, 128, 256), Config(3, 64, 2, "resnet", 8, 64, 64)]
    amp_name = "bf16" if device.type == "cpu" else "fp16"
    print("\n(e) peak memory of one 3D GVAETrainer iteration above the memory live before it "
          + ("(torch.profiler allocation events of PyTorch's CPU allocator)" if device.type == "cpu"
             else "(torch.cuda.max_memory_allocated)"))
    results["e"] = []
    chunk = CRITIC_CHUNK_SIZE
    for cfg in configs:
        rows = {}
        for ckpt, amp, chunked in ((False, False, False), (False, True, False), (True, False, False),
                                   (True, True, False), (False, False, True), (True, False, True), (True, True, True)):
            rows[(ckpt, amp, chunked)] = peak_step_memory(
                cfg, device, ckpt, amp, critic_chunk_size=chunk if chunked else None, clock=settings.clock)
        base = rows[(False, False, False)][0]
        print(f"    {cfg.describe()}, channels-last:")
        for (ckpt, amp, chunked), (peak, secs) in rows.items():
            label = (f"checkpointing {'on ' if ckpt else 'off'}, {amp_name + ' autocast' if amp else 'float32       '}"
                     f", critic {(f'in chunks of {chunk}' if chunked else 'whole batch'):<{13 + len(str(chunk))}}")
            print(f"      {label}: {peak / 2**20:8.1f} MiB ({100 * (peak / base - 1):+6.1f} %), step {secs:.2f} s")
        joint, joint_secs = peak_step_memory(cfg, device, False, False, penalty_first=False, clock=settings.clock)
        print(f"      (one joint critic backward, as under DDP, checkpointing off, float32: {joint / 2**20:8.1f} MiB; "
              f"back-propagating the penalty first saves {100 * (1 - base / joint):.1f} %, step {joint_secs:.2f} s)")
        cut_alone = 1 - rows[(True, False, False)][0] / base
        cut = 1 - rows[(True, False, True)][0] / base
        # round(...) + 0.0 prints a cut that rounds to zero as 0.0, not -0.0
        print(f"      checkpointing alone cuts the float32 peak by {round(100 * cut_alone, 1) + 0.0:.1f} %; with the "
              f"critic step in chunks of {chunk} (critic_chunk_size) by {100 * cut:.1f} %  target >= 30 %: "
              f"{verdict(cut >= 0.3)}")
        results["e"].append({"config": asdict(cfg), "cut": cut, "cut_checkpointing_alone": cut_alone,
                             "critic_chunk_size": chunk, "met": cut >= 0.3, "joint_backward_peak": joint,
                             "rows": {f"ckpt={k[0]},amp={k[1]},chunks={k[2]}": v for k, v in rows.items()}})


# --------------------------------------------------------------------------------------------- main


def _figures(settings: ThroughputSettings, cfg: Config, device: torch.device, results: dict):
    return [
        ({"a", "b"}, lambda: figure_a_b(settings, cfg, device, results)),
        ({"b"} if not settings.quick else set(), lambda: figure_b_resnet(settings, device, results)),
        ({"a"}, lambda: figure_a_fixed_cost(settings, device, results)),
        ({"options"}, lambda: figure_options(settings, cfg, device, results)),
        ({"c"}, lambda: figure_c(settings, cfg, device, results)),
        ({"d"}, lambda: figure_d(settings, cfg, device, results)),
        ({"e"}, lambda: figure_e(settings, device, results)),
    ]


FIGURES = ("a", "b", "options", "c", "d", "e")
"""The figure names :func:`run_figures` accepts."""


def run_figures(settings: ThroughputSettings, device: torch.device, only: Collection[str], results: dict) -> dict:
    """Print and measure the figures named in ``only`` (among :data:`FIGURES`) on the bundle's configuration
    (:func:`bundle_config`), each section followed by its wall time; the figures go into ``results``.

    Raises:
        ValueError: an unknown figure name.

    Example::

        results = run_figures(ThroughputSettings(quick=True, reps=3, iters=1), torch.device("cpu"), {"a"}, {})
        results["a"]["ratio"]  # trainer it/s over plain-loop it/s: (median, min, max)
    """
    unknown = sorted(set(only) - set(FIGURES))
    if unknown:
        raise ValueError(f"unknown figure(s) {unknown}; choose from {FIGURES}.")
    for names, run in _figures(settings, bundle_config(settings.quick), device, results):
        if names & set(only):
            section_start = time.perf_counter()
            run()
            print(f"    [{time.perf_counter() - section_start:.1f} s wall]")
    return results
