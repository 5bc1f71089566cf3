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
  alpha-GAN's code critic under ``"code_critic"``);
* ``curves.png`` -- validation MMD², FD and sharpness ratio against iterations (``--curve-every``), per model.

Nothing existing is overwritten unless ``--overwrite``. The data loading, training, scoring and tables are package
code (``monai_gvae.benchmarks.paper_tables`` and ``.paper_report``); this script is the recipe.

Examples::

    # Fashion-MNIST from Debian's dataset-fashion-mnist, equal iterations, 3 seeds in one process
    python examples/paper_tables.py --dataset fashion-mnist --data-dir /usr/share/datasets/fashion-mnist \\
        --budget-iterations 3000 --seeds 3 --output-dir runs/fmnist_iterations
    # the same as one process per seed (e.g. on 3 cores), then one report
    for s in 0 1 2; do
        python examples/paper_tables.py --dataset fashion-mnist --data-dir /usr/share/datasets/fashion-mnist \\
            --budget-iterations 3000 --seeds 3 --run-seeds $s --output-dir runs/fmnist_it_s$s &
    done; wait
    python examples/paper_tables.py --merge runs/fmnist_it_s0 runs/fmnist_it_s1 runs/fmnist_it_s2 \\
        --output-dir runs/fmnist_iterations
    # equal wall clock: 15 minutes of training per run
    python examples/paper_tables.py --dataset fashion-mnist --data-dir /usr/share/datasets/fashion-mnist \\
        --budget-minutes 15 --seeds 3 --output-dir runs/fmnist_wallclock
    # a smoke test in seconds
    python examples/paper_tables.py --dataset mnist --data-dir PATH --quick --output-dir /tmp/quick

Budgets (the two modes): ``--budget-iterations`` gives every run the same iterations (the wall-clock time is
reported); ``--budget-minutes`` gives every run the same wall-clock training time (the iterations each model reached
are reported beside it). A GVAE iteration costs several VAE iterations (critic step, twice the generator batch).
Scoring the validation curves is not counted in either budget. ``--seeds S`` names the seeds 0..S-1 of the tables;
``--run-seeds`` runs only some of them in this process (the latent sweep's runs go with their seed), and ``--merge``
combines such processes' folders into one report (same settings required; the header gives every command, the wall
time of the longest process and the process time of all).
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import time
from pathlib import Path

import torch

from monai_gvae.benchmarks.paper_report import (
    git_commit, hardware_summary, merge_results, results_content, write_report,
)
from monai_gvae.benchmarks.paper_tables import (
    BUDGET_CLOCKS, DATASETS, MODEL_NAMES, MODELS, PaperTablesSettings, evaluate_run, make_curve_scorer, plan_runs,
    prepare_evaluation, save_run, train_run,
)
from monai_gvae.benchmarks.report import command_line, write_json
from monai_gvae.bundle import save_sample_grid
from monai_gvae.networks.blocks.trunks import UPSAMPLE_MODES

SCRIPT = "examples/paper_tables.py"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--merge", nargs="+", metavar="DIR",
                   help="combine finished runs that differ only in --run-seeds (one process per seed) into "
                        "--output-dir (no training)")
    p.add_argument("--dataset", choices=DATASETS)
    p.add_argument("--data-dir", help="IDX folder (mnist, fashion-mnist), LMDB folder (lsun) or image folder")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--budget-minutes", type=float, help="wall-clock training time per run")
    budget.add_argument("--budget-iterations", type=int, help="training iterations per run")
    p.add_argument("--budget-clock", choices=sorted(BUDGET_CLOCKS), default="wall",
                   help="clock of --budget-minutes: wall, or process (CPU time of this one-thread process: its minutes "
                        "of computing, not of waiting, when processes share the cores)")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..S-1 for Tables 4, 6, 7")
    p.add_argument("--run-seeds", default=None,
                   help="comma-separated seeds among 0..S-1 (and the sweep's) that this process runs (default: all); "
                        "combine the processes' folders with --merge")
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
    p.add_argument("--upsample", choices=UPSAMPLE_MODES, default=None,
                   help="the generator's upsampling (default: the architecture's own; conv: transposed)")
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
    p.add_argument("--val-images", type=int, default=5000,
                   help="validation images held out from the end of the training split (at most a tenth of it): "
                        "curves and the classifier's stopping rule; 0: none")
    p.add_argument("--curve-every", type=int, default=250,
                   help="score each model on the validation split every N iterations (and after the last); 0: no curves")
    p.add_argument("--curve-samples", type=int, default=1000,
                   help="prior samples and validation images per curve point")
    p.add_argument("--classifier-epochs", type=int, default=30,
                   help="most epochs of the Frechet distance's classifier")
    p.add_argument("--classifier-target", type=float, default=0.91,
                   help="stop training the classifier once its validation accuracy reaches this (0: train all epochs)")
    p.add_argument("--classifier-channels", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--classifier-hidden", type=int, default=128,
                   help="size of the classifier's feature layer (0: global average pooling of the last convolution)")
    p.add_argument("--classifier-lr-decay", type=float, default=0.8,
                   help="the classifier's learning rate is multiplied by this after every epoch")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machines are shared)")
    args = p.parse_args(argv)
    if args.merge:
        return args
    if not args.dataset or not args.data_dir:
        p.error("--dataset and --data-dir are required (unless --merge)")
    args.classifier_hidden = args.classifier_hidden or None
    if args.run_seeds is not None:
        try:
            args.run_seeds = sorted({int(x) for x in args.run_seeds.split(",") if x.strip()})
        except ValueError:
            p.error(f"--run-seeds takes comma-separated integers, got {args.run_seeds!r}")
        valid = set(range(max(args.seeds, args.sweep_seeds)))
        if not args.run_seeds or not set(args.run_seeds) <= valid:
            p.error(f"--run-seeds must name seeds among {sorted(valid)} (--seeds {args.seeds}, --sweep-seeds "
                    f"{args.sweep_seeds}), got {args.run_seeds}")
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
        args.classifier_channels, args.classifier_hidden = [4, 8, 8], 8
        args.kl_warmup = 0
        args.val_images, args.curve_every, args.curve_samples = min(args.val_images, 16), 2, 8
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
    if args.val_images < 0 or args.curve_every < 0 or (args.curve_every and args.curve_samples < 2):
        p.error("--val-images and --curve-every must be >= 0, and --curve-samples >= 2 with curves")
    return args


def write_results(out: Path, header: dict, settings: PaperTablesSettings, ctx: dict, results: list) -> None:
    """results.json: the header, settings, report context and every run so far (kept even if a later run fails;
    the header's total time is written last, which marks the file as finished for --merge)."""
    write_json(out / "results.json", results_content(header, settings, ctx, results), overwrite=True, indent=1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.merge:
        merge_command = command_line(SCRIPT, ["--merge", *args.merge, "--output-dir", args.output_dir]
                                     + (["--overwrite"] if args.overwrite else []))
        try:
            _, text = merge_results(args.merge, args.output_dir, args.overwrite, merge_command)
        except (FileNotFoundError, FileExistsError, ValueError) as e:
            print(e, file=sys.stderr)
            return 2
        print(text)
        return 0
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
    settings, ctx = prepare_evaluation(PaperTablesSettings(**{k: v for k, v in vars(args).items() if k != "merge"}), log)
    real = ctx["real_eval"]
    save_sample_grid(real[:64] * 2 - 1, out / "real_test_images.png", image_channels=real.shape[1])
    # the main table seed by seed, models interleaved, then the latent sweep
    plan = plan_runs(settings)
    results: list[dict] = []
    for i, (table, model, latent, seed) in enumerate(plan):
        log(f"run {i + 1}/{len(plan)}: {table} {MODEL_NAMES[model]} latent {latent} seed {seed}")
        scorer = make_curve_scorer(settings, ctx, seed) if table == "main" else None
        run = train_run(settings, model, latent, seed, ctx["train_images"], log, scorer=scorer)
        metrics = evaluate_run(settings, run, model, ctx, seed, full=(table == "main"))
        log("  metrics: " + ", ".join(f"{k}={v:.5g}" for k, v in metrics.items() if isinstance(v, float)))
        save_run(out, run, model, latent, seed, ctx, overwrite=args.overwrite)
        results.append({"table": table, "model": model, "latent": latent, "seed": seed, "iterations": run["iterations"],
                        "train_seconds": run["train_seconds"], "metrics": metrics, "losses": run["losses"],
                        "curve": run["curve"], "curve_seconds": run["curve_seconds"]})
        write_results(out, header, settings, ctx, results)
    header["total_minutes"] = (time.perf_counter() - start_all) / 60.0
    write_results(out, header, settings, ctx, results)
    write_report(out, settings, ctx, results, header)
    log(f"wrote {out / 'tables.md'} ({header['total_minutes']:.1f} min)")
    log_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
