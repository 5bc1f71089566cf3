"""Regenerate the GVAE paper's Tables 4-7 on your own data: GVAE, VAE, WGAN-GP, VAE-GAN and alpha-GAN trained by the
same code.

Trains the five objectives of :class:`monai_gvae.engines.GVAETrainer` (``gvae``, ``vae``, ``wgan_gp``, ``vaegan``,
``alpha_gan``) with the same networks, data, batch size and budget, sweeps GVAE's latent size (Table 5), scores every run with
``monai_gvae.metrics`` and writes into ``--output-dir``:

* ``tables.md`` -- Markdown Tables 4-7 with the protocol (command, seeds, budget, hardware, kernels, k) in the
  header and a verdict per metric that calls a difference only when it exceeds the spread over seeds;
* ``results.json`` -- every number per run;
* ``samples_<model>_z<latent>_seed<seed>.png`` / ``reconstructions_<model>_seed<seed>.png`` -- sample grids;
* ``checkpoints/*.pt`` -- the trained networks (``GVAE`` state dict under ``"gvae"``, critic under ``"critic"``,
  alpha-GAN's code critic under ``"code_critic"``).

Nothing existing is overwritten unless ``--overwrite``. The data loading, training, scoring and tables are package
code (``monai_gvae.benchmarks.paper_tables`` and ``.paper_report``); this script is the recipe.

Examples::

    # Fashion-MNIST from Debian's dataset-fashion-mnist, 1 minute of training per run, 3 seeds
    python examples/paper_tables.py --dataset fashion-mnist --data-dir /usr/share/datasets/fashion-mnist \\
        --budget-minutes 1 --seeds 3 --output-dir runs/fmnist_tables
    # a smoke test in seconds
    python examples/paper_tables.py --dataset mnist --data-dir PATH --quick --output-dir /tmp/quick

Budgets: ``--budget-minutes`` gives every run the same wall-clock training time (the iterations each model
reached are reported beside it); ``--budget-iterations`` gives every run the same iterations (the wall-clock
time is reported). A GVAE iteration costs several VAE iterations (critic step, twice the generator batch).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import shlex
import sys
import time
from pathlib import Path

import torch

from monai_gvae.benchmarks.paper_report import git_commit, hardware_summary, write_tables
from monai_gvae.benchmarks.paper_tables import (
    DATASETS, MODEL_NAMES, MODELS, PaperTablesSettings, evaluate_run, plan_runs, prepare_evaluation, save_run,
    train_run,
)
from monai_gvae.benchmarks.report import command_line, write_json
from monai_gvae.bundle import save_sample_grid


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--data-dir", required=True,
                   help="IDX folder (mnist, fashion-mnist), LMDB folder (lsun) or image folder")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--budget-minutes", type=float, help="wall-clock training time per run")
    budget.add_argument("--budget-iterations", type=int, help="training iterations per run")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..S-1 for Tables 4, 6, 7")
    p.add_argument("--sweep-seeds", type=int, default=1, help="seeds for the latent sweep (Table 5)")
    p.add_argument("--latent-sizes", type=int, nargs="+", default=[100, 500, 1000, 2000], help="Table 5 latent sizes")
    p.add_argument("--latent-size", type=int, default=1000, help="latent size of Tables 4, 6, 7 (the paper's best)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--overwrite", action="store_true", help="allow writing into an output folder that has results")
    p.add_argument("--quick", action="store_true", help="tiny networks, few iterations and samples: a smoke test")
    p.add_argument("--image-size", type=int, default=None,
                   help="network input size (default 32 for MNIST, 64 otherwise)")
    p.add_argument("--channels", type=int, default=1, help="image channels for folder datasets (1 or 3)")
    p.add_argument("--binarize", action="store_true",
                   help="threshold pixels at 0.5 (binarised MNIST, Bernoulli likelihood)")
    p.add_argument("--likelihood", choices=("auto", "bernoulli", "discretized_logistic", "discretized_gaussian"),
                   default="auto")
    p.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--architecture", default="conv", choices=("conv", "resnet"))
    p.add_argument("--base-channels", type=int, default=16)
    p.add_argument("--max-channels", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--critic-lr", type=float, default=1e-4)
    p.add_argument("--rec-weight", type=float, default=1.0)
    p.add_argument("--kl-weight", type=float, default=1e-3)
    p.add_argument("--kl-warmup", type=int, default=200)
    p.add_argument("--adv-weight", type=float, default=1e-2)
    p.add_argument("--gp-weight", type=float, default=10.0)
    p.add_argument("--n-critic", type=int, default=1)
    p.add_argument("--eval-samples", type=int, default=1000, help="generated and test images for MMD, MS-SSIM and FD")
    p.add_argument("--mmd-batch", type=int, default=500)
    p.add_argument("--lik-images", type=int, default=1000, help="test images for reconstruction, KL and ELBO")
    p.add_argument("--elbo-samples", type=int, default=4)
    p.add_argument("--iw-k", type=int, default=5000)
    p.add_argument("--iw-images", type=int, default=24)
    p.add_argument("--iw-chunk", type=int, default=64)
    p.add_argument("--classifier-epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machines are shared)")
    args = p.parse_args(argv)
    if args.quick:
        args.base_channels, args.max_channels, args.batch_size = 4, 8, 16
        args.latent_size = 8
        if args.latent_sizes == p.get_default("latent_sizes"):
            args.latent_sizes = [4, 8]
        if not args.budget_minutes and not args.budget_iterations:
            args.budget_iterations = 3
        args.train_limit = args.train_limit or 256
        args.eval_samples, args.mmd_batch, args.lik_images, args.elbo_samples = 32, 16, 32, 1
        args.iw_k, args.iw_images, args.iw_chunk, args.classifier_epochs = 16, 4, 8, 1
        args.kl_warmup = 0
    if not args.budget_minutes and not args.budget_iterations:
        p.error("give --budget-minutes or --budget-iterations (or --quick)")
    if args.seeds < 1 or args.sweep_seeds < 0:
        p.error("--seeds must be >= 1 and --sweep-seeds >= 0")
    if args.mmd_batch < 2 or args.eval_samples < args.mmd_batch:
        p.error("--eval-samples must be at least --mmd-batch (>= 2)")
    if args.likelihood == "auto":
        args.likelihood = "bernoulli" if args.binarize else "discretized_logistic"
    if args.likelihood == "bernoulli" and not args.binarize:
        p.error("--likelihood bernoulli needs --binarize (the Bernoulli model is for binarised pixels)")
    return args


def write_results(out: Path, header: dict, settings: PaperTablesSettings, ctx: dict, results: list,
                  final: bool) -> None:
    """results.json: the header, settings, reference scores and every run so far (kept even if a later run fails)."""
    content = {"header": header, "args": dataclasses.asdict(settings), "reference": ctx["reference"],
               "bandwidths": ctx["bandwidths"]}
    if final:
        content["classifier_accuracy"] = ctx.get("classifier_accuracy")
    content["results"] = results
    write_json(out / "results.json", content, overwrite=True, indent=1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start_all = time.perf_counter()
    out = Path(args.output_dir)
    if (out / "tables.md").exists() and not args.overwrite:
        print(f"{out / 'tables.md'} exists: choose another --output-dir or pass --overwrite.", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    log_file = open(out / "log.txt", "a")

    def log(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    header = {
        "command": command_line(shlex.quote(sys.argv[0]), sys.argv[1:] if argv is None else argv),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "hardware": hardware_summary(),
        "commit": git_commit(),
    }
    log(f"{header['command']}")
    # data, MMD bandwidths, the feature classifier of the Frechet distance, and the real-vs-real reference scores
    settings, ctx = prepare_evaluation(PaperTablesSettings(**vars(args)), log)
    real = ctx["real_eval"]
    save_sample_grid(real[:64] * 2 - 1, out / "real_test_images.png", image_channels=real.shape[1])
    # the main table seed by seed, models interleaved, then the latent sweep
    plan = plan_runs(settings)
    results: list[dict] = []
    for i, (table, model, latent, seed) in enumerate(plan):
        log(f"run {i + 1}/{len(plan)}: {table} {MODEL_NAMES[model]} latent {latent} seed {seed}")
        run = train_run(settings, model, latent, seed, ctx["train_images"], log)
        metrics = evaluate_run(settings, run, model, ctx, seed, full=(table == "main"))
        log("  metrics: " + ", ".join(f"{k}={v:.5g}" for k, v in metrics.items() if isinstance(v, float)))
        save_run(out, run, model, latent, seed, ctx, overwrite=args.overwrite)
        results.append({"table": table, "model": model, "latent": latent, "seed": seed, "iterations": run["iterations"],
                        "train_seconds": run["train_seconds"], "metrics": metrics, "losses": run["losses"]})
        write_results(out, header, settings, ctx, results, final=False)
    header["total_minutes"] = (time.perf_counter() - start_all) / 60.0
    write_results(out, header, settings, ctx, results, final=True)
    write_tables(settings, ctx, results, out / "tables.md", header)
    log(f"wrote {out / 'tables.md'} ({header['total_minutes']:.1f} min)")
    log_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
