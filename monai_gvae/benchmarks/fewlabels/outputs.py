"""The few-label benchmark's outputs: tables of paired differences with 95 % intervals, per-class Dice and
worst seeds, the protocol header, the plot, and merging runs split by seed over processes."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from monai_gvae.benchmarks.plots import PLOT_COLOURS, plot_dice_against_k
from monai_gvae.benchmarks.report import markdown_table, prepare_output_dir, read_json, write_json, write_text
from monai_gvae.benchmarks.segmentation import IMAGE_SIZE, POLY_LR_POWER
from monai_gvae.benchmarks.stats import Verdict, mean_std, paired_difference, paired_differences_by_seed

from .arms import ARM_SHORT, ARMS, ATLAS_ARMS, CONDITIONAL_ARMS, FUSED_ARMS, GVAE_ARMS, arm_names
from .settings import FewLabelSettings

__all__ = ["CONFIDENCE_FORMAT", "mean_gvae_seconds", "worst_class_losses", "fewlabels_report",
           "write_fewlabels_outputs", "render_run", "merge_runs"]


def mean_gvae_seconds(runs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Mean GVAE training seconds per arm (arms that trained a GVAE), rounded to 0.1 s."""
    arms = dict.fromkeys(r["arm"] for r in runs if "gvae_seconds" in r)
    return {arm: round(float(np.mean([r["gvae_seconds"] for r in runs if r["arm"] == arm])), 1) for arm in arms}


_SPREAD_VERDICTS = {Verdict.NO_SPREAD: "", Verdict.GAIN: " (gain outside spread)",
                    Verdict.LOSS: " (loss outside spread)"}
_INTERVAL_VERDICTS = {Verdict.NO_SPREAD: " (1 seed)", Verdict.GAIN: " **gain**", Verdict.LOSS: " loss",
                      Verdict.WITHIN: "", Verdict.UNDECIDED: ""}
CONFIDENCE_FORMAT = 2
"""Version of the paired-difference tables: 2 reports 95 % intervals (results without ``"table_format"`` keep the
seed-spread tables they were written with, so that re-rendering an earlier run reproduces its ``results.md``)."""


def _ks_and_arms(results: Mapping[str, Any]) -> tuple[list[int], list[str]]:
    ks = [int(k) for k in results["settings"]["ks"].split(",") if k.strip()]
    return ks, list(dict.fromkeys(r["arm"] for r in results["runs"]))


def _paired_rows(
    by_seed: Mapping[tuple[int, str], dict[int, float]], ks: Sequence[int], arms: Sequence[str], baseline: str,
    store: dict[str, Any], with_interval: bool, names: Mapping[str, str],
) -> list[list[str]]:
    """One row per arm other than ``baseline``, named by ``names``: the paired difference per k (stored in
    ``store[f"{arm}@{k}"]``)."""
    rows = []
    for arm in arms:
        if arm == baseline:
            continue
        cells = []
        for k in ks:
            diff = paired_difference(by_seed.get((k, arm), {}), by_seed.get((k, baseline), {}))
            store[f"{arm}@{k}"] = {"mean": diff.mean, "std": diff.std, "n": diff.n}
            if diff.n == 0:  # merged runs: an arm not run at this k, or on other seeds than the baseline
                cells.append("-")
                continue
            if with_interval:
                store[f"{arm}@{k}"].update(ci_low=diff.ci_low, ci_high=diff.ci_high,
                                           verdict=diff.interval_verdict.value)
                interval = f" [{diff.ci_low:+.3f}, {diff.ci_high:+.3f}]" if diff.n > 1 else ""
                cells.append(f"{diff.mean:+.3f}{interval}{_INTERVAL_VERDICTS[diff.interval_verdict]}")
            else:
                verdict = _SPREAD_VERDICTS.get(diff.spread_verdict, " (within spread)")
                cells.append(f"{diff.mean:+.3f} ± {diff.std:.3f}{verdict}")
        rows.append([names[arm]] + cells)
    return rows


def _seeds_of_arm(runs: Sequence[dict[str, Any]], arms: Sequence[str]) -> dict[str, list[int]]:
    """The sorted seeds each arm's runs used (merged runs may give arms different seeds)."""
    return {arm: sorted({r["seed"] for r in runs if r["arm"] == arm}) for arm in arms}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _class_dice_by_seed(runs: Sequence[dict[str, Any]], arm: str, k: int, key: str) -> dict[int, float]:
    """``{seed: the arm's Dice of a class}`` over the seeds where it is finite (a class absent from the scored slices
    has NaN Dice)."""
    return {r["seed"]: r[key] for r in runs if r["arm"] == arm and r["k"] == k and _finite(r.get(key))}


def _paired_class_means(runs: Sequence[dict[str, Any]], arm: str, k: int, class_keys: Sequence[str]) -> dict[str, float]:
    """Mean over the seeds both ``arm`` and classical have of the per class Dice difference (a class's key is left
    out where a seed's Dice of it is NaN in either run, e.g. a class absent from the scored slices)."""
    means = {}
    for c in class_keys:
        diff = paired_difference(_class_dice_by_seed(runs, arm, k, c), _class_dice_by_seed(runs, "classical", k, c))
        if diff.n:
            means[c] = float(diff.mean)
    return means


def worst_class_losses(
    runs: Sequence[dict[str, Any]], arm: str, k: int, class_keys: Sequence[str]
) -> dict[str, tuple[float, int]]:
    """Per class, the seed on which ``arm`` fell furthest below classical: ``{class key: (difference, seed)}``.

    A mean over seeds hides a class that one seed's synthetic pairs ruin (e.g. a structure the generator renders
    as flat grey: docs/fewlabels.md, "Twenty labelled slices"); this is the figure that shows it.

    Args:
        runs: :func:`run_cell` records (``seed``, ``arm``, ``k`` and ``dice_<class>`` keys).
        arm: the arm compared with ``classical``.
        k: labelled slices.
        class_keys: the per-class keys (``dice_<class>``).

    Returns:
        For each class with at least one seed where both arms scored it: the smallest per-seed difference and its
        seed (the earliest seed on a tie).

    Example::

        worst_class_losses(results["runs"], "cond_pseudo", 20, ["dice_cerebellum"])  # {"dice_cerebellum": (-0.57, 7)}
    """
    worst = {}
    for c in class_keys:
        differences = paired_differences_by_seed(_class_dice_by_seed(runs, arm, k, c),
                                                 _class_dice_by_seed(runs, "classical", k, c))
        if differences:
            seed = min(differences, key=lambda s: (differences[s], s))
            worst[c] = (float(differences[seed]), seed)
    return worst


def _tables(results: dict[str, Any]) -> list[str]:
    """Dice per arm and k; paired differences to classical (and, with the self-training control, to it), stored in
    ``results["paired"]`` (``results["paired_selftrain"]``); per class Dice, its paired mean and its worst seed
    (``results["worst_class_loss"]``); filter acceptance."""
    runs = results["runs"]
    ks, arms = _ks_and_arms(results)
    names = arm_names(results["settings"].get("left_right_flip", True), results["settings"].get("k_unit", "slice"))
    k_items = "k scans" if results["settings"].get("k_unit", "slice") == "volume" else "k slices"
    header = ["arm"] + [f"k = {k}" for k in ks]
    table: dict[tuple[int, str], list[float]] = {}
    by_seed: dict[tuple[int, str], dict[int, float]] = {}
    for r in runs:
        table.setdefault((r["k"], r["arm"]), []).append(r["dice"])
        by_seed.setdefault((r["k"], r["arm"]), {})[r["seed"]] = r["dice"]
    seeds_of_arm = _seeds_of_arm(runs, arms)
    seeds_differ = len({tuple(v) for v in seeds_of_arm.values()}) > 1
    # where arms have other seeds, each row says how many: absolute means over other seeds are not comparable
    dice_rows = ([names[arm] + (f" ({len(seeds_of_arm[arm])} seeds)" if seeds_differ else "")]
                 + ["{:.3f} ± {:.3f}".format(*mean_std(table[k, arm])) if (k, arm) in table else "-" for k in ks]
                 for arm in arms)
    lines = markdown_table(header, dice_rows)
    if seeds_differ:
        lines += ["", "Seeds per arm differ (merged runs with other arms): "
                  + "; ".join(f"{ARM_SHORT.get(arm, arm)}: {len(v)} seeds ({','.join(map(str, v))})"
                              for arm, v in seeds_of_arm.items())
                  + ". Paired differences use the seeds both arms have (n in results.json)."]
    with_interval = results.get("table_format", 1) >= CONFIDENCE_FORMAT
    if with_interval:
        intro = (f"Paired difference to classical (same seed, same {k_items}, same initial weights): mean over seeds "
                 "[95 % Student-t interval]; **gain** only when the whole interval lies above zero, loss when below:")
    else:
        intro = ("Paired difference to classical (same seed, same k slices), mean ± std over seeds; a gain counts "
                 "only when mean − std > 0 (outside the seed spread):")
    lines += ["", intro, ""]
    results["paired"] = {}
    lines += markdown_table(["arm − classical"] + header[1:],
                            _paired_rows(by_seed, ks, arms, "classical", results["paired"], with_interval, names))
    gvae_arms = [a for a in arms if a in CONDITIONAL_ARMS + ("joint_pool",)]
    if with_interval and "selftrain" in arms and gvae_arms:
        results["paired_selftrain"] = {}
        lines += ["", "Paired difference to the self-training control (the cheapest use of the same unlabelled "
                  "pool), as above:", ""]
        lines += markdown_table(["arm − self-training"] + header[1:],
                                _paired_rows(by_seed, ks, ["selftrain"] + gvae_arms, "selftrain",
                                             results["paired_selftrain"], True, names))
    class_keys = [key for key in runs[0] if key.startswith("dice_")] if runs else []
    if with_interval and class_keys:
        rows = []
        for arm in arms:
            cells = []
            for k in ks:
                of_cell = [r for r in runs if r["arm"] == arm and r["k"] == k]
                cells.append(" / ".join(f"{np.nanmean([r[c] for r in of_cell]):.2f}" for c in class_keys)
                             if of_cell else "-")
            rows.append([names[arm]] + cells)
        class_list = " / ".join(c[len("dice_"):] for c in class_keys)
        lines += ["", f"Dice per class (mean over seeds; {class_list}):", ""] + markdown_table(header, rows)
        # which class an arm's gain or loss comes from (e.g. a class that few of the k slices show)
        results["paired_per_class"] = {}

        def mean_cell(arm: str, k: int) -> str:
            means = results["paired_per_class"][f"{arm}@{k}"] = _paired_class_means(runs, arm, k, class_keys)
            return " / ".join(f"{100 * means[c]:+.1f}" if c in means else "-" for c in class_keys)

        rows = [[names[arm]] + [mean_cell(arm, k) for k in ks] for arm in arms if arm != "classical"]
        if rows:
            lines += ["", f"Paired difference to classical per class, Dice points (mean over the seeds both arms "
                      f"have; {class_list}):", ""] + markdown_table(["arm − classical"] + header[1:], rows)
        # the mean hides a class that one seed's synthetic pairs ruin: the worst seed of each class
        results["worst_class_loss"] = {}

        def worst_cell(arm: str, k: int) -> str:
            worst = worst_class_losses(runs, arm, k, class_keys)
            results["worst_class_loss"][f"{arm}@{k}"] = {c: {"difference": d, "seed": seed}
                                                         for c, (d, seed) in worst.items()}
            return " / ".join(f"{100 * worst[c][0]:+.1f} (s{worst[c][1]})" if c in worst else "-" for c in class_keys)

        rows = [[names[arm]] + [worst_cell(arm, k) for k in ks] for arm in arms if arm != "classical"]
        if rows:
            lines += ["", f"Worst seed per class: the largest per-seed drop against classical, Dice points (seed; "
                      f"{class_list}):", ""] + markdown_table(["arm − classical, worst seed"] + header[1:], rows)
    acc = [r for r in runs if r.get("acceptance") is not None]
    if acc:
        rows = []
        for arm in arms:
            of_arm = [r for r in acc if r["arm"] == arm]
            if of_arm:
                rows.append([names[arm]] + [f"{np.mean([r['acceptance'] for r in of_arm if r['k'] == k]):.2f}"
                                                if any(r["k"] == k for r in of_arm) else "-" for k in ks])
        lines += ["", "Filter acceptance rate (mean over seeds):", ""] + markdown_table(header, rows)
    return lines


def _protocol(results: Mapping[str, Any]) -> list[str]:
    """The header's protocol lines (data, splits, segmenter, GVAE, levers)."""
    s = results["settings"]
    if results.get("table_format", 1) < CONFIDENCE_FORMAT:  # a run of the earlier 61-slice protocol
        held_out = ("15 held-out slices, never seen by a generator or segmenter" if s["eval_split"] == "test"
                    else "train slices outside the k: tuning only")
        data = (f"- Data: embedded Colin27/AAL axial brain slices, {IMAGE_SIZE}x{IMAGE_SIZE}, 4 classes; k labelled "
                f"slices per seed from split `train` ({results['n_train']}); evaluated on split `{s['eval_split']}` "
                f"({held_out}). Unlabelled pool (pool arms only): the {results['n_train']} train images, labels hidden.")
    else:
        scored = ("test: held out, scored once per reported setting" if s["eval_split"] == "test"
                  else "val: for choosing settings")
        layout = ("; val and test slabs alternate (different levels)" if s.get("split_layout", "alternate") ==
                  "alternate" else "; a val slab beside each test slab (the same levels)")
        if results.get("split_unit", "slab") == "volume":
            held_out = "whole volumes held out (no volume in two splits)"
        else:
            held_out = f"contiguous slabs with gaps of {results.get('gap', 3)} slices between splits{layout}"
        if s.get("k_unit", "slice") == "volume":
            draw = ("Per seed k labelled volumes (every slice labelled) are drawn from train's volumes; the other "
                    "train volumes are")
        else:
            draw = "Per seed k labelled slices are drawn from train; the other train slices are"
        data = (f"- Data: {results['data']}, {IMAGE_SIZE}x{IMAGE_SIZE}; {held_out}: train {results['n_train']}, val "
                f"{results['n_val']}, test {results['n_test']} slices. {draw} the unlabelled pool (labels hidden). "
                f"Scored on `{s['eval_split']}` ({scored}).")
    schedule = ""
    if s.get("schedule") == "finetune":
        schedule = f"; synthetic arms end with {s['finetune_iterations']} real-only iterations"
    levers = ""
    pseudo = ""
    arm_notes = ""
    gradient = f", gradient difference weight {s['grad_weight']}" if s.get("grad_weight", 0) else ""
    if "selftrain_cond" in str(s.get("arms", "")):
        arm_notes = (f"; `selftrain_cond`: {s['synthetic_fraction']:.0%} pseudo-labelled pool images and "
                     f"{s['synthetic_fraction']:.0%} GVAE pairs")
    if "cond_pseudo_post" in str(s.get("arms", "")):
        arm_notes += "; `cond_pseudo_post`: each pool pair rendered from a draw of its own posterior"
    if "cond_pseudo_checked" in str(s.get("arms", "")):
        arm_notes += (f"; `cond_pseudo_checked`: renders kept where the classical segmenter finds every class of the "
                      f"map with Dice >= {s['render_min_dice']} (classes of {s['render_min_pixels']}+ "
                      "pixels)")
    if any(arm in str(s.get("arms", "")) for arm in ATLAS_ARMS):
        atlases = ("each labelled volume's slice at the nearest relative level" if s.get("k_unit", "slice") ==
                   "volume" else "each of the k slices")
        arm_notes += (f"; `*_atlas`: the pool labelled by registering {atlases} to each pool image (affine, "
                      "then demons; SimpleITK) and keeping the best-correlated one's map")
    if any(arm in str(s.get("arms", "")) for arm in FUSED_ARMS):
        arm_notes += (f"; `*_fused`: the classical segmenter's softmax and that registered map fused per pixel, "
                      f"argmax(p + {s.get('atlas_weight', 0.5)} onehot)")
    if s.get("area_guard") and any(arm in str(s.get("arms", "")) for arm in ATLAS_ARMS):
        arm_notes += ("; `--area-guard`: pool slices whose registered map holds a class area more than max(75 %, "
                      "100 px) off the median of the pool maps within 3 slices (at least 3 of them) left out")
    if s.get("synthetic_intensity", "none") != "none":
        arm_notes += (f"; `--synthetic-intensity {s['synthetic_intensity']}`: every synthetic pair's image randomly "
                      "changed in intensity before the classical augmentation")
    if s.get("pseudo_keep", 1.0) < 1:
        pseudo = (f"; pseudo-label arms: the {s['pseudo_keep']:.0%} of the pool the classical segmenter is most "
                  "confident about")
    if "seg_weight" in s:
        term = ("segmentation consistency" if s.get("seg_objective", "consistency") == "consistency"
                else f"segmentation gradient matching (segmenter copy trained at {s['seg_lr']})")
        levers = (f" Conditional GVAEs: `{s['condition_mode']}` conditioning, `{s['critic_head']}` critic, "
                  f"{term} weight {s['seg_weight']} (the classical arm's segmenter).")
    classical = "flip + affine" if s.get("left_right_flip", True) else "affine (no flip: sagittal slices)"
    k_items = "k scans" if s.get("k_unit", "slice") == "volume" else "k slices"
    lr_schedule = (f" decayed to 0 (poly, power {POLY_LR_POWER})" if s.get("seg_lr_schedule", "constant") == "poly"
                   else "")
    repeats = (f"; {s['seg_repeats']} segmenters per arm from other initial weights, Dice their mean"
               if s.get("seg_repeats", 1) > 1 else "")
    return [
        data,
        f"- Segmenter: MONAI UNet (8, 16, 32, 64), DiceCE, Adam 1e-3{lr_schedule}, {s['seg_iterations']} iterations "
        f"x batch {s['batch_size']} in every arm (same initial weights per seed{repeats}); "
        f"classical {classical} on every item; synthetic arms: {s['synthetic_fraction']:.0%} of the items from "
        f"{s['num_synthetic']} pre-generated pairs{schedule}{pseudo}{arm_notes}.",
        f"- GVAE: conv ({s.get('upsample', 'transposed')} upsampling), latent {s['latent_size']}, base channels "
        f"{s['base_channels']}, batch {s['gvae_batch']}, "
        f"w_kl {s['kl_weight']}, w_adv {s['adv_weight']}, w_gp 10{gradient}; GVAEs of the {k_items} (every "
        f"conditional arm but `cond_pool`, `cond_pool_interp`): {s['gvae_iterations']} iterations on the {k_items}; "
        f"pool arms: {s['pretrain_iterations']} image-only iterations on the pool (per seed) then "
        f"{s['adapt_iterations']} on the {k_items} (budgets differ: see docs/fewlabels.md). Critic filter quantile "
        f"{s['critic_quantile']}; joint_pool: sigma calibrated to label Dice >= {s['sigma_min_dice']} on the "
        f"{k_items}, segmenter-agreement Dice >= {s['min_dice']}." + levers,
    ]


def fewlabels_report(results: dict[str, Any]) -> str:
    """The few-label benchmark's ``results.md``: protocol header and :func:`_tables` (which also stores the paired
    differences in ``results["paired"]``).

    Args:
        results: what the benchmark writes to ``results.json`` (``runs``, ``settings``, ``command``, ``n_train``,
            ``gvae_seconds``, ``seg_seconds_mean``, ``pretrain_seconds``, ``hardware``, ``wall_seconds``; from
            ``table_format`` 2 on also ``data``, ``n_val``, ``n_test``, ``gap``; after a merge ``merged_from``).
    """
    header = [
        "# Few-label benchmark: label-conditioned GVAE synthesis vs classical augmentation",
        "",
        f"Command: `{results['command']}`",
        "",
        *_protocol(results),
        f"- Mean GVAE seconds: {results['gvae_seconds']}; mean segmenter seconds per arm "
        f"{results['seg_seconds_mean']:.0f}; pre-training {results['pretrain_seconds']}.",
        f"- Hardware: {results['hardware']}; total wall time {results['wall_seconds'] / 60:.1f} min"
        + (f" (summed over {len(results['merged_from'])} merged runs)." if results.get("merged_from") else "."),
        "",
    ]
    return "\n".join(header + _tables(results) + [""])


def _legend_name(arm: str, settings: dict[str, Any], seed_count: int | None) -> str:
    """The plot's name of ``arm``: its short name, the segmentation term of a label-conditioned GVAE arm when that
    is not the default consistency term (so a plot read alone says which objective trained the generator), and the
    number of seeds when arms differ in it."""
    name = ARM_SHORT[arm]
    if arm in CONDITIONAL_ARMS and settings.get("seg_objective", "consistency") != "consistency":
        name += f", {settings['seg_objective'].replace('_', ' ')}"
    return name if seed_count is None else f"{name} ({seed_count} seeds)"


def write_fewlabels_outputs(results: dict[str, Any], output_dir: str | os.PathLike, overwrite: bool) -> str:
    """Write ``results.md`` (:func:`fewlabels_report`), ``results.json`` and ``dice.png`` into ``output_dir``.

    Returns:
        the text of ``results.md``.

    Raises:
        FileExistsError: an output exists and ``overwrite`` is false.
    """
    text = fewlabels_report(results)
    write_text(os.path.join(output_dir, "results.md"), text, overwrite)
    write_json(os.path.join(output_dir, "results.json"), results, overwrite, default=str)
    ks, arms = _ks_and_arms(results)
    stats = {}
    for arm in arms:
        for k in ks:
            vals = [r["dice"] for r in results["runs"] if r["arm"] == arm and r["k"] == k]
            if vals:
                stats[(k, arm)] = mean_std(vals)
    colours = {arm: PLOT_COLOURS[ARMS.index(arm) % len(PLOT_COLOURS)] for arm in arms}
    seed_counts = {arm: len(seeds) for arm, seeds in _seeds_of_arm(results["runs"], arms).items()}
    counts_differ = len(set(seed_counts.values())) > 1
    names = {arm: _legend_name(arm, results["settings"], seed_counts[arm] if counts_differ else None) for arm in arms}
    plot_dice_against_k(stats, ks, {k: f"k={k}" for k in ks}, arms, names, colours,
                        f"{results['settings']['eval_split']} foreground Dice (mean ± std over seeds)",
                        os.path.join(output_dir, "dice.png"), overwrite,
                        legend_width=330 + max(len(name) - len(ARM_SHORT[arm]) for arm, name in names.items()) * 7)
    return text


def render_run(output_dir: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """Rewrite the table and plot of an earlier run from its ``results.json`` (e.g. after a change of layout).

    Returns:
        ``(results, text of results.md)``.

    Raises:
        FileNotFoundError: ``output_dir`` has no ``results.json``.
    """
    results = read_json(os.path.join(output_dir, "results.json"))
    return results, write_fewlabels_outputs(results, output_dir, overwrite=True)


# settings that may differ between merged runs: the seeds, the ks (one process per k, or a k added later), where the
# outputs went, and the arms (a run may add arms on some seeds only, e.g. to give the arms of the goal more seeds in
# a fixed compute budget; paired differences use the seeds both arms have, and the table says how many seeds each
# arm has)
_MERGE_FREE_SETTINGS = {"seeds", "ks", "output_dir", "overwrite", "render", "merge", "arms"}
GVAE_SETTINGS = {"gvae_iterations", "pretrain_iterations", "adapt_iterations", "gvae_batch", "latent_size",
                 "base_channels", "upsample", "kl_weight", "adv_weight", "critic_quantile", "min_dice", "sigma_min_dice",
                 "render_min_dice", "render_min_pixels", "seg_weight", "seg_objective", "seg_lr", "condition_mode",
                 "critic_head"}
"""Settings that change only the GVAE arms: a run without GVAE arms merges with runs that set them otherwise."""


SETTINGS_BEFORE_ADDED = {"pseudo_keep": 1.0, "split_layout": "alternate", "grad_weight": 0.0, "atlas_weight": 0.5,
                         "area_guard": False, "left_right_flip": True, "k_unit": "slice", "split_unit": "auto",
                         "volume_pattern": None, "synthetic_intensity": "none", "seg_repeats": 1,
                         "seg_lr_schedule": "constant", "device": "cpu",
                         "render_min_dice": FewLabelSettings.render_min_dice,
                         "render_min_pixels": FewLabelSettings.render_min_pixels}
"""Settings added after runs were recorded, with the value that earlier runs (whose ``results.json`` lacks them)
behaved as: a run from before merges with one that states the value."""


def merge_runs(
    folders: Sequence[str], output_dir: str, overwrite: bool, merge_command: str
) -> tuple[dict[str, Any], str]:
    """Combine finished runs that differ only in their seeds (one process per seed), ks or arms into one table.

    A run without GVAE arms (e.g. ``classical,selftrain``) also merges with runs whose GVAE settings differ, and an
    arm without a GVAE found in two runs with the same Dice (a deterministic baseline both ran) is kept once, so
    that a new GVAE setting is compared with controls run on the same machine without training them again. The
    merged settings are those of the first run with GVAE arms.

    Args:
        folders: the runs' output folders, each with a ``results.json``.
        output_dir: where the merged ``results.md``, ``results.json`` and ``dice.png`` go.
        overwrite: replace earlier outputs in ``output_dir``.
        merge_command: the merging command line, appended to the runs' commands in the header.

    Returns:
        ``(merged results, text of results.md)``.

    Raises:
        FileNotFoundError: a folder without results.json.
        ValueError: runs made with other settings, the same (k, seed, GVAE arm) twice, or the same (k, seed, arm)
            twice with different Dice.
        FileExistsError: ``output_dir`` holds earlier outputs and ``overwrite`` is false.
    """
    parts = []
    for folder in folders:
        path = os.path.join(folder, "results.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"--merge: {path} does not exist (run the benchmark there first)")
        parts.append(read_json(path))

    def with_gvae(results: dict) -> bool:
        return any(r["arm"] in GVAE_ARMS for r in results["runs"])

    def fixed(results: dict, gvae: bool) -> dict:
        free = _MERGE_FREE_SETTINGS | (set() if gvae else GVAE_SETTINGS)
        settings = {**SETTINGS_BEFORE_ADDED, **results["settings"]}
        return {k: v for k, v in settings.items() if k not in free}

    # the settings of the merged table: those of the first run that trained a GVAE (else of the first run)
    first = next((i for i, part in enumerate(parts) if with_gvae(part)), 0)
    parts.insert(0, parts.pop(first))
    folders = [folders[first]] + [f for i, f in enumerate(folders) if i != first]
    for folder, part in zip(folders[1:], parts[1:]):
        gvae = with_gvae(part)
        reference, other = fixed(parts[0], gvae), fixed(part, gvae)
        differ = sorted(k for k in set(reference) | set(other) if reference.get(k) != other.get(k))
        if differ:
            raise ValueError(f"--merge: {folder} was run with other settings than {folders[0]} ({differ}); "
                             "only runs that differ in --seeds or --arms (and, without GVAE arms, in GVAE settings) "
                             "can be merged")
        # other library versions give other last digits (docs/fewlabels.md, Protocol): such runs do not pair
        if "versions" in part and "versions" in parts[0] and part["versions"] != parts[0]["versions"]:
            raise ValueError(f"--merge: {folder} was run with other library versions than {folders[0]} "
                             f"({part['versions']} against {parts[0]['versions']}); re-run it in one environment")
    runs: list[dict] = []
    seen: dict[tuple, float] = {}
    for folder, part in zip(folders, parts):
        for r in part["runs"]:
            key = (r["k"], r["seed"], r["arm"])
            if key in seen:
                if r["arm"] in GVAE_ARMS or r["dice"] != seen[key]:
                    raise ValueError(f"--merge: k={key[0]} seed={key[1]} arm={key[2]} appears twice (again in "
                                     f"{folder}){'' if r['arm'] in GVAE_ARMS else ' with another Dice'}")
                continue  # the same deterministic run of an arm without a GVAE (a shared baseline): kept once
            seen[key] = r["dice"]
            runs.append(r)
    prepare_output_dir(output_dir, overwrite)
    seeds = sorted({r["seed"] for r in runs})
    ks = sorted({r["k"] for r in runs})
    pretrain = [(p["pretrain_seconds"], len(p["settings"]["seeds"].split(","))) for p in parts if p["pretrain_seconds"]]
    results = dict(parts[0])
    results.update({
        "runs": runs,
        "command": " ; ".join(p["command"] for p in parts) + " ; " + merge_command,
        "gvae_seconds": mean_gvae_seconds(runs),
        # the runs' mean pre-training seconds, weighted by their seeds
        "pretrain_seconds": (round(sum(s * n for s, n in pretrain) / sum(n for _, n in pretrain), 1) if pretrain
                             else None),
        "seg_seconds_mean": float(np.mean([r["seg_seconds"] for r in runs])),
        "wall_seconds": sum(p["wall_seconds"] for p in parts),  # compute time, summed over the merged processes
        "settings": {**parts[0]["settings"], "seeds": ",".join(str(s) for s in seeds),
                     "ks": ",".join(str(k) for k in ks), "output_dir": output_dir,
                     "arms": ",".join(dict.fromkeys(r["arm"] for r in runs))},
        "merged_from": list(folders),
    })
    return results, write_fewlabels_outputs(results, output_dir, overwrite=True)
