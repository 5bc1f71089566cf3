"""monai_gvae.benchmarks.sweep: factor parsing, the trial plan, the validation split each bundle is scored on (never
the test split), and the ranked table."""

from __future__ import annotations

from pathlib import Path

import pytest
from monai.bundle import ConfigParser

from monai_gvae.benchmarks.sweep import (
    SweepSettings,
    bundle_defaults,
    describe_validation,
    parse_factor,
    parse_value,
    plan_trials,
    summarize_trials,
    sweep_markdown,
    validation_overrides,
)
from monai_gvae.data import load_brain_slices

REPO = Path(__file__).resolve().parents[1]


def test_values_and_factors_are_parsed_as_the_command_line_gives_them():
    assert [parse_value(t) for t in ("0.01", "1e-3", "5", "null", "None", "nearest", "true", "Off", "[1, 2]")] == [
        0.01, 0.001, 5, None, None, "nearest", True, False, [1, 2]]
    assert parse_factor("upsample=null,nearest") == ("upsample", [None, "nearest"])
    assert parse_factor(" n_critic = 1, 2 ") == ("n_critic", [1, 2])
    for bad in ("adv_weight", "=1,2", "adv_weight="):
        with pytest.raises(ValueError, match="ID=VALUE"):
            parse_factor(bad)


def test_grid_and_one_at_a_time_plans_start_from_the_bundle_defaults():
    defaults = bundle_defaults("bundles/gvae_brain2d", ["adv_weight", "kl_weight", "upsample"])
    assert defaults["adv_weight"] == 0.01 and defaults["kl_weight"] == 0.001
    factors = {"adv_weight": [0.01, 0.03], "kl_weight": [0.001, 0.01]}
    grid = plan_trials(SweepSettings("b", factors), defaults)
    # the defaults first, each setting once: the 2 x 2 grid holds the defaults
    assert grid[0] == {"adv_weight": 0.01, "kl_weight": 0.001} and len(grid) == 4
    assert {"adv_weight": 0.03, "kl_weight": 0.01} in grid
    oat = plan_trials(SweepSettings("b", factors, design="oat"), defaults)
    assert oat == [{"adv_weight": 0.01, "kl_weight": 0.001}, {"adv_weight": 0.03, "kl_weight": 0.001},
                   {"adv_weight": 0.01, "kl_weight": 0.01}]
    with pytest.raises(ValueError, match="design"):
        plan_trials(SweepSettings("b", factors, design="random"), defaults)
    with pytest.raises(KeyError, match="no config id"):
        bundle_defaults("bundles/gvae_brain2d", ["adv_wieght"])


def _datasets(bundle: str, overrides: dict) -> tuple:
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / bundle / "configs" / "train.yaml"))
    parser.update({"bundle_root": str(REPO / "bundles" / bundle), **overrides})
    return parser.get_parsed_content("train#dataset"), parser.get_parsed_content("validate#dataset")


def test_validation_split_is_never_the_test_split(tmp_path):
    from test_benchmarks_paper_tables import idx_fixture

    # brain2d: the embedded slices' val slabs (gaps from train and test); training data unchanged
    overrides = validation_overrides("bundles/gvae_brain2d")
    assert overrides == {"validate#dataset#split": "val"} and "`val` split" in describe_validation(overrides)
    train, val = _datasets("gvae_brain2d", overrides)
    assert len(train) == len(load_brain_slices("train")) and len(val) == len(load_brain_slices("val"))
    val_slices = {int(item["slice_index"]) for item in load_brain_slices("val")}
    assert {int(load_brain_slices("val")[i]["slice_index"]) for i in range(len(val))} == val_slices
    assert not val_slices & {int(item["slice_index"]) for item in load_brain_slices("test")}
    # MNIST: the last items of the training file, held out from training (a fifth at most); the test file unused
    data = {"dataset_dir": str(idx_fixture(tmp_path / "idx", n_train=64, n_test=40))}
    overrides = validation_overrides("bundles/gvae_mnist", val_size=10, fixed=data)
    train, val = _datasets("gvae_mnist", {**data, **overrides})
    assert len(train) == 54 and len(val) == 10 and list(val.indices) == list(range(54, 64))
    assert val.dataset.split == "train" and train.dataset.split == "train"
    assert "items `list(range(54, 64))`" in describe_validation(overrides)
    assert len(_datasets("gvae_mnist", {**data, **validation_overrides("bundles/gvae_mnist", 5000, data)})[1]) == 12


def test_trials_are_summarised_over_seeds_and_ranked():
    def trial(adv, seed, mmd, sharp):
        return {"factors": {"adv_weight": adv}, "seed": seed, "num_images": 18, "train_seconds": 10.0,
                "metrics": {"mmd_gaussian": mmd, "sharpness_ratio": sharp, "reconstruction_l1_01": 0.1}}

    results = {"defaults": {"adv_weight": 0.01}, "validation": {"validate#dataset#split": "val"},
               "trials": [trial(0.01, 0, 0.30, 0.7), trial(0.01, 1, 0.34, 0.7), trial(0.03, 0, 0.20, 1.4),
                          trial(0.03, 1, 0.22, 1.4), trial(0.1, 0, 0.25, 0.95)]}
    rows = summarize_trials(results, "mmd_gaussian")
    assert [r["factors"]["adv_weight"] for r in rows] == [0.03, 0.1, 0.01]
    assert rows[0]["stats"]["mmd_gaussian"][0] == pytest.approx(0.21) and rows[2]["default"]
    # sharpness ranks by the distance from 1: 0.95 before 0.7 before 1.4
    assert [r["factors"]["adv_weight"] for r in summarize_trials(results, "sharpness_ratio")] == [0.1, 0.01, 0.03]
    settings = SweepSettings("bundles/gvae_brain2d", {"adv_weight": [0.03, 0.1]}, seeds=[0, 1],
                             fixed={"max_epochs": 300})
    header = {"command": "python examples/sweep_defaults.py ...", "hardware": "cpu", "total_minutes": 1.0}
    text = sweep_markdown(settings, results, header)
    assert "# Sweep of gvae_brain2d on its validation split" in text and "never the test split" in text
    assert "| 1 | 0.03 | 0.21 ± 0.014 | 1.4 ± 0 |" in text and "| 3 | **0.01** |" in text
    assert "`max_epochs=300`" in text and "seeds [0, 1]" in text and "[18] images" in text
