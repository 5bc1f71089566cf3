"""What the reliability machinery costs (docs/reliability.md): the divergence guard per iteration, a crash-safe
checkpoint (state dicts + random states + fsync + rename) against a plain ``torch.save``, and the random-state
snapshot. Baseline and variant are timed in the same process, interleaved, on the gvae_brain2d bundle's default
network (conv, base 16, latent 64, 64x64, batch 16) and on data of its shape.

    python examples/reliability_overhead.py [--iterations 30] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import torch
from monai.data import DataLoader, Dataset

from monai_gvae.data import load_brain_slices
from monai_gvae.engines import GVAETrainer
from monai_gvae.handlers import DivergenceGuard, GVAECheckpointHandler, atomic_torch_save, capture_rng_state
from monai_gvae.networks import GVAE, GVAECritic
from monai_gvae.transforms import PackImageLabeld


def make_trainer(iterations: int, guard: bool) -> GVAETrainer:
    data = Dataset(load_brain_slices("train")[:16], transform=PackImageLabeld(num_classes=4))
    loader = DataLoader(data, batch_size=16, shuffle=True, num_workers=0, drop_last=True)
    gvae = GVAE(2, 5, 64, 64, architecture="conv", base_channels=16, max_channels=128, image_channels=1, num_classes=4)
    critic = GVAECritic(2, 5, 64, architecture="conv", base_channels=16, max_channels=128)
    trainer = GVAETrainer(
        "cpu", iterations, loader, gvae, critic,
        torch.optim.Adam(gvae.parameters(), 1e-3, betas=(0.5, 0.9)),
        torch.optim.Adam(critic.parameters(), 1e-4, betas=(0.5, 0.9)), seed=0,
    )
    if guard:
        DivergenceGuard().attach(trainer)
    return trainer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s)")

    times = {False: [], True: []}
    for _ in range(args.repeats):
        for guard in (False, True):
            trainer = make_trainer(args.iterations, guard)
            start = time.perf_counter()
            trainer.run()
            times[guard].append((time.perf_counter() - start) / args.iterations)
    base, guarded = statistics.median(times[False]), statistics.median(times[True])
    print(f"iteration without guard: {base * 1e3:.1f} ms, with DivergenceGuard: {guarded * 1e3:.1f} ms "
          f"(ratio {guarded / base:.3f}; medians of {args.repeats})")

    trainer = make_trainer(1, False)
    trainer.run()
    # the guard's own work, isolated from the (noisy) iteration time: one fused norm over each optimiser's gradients
    from monai_gvae.handlers.divergence import _grads_finite

    grads = [[p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
             for opt in (trainer.optimizer, trainer.critic_optimizer)]
    start = time.perf_counter()
    for _ in range(100):
        for g in grads:
            _grads_finite(g)
    per_iteration = (time.perf_counter() - start) / 100
    print(f"guard check per iteration (both steps, {sum(g.numel() for gs in grads for g in gs) / 1e6:.2f} M gradients): "
          f"{per_iteration * 1e3:.2f} ms = {per_iteration / base * 100:.2f} % of the unguarded iteration")
    with tempfile.TemporaryDirectory() as tmp:
        handler = GVAECheckpointHandler(tmp, {"gvae": trainer.network, "critic": trainer.critic,
                                              "optimizer": trainer.optimizer, "critic_optimizer": trainer.critic_optimizer})
        handler.attach(trainer)
        plain_t, safe_t, rng_t = [], [], []
        for i in range(5):
            state = {"gvae": trainer.network.state_dict(), "critic": trainer.critic.state_dict(),
                     "optimizer": trainer.optimizer.state_dict(), "critic_optimizer": trainer.critic_optimizer.state_dict(),
                     "trainer": trainer.state_dict()}
            start = time.perf_counter()
            torch.save(state, os.path.join(tmp, f"plain{i}.pt"))
            plain_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            atomic_torch_save(handler.checkpoint(), os.path.join(tmp, f"safe{i}.pt"))
            safe_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            capture_rng_state(trainer)
            rng_t.append(time.perf_counter() - start)
        plain_size = os.path.getsize(os.path.join(tmp, "plain0.pt"))
        safe_size = os.path.getsize(os.path.join(tmp, "safe0.pt"))
    print(f"checkpoint: plain torch.save {statistics.median(plain_t) * 1e3:.1f} ms ({plain_size / 1e6:.2f} MB), "
          f"crash-safe {statistics.median(safe_t) * 1e3:.1f} ms ({safe_size / 1e6:.2f} MB; finite check, random "
          f"states, config, fsync, rename); random-state snapshot {statistics.median(rng_t) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
