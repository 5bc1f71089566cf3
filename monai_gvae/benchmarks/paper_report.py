"""``tables.md`` of the paper-tables benchmark: the protocol header, Tables 4-7, the validation curves and a verdict
per metric that calls a difference only when it exceeds the spread over seeds (runs from
:mod:`monai_gvae.benchmarks.paper_tables`); ``curves.png``; and the merge of runs made one process per seed."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from monai_gvae._version import __version__
from monai_gvae.benchmarks.paper_tables import MODEL_NAMES, NO_POSTERIOR_VARIANCE, PaperTablesSettings, report_context
from monai_gvae.benchmarks.plots import PLOT_COLOURS, CurvePanel, CurveSeries, images_side_by_side, plot_curves
from monai_gvae.benchmarks.report import cpu_model, markdown_table, read_json, write_json, write_text
from monai_gvae.benchmarks.stats import summarize
from monai_gvae.networks.blocks.trunks import check_upsample

__all__ = [
    "format_stats",
    "compare_to_baseline",
    "hardware_summary",
    "git_commit",
    "tables_markdown",
    "write_tables",
    "curve_panels",
    "write_report",
    "results_content",
    "merge_results",
]

CLASSIFIER_ACCURACY_GOAL = 0.90
"""The test accuracy the Frechet distance's classifier should reach (issue 16); the header says when it does not."""
_MERGE_FREE_ARGS = ("run_seeds", "output_dir", "overwrite")
_CURVE_LABELS = {"mmd_gaussian": "MMD² Gaussian", "fd": "FD (own classifier)", "sharpness_ratio": "sharpness ratio"}
_PLOT_LABELS = {"mmd_gaussian": "Gaussian MMD^2", "fd": "FD (own classifier)", "sharpness_ratio": "sharpness ratio"}

# the paper's MNIST figures, quoted for context only (different data, protocol and units)
PAPER_TABLE4 = [("WGAN-GP", "0.327", "0.996"), ("VAE-GAN", "0.075", "0.972"), ("alpha-GAN", "0.131", "0.843"),
                ("GVAE (paper)", "0.068", "0.818")]
PAPER_TABLE5 = [("100", "0.104", "0.856"), ("500", "0.085", "0.821"), ("1000", "0.068", "0.818"),
                ("2000", "0.074", "0.844")]
PAPER_TABLE7 = [
    ("VAE + NF (T=80)", "-85.1"), ("VAE + HVI (T=16)", "-88.3"), ("conv VAE + HVI (T=16)", "-84.1"),
    ("VAE + VGP (2hl)", "-81.3"), ("DRAW + VGP", "-79.9"), ("VAE + IAF", "-80.8"), ("GVAE (paper)", "-82.2"),
]
NO_POSTERIOR_CELL = "n/a (no posterior variance)"
"""Table 6/7 cell of a likelihood figure of alpha-GAN: its deterministic encoder defines no ELBO, KL or bound."""
_LIKELIHOODS = {
    "bernoulli": "Bernoulli on binarised pixels (p = (G(z)+1)/2 clamped to [1e-4, 1-1e-4])",
    "discretized_logistic": "discretised logistic over 256 grey levels, mean (G(z)+1)/2, one global scale per model "
                            "fitted by maximum likelihood on training images",
    "discretized_gaussian": "discretised Gaussian over 256 grey levels, mean (G(z)+1)/2, one global standard deviation "
                            "per model fitted by maximum likelihood on training images",
}


def format_stats(values: Sequence[float | None], digits: int = 4, scale: float = 1.0) -> str:
    """``mean ± sd`` of the finite values with ``digits`` significant digits; the mean alone for one value,
    ``n/a`` for none.

    Example::

        format_stats([0.1234, 0.1334])  # '0.1284 ± 0.0071'
    """
    mean, sd, n = summarize(values)
    if n == 0:
        return "n/a"
    if n == 1:
        return f"{mean * scale:.{digits}g}"
    return f"{mean * scale:.{digits}g} ± {sd * scale:.2g}"


def compare_to_baseline(
    gvae_values: Sequence[float], base_values: Sequence[float], lower_is_better: bool | None
) -> str:
    """GVAE against a baseline: a difference counts only when it exceeds the sum of the two standard deviations.

    Args:
        gvae_values: GVAE's figure per seed.
        base_values: the baseline's figure per seed.
        lower_is_better: the figure's direction; ``None``: a property, not a score (the KL): say higher/lower,
            not better/worse.
    """
    (m1, s1, n1), (m2, s2, n2) = summarize(gvae_values), summarize(base_values)
    if n1 == 0 or n2 == 0:
        return "n/a"
    if n1 < 2 or n2 < 2:
        return f"GVAE {m1:.4g} vs {m2:.4g} (one seed: no spread, not a comparison)"
    if abs(m1 - m2) <= s1 + s2:
        return f"no resolved difference (|{m1:.4g} - {m2:.4g}| <= sd sum {s1 + s2:.2g})"
    if lower_is_better is None:
        word = "GVAE lower" if m1 < m2 else "GVAE higher"
    else:
        word = "GVAE better" if (m1 < m2 if lower_is_better else m1 > m2) else "GVAE worse"
    return word + f" ({m1:.4g} vs {m2:.4g}; sd {s1:.2g}, {s2:.2g})"


def hardware_summary() -> str:
    """CPU model, logical CPUs, torch version and threads, and the load average now (the shared machine's)."""
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"{cpu_model()}; {os.cpu_count()} logical CPUs; torch {torch.__version__} on CPU with "
            f"{torch.get_num_threads()} thread(s); load average at start {load}")


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """The short commit hash of the checkout holding ``cwd`` (default: this package's), or ``"unknown"``."""
    cwd = cwd or Path(__file__).resolve().parents[2]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class _Rows:
    """The main-table runs, by model."""

    def __init__(self, results: Sequence[dict[str, Any]]) -> None:
        self.main = [r for r in results if r["table"] == "main"]

    def metric(self, model: str, key: str) -> list[float]:
        return [r["metrics"].get(key) for r in self.main if r["model"] == model and r["metrics"].get(key) is not None]

    def field(self, model: str, key: str) -> list[float]:
        return [r[key] for r in self.main if r["model"] == model]


def _classifier_line(s: PaperTablesSettings, ctx: dict[str, Any]) -> str:
    if not ctx.get("feature_size"):
        return "- **FD**: not computed (the dataset has no class labels to train the feature classifier on)."
    accuracy = ctx["classifier_accuracy"]
    val = ctx.get("classifier_val_accuracy")
    if val is not None:
        how = (f"until its accuracy on the validation split reached {s.classifier_target:g} (at most "
               f"{s.classifier_epochs} epochs): {ctx.get('classifier_epochs_trained')} epoch(s)"
               + (f" in {ctx['classifier_seconds']:.0f} s" if ctx.get("classifier_seconds") is not None else "")
               + f", validation accuracy {val:.3f}")
    else:
        how = f"for {ctx.get('classifier_epochs_trained') or s.classifier_epochs} epoch(s)"
    goal = ("" if accuracy >= CLASSIFIER_ACCURACY_GOAL else
            f" (**below {CLASSIFIER_ACCURACY_GOAL:.0%}**: raise --classifier-target or --classifier-epochs)")
    return (f"- **FD**: Frechet distance between Gaussians fitted to the {ctx['feature_size']}-d penultimate features "
            f"of a small CNN (channels {list(s.classifier_channels)}"
            + (f", {s.classifier_hidden}-unit feature layer" if s.classifier_hidden else ", global pooling")
            + f"; Adam lr 2e-3 x {s.classifier_lr_decay:g} per epoch) trained on the training split {how}; "
            f"**test accuracy {accuracy:.3f}**{goal}. {s.eval_samples} generated vs {s.eval_samples} test images. "
            "Not an FID (no Inception network): compare only within this file.")


def _main_seeds(results: Sequence[dict[str, Any]], table: str = "main") -> list[int]:
    return sorted({r["seed"] for r in results if r["table"] == table})


def _protocol(
    s: PaperTablesSettings, ctx: dict[str, Any], header: dict[str, Any], results: Sequence[dict[str, Any]]
) -> list[str]:
    ms = ctx["ms_ssim_settings"]
    clock = (", counted as each one-thread process's CPU time (minutes of computing, not of waiting, however many "
             "processes share the cores; compare the ms per iteration with an idle core's)"
             if s.budget_clock == "process" else "")
    budget = (f"**equal wall clock**: {s.budget_minutes:g} min of training per run{clock} (the iterations each run "
              "reached are in the tables)" if s.budget_minutes
              else f"**equal iterations**: {s.budget_iterations} iterations per run (the seconds each run took are in "
              "the tables)")
    crop_note = f"{ctx['native']}x{ctx['native']} crop" if ctx["crop"] else "full image"
    padding = f" zero-padded to {s.image_size}x{s.image_size} for the networks" if ctx["crop"] else ""
    bandwidths = ", ".join(f"{b:.3g}" for b in ctx["bandwidths"])
    if header.get("processes", 1) > 1:
        wall = (f"{header['processes']} processes in parallel (one per seed share, merged): wall time "
                f"{header['total_minutes']:.1f} min (the longest process), {header['compute_minutes']:.1f} min of "
                "process time in all")
    else:
        wall = f"total wall time of the script: {header['total_minutes']:.1f} min"
    n_val = ctx.get("n_val", 0)
    return [
        f"# GVAE paper Tables 4-7 regenerated on {s.dataset}",
        "",
        f"Written by `examples/paper_tables.py` (monai-gvae {__version__}, git {header['commit']}) on "
        f"{header['date']}.",
        "",
        f"- **Command**: `{header['command']}`",
        f"- **Hardware**: {header['hardware']}. {wall[0].upper() + wall[1:]}.",
        f"- **Data**: {s.dataset} from `{s.data_dir}`: {ctx['n_train']} training images used, {n_val} validation "
        f"images (the end of the training split, held out from training: curves and the classifier's stopping rule "
        f"only), {ctx['n_test']} test images (the tables); {ctx['native']}x{ctx['native']} images{padding}; metrics "
        f"on the {crop_note} in [0, 1]." + (" Pixels binarised at 0.5." if s.binarize else ""),
        f"- **Budget**: {budget}; seeds {_main_seeds(results)} for Tables 4, 6, 7; seeds "
        f"{_main_seeds(results, 'sweep') or list(range(s.sweep_seeds))} for Table 5. Runs are interleaved seed by "
        "seed, so load changes on the (shared) machine hit every model alike; scoring the validation curves is not "
        "counted in the budget.",
        f"- **Models** (identical networks, data, batch and optimiser; only the objective differs): `{s.architecture}` "
        f"encoder/generator/critic, base channels {s.base_channels}, max {s.max_channels}, generator upsampling "
        f"{check_upsample(s.upsample, s.architecture)}, latent {s.latent_size} "
        f"(Table 5: {s.latent_sizes}), batch {s.batch_size}, Adam betas (0.5, 0.9), lr {s.lr:g} (encoder+generator) / "
        f"{s.critic_lr:g} (critic), w_rec {s.rec_weight:g} (L1), w_kl {s.kl_weight:g} (warm-up {s.kl_warmup} it.), "
        f"w_adv {s.adv_weight:g}, w_gp {s.gp_weight:g}, n_critic {s.n_critic}. VAE = no critic; WGAN-GP = no encoder; "
        "VAE-GAN = GVAE with the pixel L1 replaced by the critic's feature-matching error (relative squared error at "
        "the critic's second-deepest level, weight w_rec; the same Wasserstein critic with gradient penalty); "
        "alpha-GAN = deterministic encoder (the mean), no KL: a code critic (MLP, 2 x 512 units, WGAN-GP, same lr and "
        "w_gp as the critic) on prior vs encoded latents, its term weighted w_adv; L1 reconstruction and image critic "
        "as GVAE.",
        f"- **MMD**: unbiased estimate of the squared MMD, mixture of Gaussian kernels with bandwidths {bandwidths} "
        f"(0.5, 1, 2 x the median pairwise distance of {ctx['n_bandwidth']} training images), flattened {crop_note}s, "
        f"{ctx['mmd_batches']} batch(es) of {s.mmd_batch} generated vs {s.mmd_batch} test images, averaged. "
        "Linear MMD = MONAI `MMDMetric` on the same batches. Lower is better; the train-vs-test row is the floor.",
        f"- **MS-SSIM** (diversity, lower = more diverse): {len(ms['weights'])} scales, Gaussian kernel "
        f"{ms['kernel_size']} (sigma 1.5), weights {tuple(round(w, 4) for w in ms['weights'])}, data range 1, mean "
        f"over {s.eval_samples // 2} disjoint pairs of generated samples; the reference is the same on "
        f"{s.eval_samples // 2} pairs of test images.",
        _classifier_line(s, ctx),
        f"- **Sharpness ratio**: mean gradient magnitude (forward differences) of the {s.eval_samples} generated "
        f"images over that of the {s.eval_samples} test images, {crop_note}s (`monai_gvae.metrics.sharpness_ratio`): "
        "1 = as sharp as the data, below 1 blurred, above 1 noisier than the data (e.g. checkerboard); closer to 1 "
        "is better.",
        _curve_line(s, ctx),
        f"- **Likelihood**: {_LIKELIHOODS[s.likelihood]}; figures in nats per {crop_note}. Reconstruction error = mean "
        f"absolute error of G(mu(x)) on {ctx['n_lik']} test images, pixels in [0, 1]. ELBO = E_q[log p(x|z)] "
        f"({s.elbo_samples} sample(s)) - KL (closed form).",
        f"- **log p(x) bound**: importance-weighted bound (Burda et al.) with k = {s.iw_k} on the first {s.iw_images} "
        f"test images (a subset: {s.iw_k} decodings per image).",
        "",
    ]


def _curve_line(s: PaperTablesSettings, ctx: dict[str, Any]) -> str:
    if not s.curve_every or not s.curve_samples:
        return "- **Validation curves**: not scored (`--curve-every 0` or no validation split)."
    return (f"- **Validation curves**: every {s.curve_every} iterations and after the last, MMD² (same kernel), FD "
            f"(same classifier) and sharpness ratio of {s.curve_samples} prior samples (the same latents at every "
            f"point) against {s.curve_samples} validation images; plot `curves.png`.")


def _table4(s: PaperTablesSettings, ctx: dict[str, Any], rows: _Rows) -> list[str]:
    lines = ["## Table 4: sample quality (lower MMD and FD are better; MS-SSIM is diversity, compare with the real "
             "reference)", ""]
    lines += markdown_table(
        ["Model", "iterations", "train s", "ms / iteration", "MMD² Gaussian", "MMD linear (MONAI)", "MS-SSIM",
         "FD (own classifier)", "sharpness ratio"],
        ([MODEL_NAMES.get(m, m), format_stats(rows.field(m, "iterations"), 4),
          format_stats(rows.field(m, "train_seconds"), 4),
          format_stats([1000 * r["train_seconds"] / max(1, r["iterations"]) for r in rows.main if r["model"] == m], 3),
          format_stats(rows.metric(m, "mmd_gaussian")), format_stats(rows.metric(m, "mmd_linear")),
          format_stats(rows.metric(m, "ms_ssim"), 3), format_stats(rows.metric(m, "fd")),
          format_stats(rows.metric(m, "sharpness_ratio"), 3)] for m in s.models))
    ref = ctx["reference"]
    # the floor of every metric; no training columns, hence the empty cells
    lines.append(f"| *real: train vs test* | | | | {ref['mmd_gaussian']:.4g} | {ref['mmd_linear']:.4g} | "
                 f"{ref['ms_ssim']:.3g} | " + (f"{ref['fd']:.4g} |" if "fd" in ref else "n/a |")
                 + (f" {ref['sharpness_ratio']:.3g} |" if "sharpness_ratio" in ref else " n/a |"))
    return lines + [
        "",
        "Values are mean ± standard deviation over seeds. For context only, the paper's MNIST Table 4 "
        "(MMD printed as 'x 0.0001', units unclear; not comparable to this protocol): "
        + "; ".join(f"{a} {b} / {c}" for a, b, c in PAPER_TABLE4) + ".",
        "",
    ]


def _table5(s: PaperTablesSettings, results: Sequence[dict[str, Any]]) -> list[str]:
    sweep = [r for r in results if r["latent"] in s.latent_sizes and r["model"] == "gvae" and r["seed"] < s.sweep_seeds]
    lines = ["## Table 5: GVAE latent size (lower MMD and FD are better)", ""]
    rows = []
    for z in s.latent_sizes:
        of_z = [r for r in sweep if r["latent"] == z]
        if of_z:
            rows.append([z, len(of_z), format_stats([r["iterations"] for r in of_z], 4),
                         format_stats([r["metrics"]["mmd_gaussian"] for r in of_z]),
                         format_stats([r["metrics"]["ms_ssim"] for r in of_z], 3),
                         format_stats([r["metrics"].get("fd") for r in of_z if r["metrics"].get("fd") is not None])])
    if sweep:
        lines += markdown_table(
            ["Latent size", "seeds", "iterations", "MMD² Gaussian", "MS-SSIM", "FD (own classifier)"], rows)
    else:
        lines.append("Not run (`--sweep-seeds 0`).")
    return lines + [
        "", "With one seed there is no spread: differences between rows are not resolved. Under a wall-clock budget "
        "the rows also differ in the iterations they got.", "",
        "Paper (MNIST, for context): " + "; ".join(f"z {a}: {b} / {c}" for a, b, c in PAPER_TABLE5) + ".", "",
    ]


def _table6(s: PaperTablesSettings, ctx: dict[str, Any], rows: _Rows) -> list[str]:
    enc_models = [m for m in s.models if m != "wgan_gp"]
    figures = [
        (f"log p(x) >= (IW bound, k={s.iw_k}, {s.iw_images} images)", "iw_bound", 5),
        (f"ELBO on the same {s.iw_images} images", "elbo_iw_subset", 5),
        (f"ELBO ({ctx['n_lik']} images)", "elbo", 5),
        ("E_q log p(x|z)", "log_likelihood", 5),
        ("KL(q(z|x) || p(z))", "kl", 4),
        ("reconstruction error (MAE, [0, 1])", "rec_mae", 4),
        ("reconstruction error (MSE, [0, 1])", "rec_mse", 4),
    ]
    if s.likelihood != "bernoulli":
        figures.append(("fitted pixel scale", "pixel_scale", 3))
    lines = ["## Table 6: likelihood figures on test images (nats per image; higher log-likelihood and ELBO are "
             "better)", ""]
    def cell(model: str, key: str, digits: int) -> str:
        if model in NO_POSTERIOR_VARIANCE and not key.startswith("rec_"):
            return NO_POSTERIOR_CELL
        return format_stats(rows.metric(model, key), digits)

    lines += markdown_table(["Metric"] + [MODEL_NAMES[m] for m in enc_models],
                            ([label] + [cell(m, key, digits) for m in enc_models] for label, key, digits in figures))
    notes = ["WGAN-GP has no encoder, hence no ELBO, KL, reconstruction or importance-weighted bound."]
    if any(m in NO_POSTERIOR_VARIANCE for m in enc_models):
        notes.append("alpha-GAN's encoder is deterministic (a code critic replaces the KL term): with no posterior "
                     "variance there is no q(z|x), hence no ELBO, KL or importance-weighted bound; its reconstruction "
                     "errors G(E(x)) are listed.")
    return lines + [
        "",
        *notes,
        "The paper's Table 6 (MNIST: log-likelihood -1.568 VAE / -1.353 GVAE, reconstruction 88.5e-3 / 4.27e-3, "
        "ELBO -1.697 / -1.404, KL 0.165 / 0.046) states no unit or pixel model; it is not comparable.",
        "",
    ]


def _table7(s: PaperTablesSettings, ctx: dict[str, Any], rows: _Rows) -> list[str]:
    table = []
    for m in [m for m in s.models if m != "wgan_gp"]:
        if m in NO_POSTERIOR_VARIANCE:
            table.append([f"{MODEL_NAMES[m]} (this run)", f"{s.dataset}, {s.likelihood}", NO_POSTERIOR_CELL, "n/a"])
            continue
        curve: dict[int, list[float]] = {}
        for r in rows.main:
            if r["model"] == m and "iw_curve" in r["metrics"]:
                for k, v in r["metrics"]["iw_curve"].items():
                    curve.setdefault(int(k), []).append(v)
        pts = ", ".join(f"k={k}: {format_stats(v, 5)}" for k, v in sorted(curve.items()))
        dims = ctx["native"] ** 2 * ctx["channels"]
        bits_per_dim = [-v / (dims * math.log(2.0)) for v in rows.metric(m, "iw_bound")]
        table.append([f"{MODEL_NAMES[m]} (this run; {pts})", f"{s.dataset}, {s.likelihood}",
                      format_stats(rows.metric(m, "iw_bound"), 5), format_stats(bits_per_dim, 3)])
    lines = ["## Table 7: log p(x) lower bounds", ""]
    lines += markdown_table(["Method", "data", "log p(x) >= (nats per image)", "bits/dim"], table)
    lines += [f"| {name} (quoted from the paper) | binarised MNIST | {v} | |" for name, v in PAPER_TABLE7]
    return lines + [
        "",
        "The quoted rows are on binarised MNIST with Bernoulli pixels; numbers on other data or with a grey-level "
        "likelihood are on a different scale and must not be ranked against them.",
        "",
    ]


def _verdicts(s: PaperTablesSettings, ctx: dict[str, Any], rows: _Rows) -> list[str]:
    lines = ["## Verdict (GVAE against each baseline; a difference counts only when it exceeds the sum of the two "
             "standard deviations)", ""]
    baselines = [m for m in s.models if m != "gvae"] if "gvae" in s.models else []
    checks = [("MMD² Gaussian", "mmd_gaussian", True), ("MMD linear", "mmd_linear", True), ("FD", "fd", True),
              ("log p(x) bound", "iw_bound", False), ("ELBO", "elbo", False), ("reconstruction MAE", "rec_mae", True),
              ("KL (a property, not a score)", "kl", None)]
    for label, key, lower in checks:
        for base in baselines:
            if rows.metric("gvae", key) and rows.metric(base, key):
                lines.append(f"- {label}, GVAE vs {MODEL_NAMES[base]}: "
                             f"{compare_to_baseline(rows.metric('gvae', key), rows.metric(base, key), lower)}")
    for base in baselines:
        # sharpness: the distance of the ratio from 1 (as sharp as the data) is the score
        g, o = rows.metric("gvae", "sharpness_ratio"), rows.metric(base, "sharpness_ratio")
        if g and o:
            lines.append(f"- Sharpness ratio, GVAE vs {MODEL_NAMES.get(base, base)}: GVAE {summarize(g)[0]:.3g}, "
                         f"{MODEL_NAMES.get(base, base)} {summarize(o)[0]:.3g}; |1 - ratio|: "
                         f"{compare_to_baseline([abs(1 - v) for v in g], [abs(1 - v) for v in o], True)}")
    for base in baselines:
        g, o = summarize(rows.metric("gvae", "ms_ssim"))[0], summarize(rows.metric(base, "ms_ssim"))[0]
        r = ctx["reference"]["ms_ssim"]
        lines.append(f"- MS-SSIM (diversity): GVAE {g:.3g}, {MODEL_NAMES[base]} {o:.3g}, real pairs {r:.3g} "
                     "(closer to the real value is better; far above it = less diverse than the data)")
    return lines + ["", "KL is a property of the posterior, not a quality score: a lower KL is not by itself better "
                    "(listed because the paper lists it).", ""]


def _curves_by_model(results: Sequence[dict[str, Any]], models: Sequence[str]) -> dict[str, list[list[dict]]]:
    """The main-table runs' curves: ``{model: [curve of each seed]}`` (models without curves left out)."""
    out: dict[str, list[list[dict]]] = {}
    for m in models:
        curves = [r["curve"] for r in results if r["table"] == "main" and r["model"] == m and r.get("curve")]
        if curves:
            out[m] = curves
    return out


def _mean_curve(curves: Sequence[Sequence[dict]], key: str) -> list[tuple[int, float, float]]:
    """``(iteration, mean, sd)`` over seeds at the iterations every seed's curve holds (under a wall-clock budget
    the last points differ between seeds)."""
    common = set.intersection(*({p["iteration"] for p in c if p.get(key) is not None} for c in curves))
    out = []
    for it in sorted(common):
        mean, sd, _ = summarize([next(p[key] for p in c if p["iteration"] == it) for c in curves])
        out.append((it, mean, sd))
    return out


def _curves(s: PaperTablesSettings, ctx: dict[str, Any], results: Sequence[dict[str, Any]]) -> list[str]:
    by_model = _curves_by_model(results, s.models)
    lines = ["## Validation curves (where the ordering settles)", ""]
    if not by_model:
        return lines + ["Not scored (`--curve-every 0`, or no validation split).", ""]
    keys = [k for k in ("mmd_gaussian", "fd") if any(p.get(k) is not None for c in by_model[next(iter(by_model))]
                                                     for p in c)]
    means = {(m, k): _mean_curve(curves, k) for m, curves in by_model.items() for k in keys}
    iterations = sorted({it for (m, k), pts in means.items() for it, _, _ in pts})
    header = ["iteration"] + [f"{MODEL_NAMES.get(m, m)} {_CURVE_LABELS[k]}" for m in by_model for k in keys]
    rows = []
    for it in iterations:
        row: list[Any] = [it]
        for m in by_model:
            for k in keys:
                hit = [(mean, sd) for i, mean, sd in means[(m, k)] if i == it]
                row.append(f"{hit[0][0]:.4g} ± {hit[0][1]:.2g}" if hit else "")
        rows.append(row)
    lines += ["Mean ± sd over seeds on the validation split, at the iterations every seed reached. The plot "
              "(`curves.png`) shows each seed (thin) and the mean (thick); the grey line is real training images "
              "against the validation images (the floor).", "", "![validation curves](curves.png)", ""]
    lines += markdown_table(header, rows)
    lines += ["", "Change of the mean over the last quarter of the curve (a curve that still falls by more than its "
              "spread has not settled: rule 8 of the benchmark rules):", ""]
    for m in by_model:
        parts = []
        for k in keys:
            pts = means[(m, k)]
            if len(pts) < 2:
                continue
            last_it, last, last_sd = pts[-1]
            earlier = min(pts, key=lambda p: abs(p[0] - 0.75 * last_it))
            if earlier[0] == last_it:
                earlier = pts[-2]
            change = (last - earlier[1]) / abs(earlier[1]) if earlier[1] else float("nan")
            parts.append(f"{_CURVE_LABELS[k]} {earlier[1]:.4g} -> {last:.4g} ({change:+.1%}) from iteration "
                         f"{earlier[0]} to {last_it} (sd at the end {last_sd:.2g})")
        lines.append(f"- {MODEL_NAMES.get(m, m)}: " + ("; ".join(parts) if parts else "too few points"))
    return lines + [""]


_MODEL_COLOURS = [c for c in PLOT_COLOURS[1:] if len(set(c)) > 1]
"""The models' curve colours: the plot colours without the greys (grey is the real-vs-real floor's)."""


def curve_panels(
    settings: PaperTablesSettings, ctx: dict[str, Any], results: Sequence[dict[str, Any]]
) -> list[CurvePanel]:
    """The panels of ``curves.png``: MMD², FD and sharpness ratio on the validation split against iterations, each
    seed a thin line and the mean over seeds a thick one, per model, and the real-vs-real floor in grey."""
    ctx = report_context(ctx)
    by_model = _curves_by_model(results, settings.models)
    reference = ctx.get("reference_val") or {}
    panels = []
    for key, log in (("mmd_gaussian", True), ("fd", True), ("sharpness_ratio", False)):
        panel = CurvePanel(f"{_PLOT_LABELS[key]}, validation split" + (" (log scale)" if log else ""), log_y=log)
        for i, (m, curves) in enumerate(by_model.items()):
            colour = _MODEL_COLOURS[i % len(_MODEL_COLOURS)]
            for c in curves:
                panel.series.append(CurveSeries(None, colour, [(p["iteration"], p[key]) for p in c
                                                               if p.get(key) is not None], width=1))
            mean = _mean_curve(curves, key)
            panel.series.append(CurveSeries(MODEL_NAMES.get(m, m), colour, [(it, v) for it, v, _ in mean], width=3))
        # the floor; a non-positive MMD estimate has no place on a log axis (it is "0 within noise")
        if reference.get(key) is not None and panel.series and (reference[key] > 0 or not log):
            xs = [x for series in panel.series for x, _ in series.points]
            if xs:
                panel.series.insert(0, CurveSeries("real train vs validation", PLOT_COLOURS[0],
                                                   [(min(xs), reference[key]), (max(xs), reference[key])], width=1))
        if any(series.points for series in panel.series):
            panels.append(panel)
    return panels


def tables_markdown(
    settings: PaperTablesSettings, ctx: dict[str, Any], results: Sequence[dict[str, Any]], header: dict[str, Any]
) -> str:
    """The text of ``tables.md``.

    Args:
        settings: the settled settings (:func:`~monai_gvae.benchmarks.paper_tables.prepare_evaluation`'s).
        ctx: the evaluation context (sizes, kernels, classifier, reference scores), or its
            :func:`~monai_gvae.benchmarks.paper_tables.report_context` summary (what ``results.json`` holds).
        results: one dict per run: ``table`` ("main" or "sweep"), ``model``, ``latent``, ``seed``, ``iterations``,
            ``train_seconds``, ``metrics`` and (optionally) ``curve``.
        header: ``command``, ``date``, ``hardware``, ``commit`` and ``total_minutes`` (merged runs: also
            ``processes`` and ``compute_minutes``).
    """
    ctx = report_context(ctx)
    rows = _Rows(results)
    lines = (_protocol(settings, ctx, header, results) + _table4(settings, ctx, rows) + _curves(settings, ctx, results)
             + _table5(settings, results) + _table6(settings, ctx, rows) + _table7(settings, ctx, rows)
             + _verdicts(settings, ctx, rows))
    return "\n".join(lines) + "\n"


def write_tables(
    settings: PaperTablesSettings, ctx: dict[str, Any], results: Sequence[dict[str, Any]], path: str | os.PathLike,
    header: dict[str, Any],
) -> str:
    """Write :func:`tables_markdown` to ``path`` (atomically, replacing it) and return the text."""
    text = tables_markdown(settings, ctx, results, header)
    write_text(path, text, overwrite=True)
    return text


def write_report(
    output_dir: str | os.PathLike, settings: PaperTablesSettings, ctx: dict[str, Any],
    results: Sequence[dict[str, Any]], header: dict[str, Any],
) -> str:
    """``tables.md``, (when the runs have validation curves) ``curves.png`` and (when seed 0's sample grids are in
    ``output_dir``) ``samples_side_by_side.png`` (real test images, then each model's prior samples) in
    ``output_dir``, replacing them.

    Returns:
        the text of ``tables.md``.
    """
    panels = curve_panels(settings, ctx, results)
    if panels:
        plot_curves(panels, Path(output_dir) / "curves.png", overwrite=True,
                    title=f"{settings.dataset}: validation scores during training (thin: seeds, thick: mean)")
    grids = [(MODEL_NAMES[m], Path(output_dir) / f"samples_{m}_z{settings.latent_size}_seed0.png")
             for m in settings.models]
    grids = [(label, png) for label, png in grids if png.exists()]
    if grids and (Path(output_dir) / "real_test_images.png").exists():
        images_side_by_side([("real (test)", Path(output_dir) / "real_test_images.png")] + grids,
                            Path(output_dir) / "samples_side_by_side.png", overwrite=True,
                            title=f"{settings.dataset}: prior samples of seed 0, latent {settings.latent_size}")
    return write_tables(settings, ctx, results, Path(output_dir) / "tables.md", header)


def results_content(
    header: dict[str, Any], settings: PaperTablesSettings, ctx: dict[str, Any], results: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """What ``results.json`` holds: the header, the settled settings (``"args"``), the report context (sizes,
    kernels, reference scores, classifier figures; see
    :func:`~monai_gvae.benchmarks.paper_tables.report_context`) and every run. ``reference``, ``bandwidths`` and
    ``classifier_accuracy`` are also at the top level, where earlier versions wrote them."""
    context = report_context(ctx)
    return {"header": header, "args": dataclasses.asdict(settings), "context": context,
            "reference": context["reference"], "bandwidths": context["bandwidths"],
            "classifier_accuracy": context.get("classifier_accuracy"), "results": list(results)}


def merge_results(
    folders: Sequence[str | os.PathLike], output_dir: str | os.PathLike, overwrite: bool, merge_command: str
) -> tuple[dict[str, Any], str]:
    """Combine finished runs that differ only in ``--run-seeds`` (one process per seed) into one report.

    The runs must have been made with the same settings (``--run-seeds``, ``--output-dir`` and ``--overwrite``
    aside) and have scored with the same data, kernel and feature classifier (checked through the report context),
    so that every seed's figures are comparable. Writes ``results.json``, ``tables.md`` and ``curves.png`` into
    ``output_dir`` and copies the parts' sample grids there (the checkpoints stay in the parts' folders).

    Args:
        folders: the parts' output folders, each with a finished ``results.json``.
        output_dir: where the merged report goes.
        overwrite: replace an earlier merged report in ``output_dir``.
        merge_command: the merging command line, appended to the parts' commands in the header.

    Returns:
        ``(merged results.json content, text of tables.md)``.

    Raises:
        FileNotFoundError: a folder without ``results.json``.
        ValueError: an unfinished part, parts made with other settings or another classifier or kernel, or the
            same run twice.
        FileExistsError: ``output_dir`` holds a ``tables.md`` and ``overwrite`` is false.
    """
    if not folders:
        raise ValueError("--merge needs at least one folder.")
    parts = [read_json(Path(f) / "results.json", "results of examples/paper_tables.py") for f in folders]
    for folder, part in zip(folders, parts):
        if "context" not in part or "total_minutes" not in part["header"]:
            raise ValueError(f"--merge: {folder} holds no finished run (results.json without its report context or "
                             "total time: an earlier version's file, or a run still going or stopped).")

    def fixed(part: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in part["args"].items() if k not in _MERGE_FREE_ARGS}

    def scoring(part: dict[str, Any]) -> dict[str, Any]:
        c = part["context"]
        return {k: c.get(k) for k in ("bandwidths", "classifier_accuracy", "classifier_val_accuracy", "feature_size",
                                      "n_train", "n_val", "n_test")}

    for folder, part in zip(folders[1:], parts[1:]):
        differ = sorted(k for k in set(fixed(parts[0])) | set(fixed(part))
                        if fixed(parts[0]).get(k) != fixed(part).get(k))
        if differ:
            raise ValueError(f"--merge: {folder} was run with other settings than {folders[0]} ({differ}); only runs "
                             "that differ in --run-seeds can be merged.")
        if scoring(part) != scoring(parts[0]):
            raise ValueError(f"--merge: {folder} scored with another kernel, data split or feature classifier than "
                             f"{folders[0]} ({scoring(part)} vs {scoring(parts[0])}): its figures do not compare.")
    runs: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    for folder, part in zip(folders, parts):
        for r in part["results"]:
            key = (r["table"], r["model"], r["latent"], r["seed"])
            if key in seen:
                raise ValueError(f"--merge: {key} appears twice (again in {folder}).")
            seen.add(key)
            runs.append(r)
    runs.sort(key=lambda r: (r["table"] != "main", r["seed"], r["latent"], r["model"]))
    if (Path(output_dir) / "tables.md").exists() and not overwrite:
        raise FileExistsError(f"{Path(output_dir) / 'tables.md'} exists: choose another --output-dir or pass "
                              "--overwrite.")
    os.makedirs(output_dir, exist_ok=True)
    settings = PaperTablesSettings(**{**parts[0]["args"], "run_seeds": None, "output_dir": str(output_dir)})
    first = parts[0]["header"]
    header = {**first, "command": " ; ".join(p["header"]["command"] for p in parts) + " ; " + merge_command,
              "processes": len(parts), "total_minutes": max(p["header"]["total_minutes"] for p in parts),
              "compute_minutes": sum(p["header"]["total_minutes"] for p in parts),
              "merged_from": [str(f) for f in folders]}
    content = results_content(header, settings, parts[0]["context"], runs)
    write_json(Path(output_dir) / "results.json", content, overwrite=True, indent=1)
    for folder in folders:
        for png in sorted(Path(folder).glob("*.png")):
            if png.name != "curves.png" and not (Path(output_dir) / png.name).exists():
                shutil.copy2(png, Path(output_dir) / png.name)
    text = write_report(output_dir, settings, parts[0]["context"], runs, header)
    return content, text
