"""Choosing a bundle's defaults on validation data: train the bundle under each setting of a sweep and score it on a
validation split with the bundle's own evaluation (:func:`monai_gvae.metrics.evaluate`), never on the test split.

A sweep is a set of bundle overrides (``adv_weight``, ``kl_weight``, ``learning_rate``, ``n_critic``, ``upsample``,
...): every combination of the given values (``design="grid"``) or one factor at a time away from the bundle's
current values (``design="oat"``), each trained with one or more seeds. Every trial is a normal bundle run
(:func:`monai_gvae.bundle.train_bundle`) with :func:`validation_overrides` added, so that the bundle trains on its
training data minus the validation split and its ``evaluating`` workflow scores the validation split:

* ``gvae_brain2d``: the embedded slices' ``"val"`` split (contiguous slabs with gaps from the training and test
  slabs, :func:`monai_gvae.data.load_brain_slices`); the training split is unchanged.
* any other bundle: the last ``val_size`` items of its training dataset become the validation split, the rest
  stays for training (``torch.utils.data.Subset`` of the bundle's own ``train#dataset``, the validation part with
  the validation preprocessing). Use it where training items are independent (MNIST); for neighbouring slices of
  one volume, give a split with a gap instead (``extra_overrides``).

:func:`run_sweep` writes every trial's ``metrics_val.json`` and returns the rows; :func:`sweep_markdown` makes the
table (mean ± sd over seeds, ranked by one metric, the bundle's current defaults marked).
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai_gvae.benchmarks.report import markdown_table
from monai_gvae.benchmarks.stats import summarize
from monai_gvae.bundle.training import resolve_bundle, train_bundle
from monai_gvae.utils import parse_value

__all__ = [
    "DESIGNS",
    "LOWER_IS_BETTER",
    "SweepSettings",
    "parse_value",
    "parse_factor",
    "plan_trials",
    "bundle_defaults",
    "validation_overrides",
    "describe_validation",
    "run_trial",
    "run_sweep",
    "summarize_trials",
    "sweep_markdown",
]

DESIGNS = ("grid", "oat")
"""``grid``: every combination of the factors' values; ``oat``: the bundle's current values, then one factor at a
time changed to each of its other values."""

LOWER_IS_BETTER = {"mmd_gaussian": True, "reconstruction_l1_01": True, "kl": None, "elbo": False,
                   "ms_ssim_diversity": None, "reconstruction_dice": False, "sharpness_ratio": None}
"""How each evaluation key ranks (``None``: not a score by itself; ``sharpness_ratio`` ranks by ``|1 - ratio|``)."""

_REPORTED = ("mmd_gaussian", "sharpness_ratio", "ms_ssim_diversity", "reconstruction_l1_01", "reconstruction_dice",
             "kl", "elbo")


def parse_factor(text: str) -> tuple[str, list[Any]]:
    """``"ID=V1,V2,..."`` -> ``(ID, [values])`` (values by :func:`parse_value`).

    Raises:
        ValueError: no ``=``, an empty id, or no value.

    Example::

        parse_factor("upsample=null,nearest")  # ('upsample', [None, 'nearest'])
    """
    key, sep, values = text.partition("=")
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not key.strip() or not items:
        raise ValueError(f"a sweep factor is ID=VALUE[,VALUE...], got {text!r}.")
    return key.strip(), [parse_value(v) for v in items]


@dataclass
class SweepSettings:
    """What a sweep is made with (the command line's options; written to ``results.json``).

    Attributes:
        bundle: a bundle folder or the name of a shipped bundle.
        factors: ``{id: [values]}`` to sweep.
        design: one of :data:`DESIGNS`.
        seeds: the bundle's ``seed`` of each trial's runs.
        fixed: overrides of every trial (e.g. a CPU budget: ``max_epochs``).
        val_size: the validation split's size where it is cut from the end of the training data (not brain2d).
        rank_by: the evaluation key the table ranks by.
        output_dir: where the trials and the table go.
    """

    bundle: str
    factors: dict[str, list[Any]]
    design: str = "grid"
    seeds: list[int] = field(default_factory=lambda: [0])
    fixed: dict[str, Any] = field(default_factory=dict)
    val_size: int = 5000
    rank_by: str = "mmd_gaussian"
    output_dir: str = "runs/sweep"


def bundle_defaults(bundle: str, ids: Sequence[str], fixed: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The bundle's current values of ``ids`` (its ``configs/train.yaml``, with ``fixed`` overrides applied),
    evaluated as the bundle evaluates them.

    Raises:
        KeyError: an id the bundle does not have (the message names it).
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(os.path.join(resolve_bundle(bundle), "configs", "train.yaml"))
    parser.update(dict(fixed or {}))
    missing = [i for i in ids if i not in parser]
    if missing:
        raise KeyError(f"the bundle {bundle} has no config id(s) {missing}: sweep ids of its train.yaml.")
    return {i: parser.get_parsed_content(i) for i in ids}


def plan_trials(settings: SweepSettings, defaults: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The trials' factor settings, the bundle's current values first (``defaults``: :func:`bundle_defaults` of the
    factors), each setting once.

    ``grid``: every combination of the values. ``oat``: the current values, then each factor changed alone to each
    of its other values.

    Raises:
        ValueError: an unknown design or no factor.
    """
    if settings.design not in DESIGNS:
        raise ValueError(f"design must be one of {DESIGNS}, got {settings.design!r}.")
    if not settings.factors:
        raise ValueError("a sweep needs at least one factor (ID=VALUE[,VALUE...]).")
    keys = list(settings.factors)
    base = {k: defaults[k] for k in keys}
    trials = [base]
    if settings.design == "grid":
        trials += [dict(zip(keys, combo)) for combo in itertools.product(*(settings.factors[k] for k in keys))]
    else:
        trials += [{**base, k: v} for k in keys for v in settings.factors[k]]
    unique: list[dict[str, Any]] = []
    for t in trials:
        if t not in unique:
            unique.append(t)
    return unique


def _dataset_length(bundle_dir: str, fixed: Mapping[str, Any]) -> int:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(os.path.join(bundle_dir, "configs", "train.yaml"))
    parser.update({"bundle_root": bundle_dir, **fixed})
    return len(parser.get_parsed_content("train#dataset"))


def validation_overrides(bundle: str, val_size: int = 5000, fixed: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The overrides that make a bundle train without its validation split and evaluate on it (never the test split).

    ``gvae_brain2d`` (a bundle whose ``train#dataset`` is a ``BrainSliceDataset``): ``validate#dataset#split`` =
    ``"val"``. Any other bundle: ``train#dataset`` and ``validate#dataset`` become ``Subset``s of the bundle's own
    training dataset, the last ``val_size`` items (at most a fifth) for validation.

    Args:
        bundle: a bundle folder or shipped bundle name.
        val_size: validation items cut from the end of the training data.
        fixed: overrides every run gets (e.g. ``dataset_dir``), applied before the data are looked at.

    Raises:
        ValueError: a training dataset too small to split.
    """
    from monai.bundle import ConfigParser

    bundle_dir = resolve_bundle(bundle)
    fixed = dict(fixed or {})
    parser = ConfigParser()
    parser.read_config(os.path.join(bundle_dir, "configs", "train.yaml"))
    parser.update(fixed)
    train_cfg = parser.get("train#dataset")
    if str(train_cfg.get("_target_", "")).endswith("BrainSliceDataset"):
        return {"validate#dataset#split": "val"}
    n = _dataset_length(bundle_dir, fixed)
    n_val = min(int(val_size), n // 5)
    if n_val < 2:
        raise ValueError(f"the bundle's training data hold {n} items: too few to cut a validation split from.")
    source = copy.deepcopy(train_cfg)
    val_source = {**copy.deepcopy(train_cfg), "transform": "@validate#preprocessing"}
    return {
        "train#dataset": {"_target_": "torch.utils.data.Subset", "dataset": source,
                          "indices": f"$list(range(0, {n - n_val}))"},
        "validate#dataset": {"_target_": "torch.utils.data.Subset", "dataset": val_source,
                             "indices": f"$list(range({n - n_val}, {n}))"},
    }


def _evaluate_bundle(bundle_dir: str, overrides: Mapping[str, Any]) -> None:
    """The bundle's ``evaluating`` workflow (``train.yaml`` + ``evaluate.yaml``), as ``python -m monai.bundle run
    evaluating`` runs it (it writes ``metrics_file``)."""
    from monai.bundle import ConfigWorkflow

    configs = [os.path.join(bundle_dir, "configs", name) for name in ("train.yaml", "evaluate.yaml")]
    logging_file = os.path.join(bundle_dir, "configs", "logging.conf")
    workflow = ConfigWorkflow(config_file=configs, meta_file=os.path.join(bundle_dir, "configs", "metadata.json"),
                              logging_file=logging_file if os.path.isfile(logging_file) else False,
                              run_id="evaluating", workflow_type="infer", bundle_root=bundle_dir, **overrides)
    workflow.initialize()
    workflow.run()
    workflow.finalize()


def describe_validation(overrides: Mapping[str, Any]) -> str:
    """One line saying which split :func:`validation_overrides` scores."""
    if "validate#dataset#split" in overrides:
        return f"the dataset's `{overrides['validate#dataset#split']}` split (`validate#dataset#split`)"
    indices = overrides["validate#dataset"]["indices"]
    return (f"the training data's items `{indices[1:]}`, held out from training (`train#dataset` and "
            "`validate#dataset` are `Subset`s of the bundle's training dataset)")


def run_trial(
    bundle: str, overrides: Mapping[str, Any], output_dir: str | os.PathLike, overwrite: bool = False
) -> dict[str, Any]:
    """Train the bundle with ``overrides`` into ``output_dir`` and evaluate it there with the bundle's ``evaluating``
    workflow (``metrics_val.json``); ``overrides`` must hold :func:`validation_overrides`.

    Returns:
        ``{"metrics": {...}, "num_images", "train_seconds", "eval_seconds"}``.
    """
    bundle_dir = resolve_bundle(bundle)
    out = Path(output_dir)
    metrics_file = out / "metrics_val.json"
    common = {**overrides, "output_dir": str(out), "progress": False}
    start = time.perf_counter()
    train_bundle(bundle_dir, overrides=common, overwrite=overwrite)
    train_seconds = time.perf_counter() - start
    _evaluate_bundle(bundle_dir, {**common, "metrics_file": str(metrics_file), "overwrite": bool(overwrite)})
    report = json.loads(metrics_file.read_text())
    return {"metrics": report["metrics"], "num_images": report["num_images"], "train_seconds": train_seconds,
            "eval_seconds": time.perf_counter() - start - train_seconds}


def _trial_name(trial: Mapping[str, Any]) -> str:
    text = "_".join(f"{k}-{v}" for k, v in trial.items())
    return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in text)[:120]


def run_sweep(
    settings: SweepSettings, overwrite: bool = False, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run every trial of :func:`plan_trials` with every seed and collect the validation metrics.

    Returns:
        ``{"defaults": {...}, "validation": {...overrides...}, "trials": [{"factors", "seed", "metrics",
        "num_images", "train_seconds", "eval_seconds", "output_dir"}, ...]}``.
    """
    defaults = bundle_defaults(settings.bundle, list(settings.factors), settings.fixed)
    validation = validation_overrides(settings.bundle, settings.val_size, settings.fixed)
    trials = plan_trials(settings, defaults)
    runs = []
    for i, trial in enumerate(trials):
        for seed in settings.seeds:
            folder = Path(settings.output_dir) / "trials" / _trial_name(trial) / f"seed{seed}"
            log(f"trial {i + 1}/{len(trials)} seed {seed}: {trial}")
            result = run_trial(settings.bundle, {**settings.fixed, **validation, **trial, "seed": seed}, folder,
                               overwrite)
            log("  validation: " + ", ".join(f"{k}={v:.4g}" for k, v in result["metrics"].items()
                                             if isinstance(v, float)) + f" ({result['train_seconds']:.0f} s training)")
            runs.append({"factors": trial, "seed": seed, "output_dir": str(folder), **result})
    return {"defaults": defaults, "validation": validation, "trials": runs}


def _score(key: str, value: float) -> float:
    return abs(1.0 - value) if key == "sharpness_ratio" else (-value if LOWER_IS_BETTER.get(key) is False else value)


def summarize_trials(results: Mapping[str, Any], rank_by: str) -> list[dict[str, Any]]:
    """One row per setting: mean and sd over seeds of every metric, ranked by ``rank_by`` (best first; lower for
    errors and distances, higher for the ELBO and Dice, closest to 1 for the sharpness ratio)."""
    rows: list[dict[str, Any]] = []
    for trial in results["trials"]:
        row = next((r for r in rows if r["factors"] == trial["factors"]), None)
        if row is None:
            row = {"factors": trial["factors"], "runs": [], "default": trial["factors"] == {
                k: results["defaults"][k] for k in trial["factors"]}}
            rows.append(row)
        row["runs"].append(trial)
    for row in rows:
        keys = {k for r in row["runs"] for k, v in r["metrics"].items() if isinstance(v, (int, float))}
        row["stats"] = {k: summarize([r["metrics"].get(k) for r in row["runs"]]) for k in sorted(keys)}
        row["train_seconds"] = summarize([r["train_seconds"] for r in row["runs"]])[0]
    ranked = [r for r in rows if rank_by in r["stats"] and r["stats"][rank_by][2]]
    ranked.sort(key=lambda r: _score(rank_by, r["stats"][rank_by][0]))
    return ranked + [r for r in rows if r not in ranked]


def sweep_markdown(settings: SweepSettings, results: Mapping[str, Any], header: Mapping[str, Any]) -> str:
    """The sweep's ``results.md``: the protocol (command, bundle, validation split, seeds, fixed overrides, hardware,
    wall time) and one row per setting, ranked."""
    rows = summarize_trials(results, settings.rank_by)
    keys = [k for k in _REPORTED if any(k in r["stats"] for r in rows)]
    names = list(settings.factors)
    num_images = sorted({t["num_images"] for t in results["trials"]})

    def cell(row: dict[str, Any], key: str) -> str:
        if key not in row["stats"] or not row["stats"][key][2]:
            return "n/a"
        mean, sd, n = row["stats"][key]
        return f"{mean:.4g}" if n == 1 else f"{mean:.4g} ± {sd:.2g}"

    table = markdown_table(
        ["rank"] + names + keys + ["train s"],
        ([i + 1] + [("**" + repr(r["factors"][k]) + "**") if r["default"] else repr(r["factors"][k]) for k in names]
         + [cell(r, k) for k in keys] + [f"{r['train_seconds']:.0f}"] for i, r in enumerate(rows)),
    )
    direction = {True: "lower is better", False: "higher is better", None: "closest to 1 is better"
                 if settings.rank_by == "sharpness_ratio" else "not a score"}[LOWER_IS_BETTER.get(settings.rank_by)]
    validation = describe_validation(results["validation"])
    lines = [
        f"# Sweep of {Path(resolve_bundle(settings.bundle)).name} on its validation split",
        "",
        f"- **Command**: `{header['command']}`",
        f"- **Hardware**: {header['hardware']}. Wall time {header['total_minutes']:.1f} min.",
        f"- **Validation split** (never the test split): {validation}; {num_images} images scored by the "
        "bundle's `evaluating` workflow (`monai_gvae.metrics.evaluate`: the same keys and definitions as "
        "`metrics.json`).",
        f"- **Design**: {settings.design} over {', '.join(f'`{k}` {v}' for k, v in settings.factors.items())}; "
        f"seeds {settings.seeds}; every trial also with "
        + (", ".join(f"`{k}={v!r}`" for k, v in settings.fixed.items()) or "the bundle's own settings") + ".",
        f"- **Ranked by** `{settings.rank_by}` ({direction}); the bundle's current values in **bold**. Values are "
        "mean ± sd over seeds; a difference inside the spread is not a win, and a setting chosen here must be "
        "confirmed on fresh seeds before its test figures are reported (benchmark rule 9).",
        "",
    ]
    return "\n".join(lines + table) + "\n"
