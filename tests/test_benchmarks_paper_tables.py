"""monai_gvae.benchmarks.paper_tables and .paper_report: data loading (the data package's IDX reader), the run
plan, training and scoring under a budget, and the tables' statistics."""

from __future__ import annotations

import gzip
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from monai_gvae.benchmarks.paper_report import (
    compare_to_baseline,
    curve_panels,
    format_stats,
    merge_results,
    results_content,
    tables_markdown,
)
from monai_gvae.benchmarks.paper_tables import (
    BUDGET_CLOCKS,
    CURVE_METRICS,
    PaperTablesSettings,
    center_crop,
    evaluate_run,
    load_dataset,
    make_curve_scorer,
    pad_to,
    plan_runs,
    prepare_evaluation,
    read_image_folder,
    report_context,
    train_run,
)
from monai_gvae.benchmarks.report import write_json


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = struct.pack(">I", magic) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def idx_fixture(folder: Path, n_train: int = 64, n_test: int = 40) -> Path:
    """Two classes of 28x28 images (bright left / right half), in the MNIST IDX layout."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 2
        images = rng.integers(0, 40, size=(n, 28, 28))
        images[labels == 0, 4:24, 4:14] += 200
        images[labels == 1, 4:24, 14:24] += 200
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images, 0x00000803)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels, 0x00000801)
    return folder


def test_idx_data_is_read_by_the_data_package_and_bad_files_are_rejected(tmp_path):
    data = idx_fixture(tmp_path, n_train=4, n_test=2)
    splits = load_dataset("mnist", str(data), 28, 1)
    images, labels = splits["train"]
    assert images.shape == (4, 1, 28, 28) and images.dtype == np.uint8 and labels.tolist() == [0, 1, 0, 1]
    assert labels.dtype == np.int64 and splits["test"][0].shape == (2, 1, 28, 28)
    assert images[0, 0, 10, 5] >= 200 and images[1, 0, 10, 5] < 40  # class 0 bright on the left
    write_idx(data / "t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28)), 0x00000801)
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz.*magic"):
        load_dataset("fashion-mnist", str(data), 28, 1)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("mnist", str(tmp_path / "missing"), 28, 1)
    (data / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="train-images"):
        load_dataset("mnist", str(data), 28, 1)


def test_image_folder_with_classes_is_split_at_the_end(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in (10, 2, 1):  # sorted numerically: 1, 2, 10
            Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    images, labels = read_image_folder(tmp_path, 16, 3)
    assert images.shape == (6, 3, 16, 16) and labels.tolist() == [0, 0, 0, 1, 1, 1]
    splits = load_dataset("folder", str(tmp_path), 16, 1)
    assert splits["train"][0].shape == (4, 1, 16, 16) and splits["test"][1].tolist() == [1, 1]  # the last 10 %, >= 2
    with pytest.raises(FileNotFoundError, match="no images"):
        read_image_folder(tmp_path / "a" / "1.png", 16, 1)


def test_pad_and_crop():
    images = np.full((2, 1, 28, 28), 7, dtype=np.uint8)
    padded = pad_to(images, 32)
    assert padded.shape == (2, 1, 32, 32) and padded[0, 0, 1, 1] == 0 and padded[0, 0, 2, 2] == 7
    assert torch.equal(center_crop(torch.from_numpy(padded), 28), torch.from_numpy(images))
    assert center_crop(torch.zeros(1, 1, 8, 8), None).shape == (1, 1, 8, 8)
    with pytest.raises(ValueError, match="do not fit"):
        pad_to(images, 16)


def test_plan_interleaves_models_and_skips_sweep_runs_the_main_table_holds():
    s = PaperTablesSettings("mnist", "x", seeds=2, sweep_seeds=1, latent_sizes=[4, 8], latent_size=8)
    plan = plan_runs(s)
    assert plan[:5] == [("main", "gvae", 8, 0), ("main", "vae", 8, 0), ("main", "wgan_gp", 8, 0),
                        ("main", "vaegan", 8, 0), ("main", "alpha_gan", 8, 0)]
    assert len(plan) == 11 and plan[-1] == ("sweep", "gvae", 4, 0)
    assert ("sweep", "gvae", 4, 0) in plan_runs(PaperTablesSettings("mnist", "x", seeds=1, latent_sizes=[4]))
    # one process per seed: each runs its seed's share, together the whole plan
    shares = [plan_runs(PaperTablesSettings("mnist", "x", seeds=2, sweep_seeds=1, latent_sizes=[4, 8], latent_size=8,
                                            run_seeds=[k])) for k in (0, 1)]
    assert shares[0] + shares[1] == plan or sorted(shares[0] + shares[1]) == sorted(plan)
    assert {r[3] for r in shares[1]} == {1} and ("sweep", "gvae", 4, 0) in shares[0]


def test_format_stats_and_verdicts_of_known_numbers():
    assert format_stats([0.1234, 0.1334]) == "0.1284 ± 0.0071"
    assert format_stats([2.0]) == "2" and format_stats([None, float("nan")]) == "n/a"
    assert format_stats([1.0, 3.0], digits=3, scale=10) == "20 ± 14"
    assert compare_to_baseline([0.10, 0.12], [0.20, 0.22], lower_is_better=True).startswith("GVAE better (0.11 vs 0.21")
    assert compare_to_baseline([0.10, 0.12], [0.20, 0.22], lower_is_better=False).startswith("GVAE worse")
    assert compare_to_baseline([0.10, 0.12], [0.20, 0.22], lower_is_better=None).startswith("GVAE lower")
    assert compare_to_baseline([0.10, 0.20], [0.12, 0.22], True).startswith("no resolved difference")
    assert "one seed" in compare_to_baseline([0.1], [0.2, 0.3], True)
    assert compare_to_baseline([], [0.2], True) == "n/a"


def test_budget_minutes_counts_on_the_chosen_clock(monkeypatch):
    ticks = iter(range(10**6))  # a process clock that advances one second each time it is read
    monkeypatch.setitem(BUDGET_CLOCKS, "process", lambda: float(next(ticks)))
    images = torch.randint(0, 256, (16, 1, 32, 32), dtype=torch.uint8)
    settings = PaperTablesSettings("mnist", "x", budget_minutes=5 / 60, budget_clock="process", image_size=32,
                                   base_channels=4, max_channels=8, batch_size=8, kl_warmup=0)
    run = train_run(settings, "vae", 4, 0, images, lambda m: None)
    # read once at the start and once per iteration: 5 s of that clock is 5 iterations, however fast they ran
    assert run["iterations"] == 5 and run["train_seconds"] >= 5
    with pytest.raises(ValueError, match="budget_clock must be one of"):
        train_run(PaperTablesSettings("mnist", "x", budget_minutes=1, budget_clock="cpu", image_size=32), "vae", 4,
                  0, images, lambda m: None)


def test_runs_are_trained_under_the_budget_and_scored(tmp_path):
    data = idx_fixture(tmp_path / "idx", n_train=48, n_test=20)
    settings = PaperTablesSettings(
        "mnist", str(data), budget_iterations=3, seeds=1, sweep_seeds=0, latent_size=8, models=["gvae", "vae"],
        base_channels=4, max_channels=8, batch_size=8, eval_samples=32, mmd_batch=16, lik_images=16, elbo_samples=1,
        iw_k=16, iw_images=4, iw_chunk=8, classifier_epochs=1, kl_warmup=0, classifier_channels=[4, 8, 8],
        classifier_hidden=8, curve_every=2, curve_samples=8, upsample="linear")
    messages = []
    settled, ctx = prepare_evaluation(settings, messages.append)
    # 20 test images: fewer than --eval-samples, which is reduced (and the MMD batch with it)
    assert settled.image_size == 32 and settled.eval_samples == 20 and settled.mmd_batch == 16
    assert settings.eval_samples == 32 and any("reduced to 20" in m for m in messages)
    # the validation split: the last tenth of the 48 training images (at most --val-images), never a test image
    assert settled.val_images == 4 and settled.curve_samples == 4 and ctx["n_val"] == 4
    assert ctx["crop"] == 28 and ctx["train_images"].shape == (44, 1, 32, 32) and ctx["classifier"] is not None
    train_np, _ = load_dataset("mnist", str(data), 28, 1)["train"]
    assert torch.equal(ctx["real_val"], torch.from_numpy(train_np[44:].astype(np.float32) / 255.0))
    assert torch.equal(center_crop(ctx["train_images"], 28), torch.from_numpy(train_np[:44]))
    assert ctx["classifier"].epochs_trained == 1 and ctx["classifier"].val_accuracy is not None
    assert ctx["reference"]["sharpness_ratio"] > 0 and set(ctx["reference_val"]) == set(CURVE_METRICS)
    # real vs real: the unbiased MMD estimate is near zero (either sign)
    assert abs(ctx["reference"]["mmd_gaussian"]) < 0.1 and len(ctx["bandwidths"]) == 3
    results = []
    for table, model, latent, seed in plan_runs(settled):
        scorer = make_curve_scorer(settled, ctx, seed)
        run = train_run(settled, model, latent, seed, ctx["train_images"], messages.append, scorer=scorer)
        assert run["iterations"] == 3 and (run["critic"] is None) == (model == "vae")
        assert run["gvae"].config["upsample"] == "linear"  # --upsample reaches the generator
        # scored on the validation split at iteration 2 (every 2) and after the last; not counted as training
        assert [p["iteration"] for p in run["curve"]] == [2, 3] and run["curve_seconds"] > 0
        assert all(math.isfinite(p[k]) for p in run["curve"] for k in CURVE_METRICS)
        metrics = evaluate_run(settled, run, model, ctx, seed, full=True)
        assert all(math.isfinite(metrics[k]) for k in ("mmd_gaussian", "mmd_linear", "ms_ssim", "fd", "kl", "elbo",
                                                       "sharpness_ratio"))
        assert metrics["iw_bound"] >= metrics["elbo_iw_subset"] - 1.0 and 0 <= metrics["rec_mae"] <= 1
        assert set(metrics["iw_curve"]) == {"1", "10", "16"}
        results.append({"table": table, "model": model, "latent": latent, "seed": seed, "metrics": metrics,
                        "iterations": run["iterations"], "train_seconds": run["train_seconds"], "curve": run["curve"]})
    header = {"command": "python examples/paper_tables.py", "date": "today", "hardware": "cpu", "commit": "abc",
              "total_minutes": 0.5}
    text = tables_markdown(settled, ctx, results, header)
    for heading in ("Table 4", "Table 5", "Table 6", "Table 7", "Verdict"):
        assert f"## {heading}" in text
    assert "Not run (`--sweep-seeds 0`)." in text and "| GVAE | 3 | " in text and "| Metric | GVAE | VAE |" in text
    assert "- ELBO, GVAE vs VAE: GVAE " in text and "(one seed: no spread, not a comparison)" in text
    assert "**equal iterations**: 3 iterations per run" in text and "4 validation images" in text
    assert "generator upsampling linear," in text
    assert "sharpness ratio |" in text and "- Sharpness ratio, GVAE vs VAE: GVAE " in text
    assert "## Validation curves" in text and "| 2 | " in text and "| 3 | " in text
    assert f"**test accuracy {ctx['classifier_accuracy']:.3f}**" in text
    # the report reads only the JSON-ready summary: the same text from what results.json holds
    summary = report_context(ctx)
    assert json.loads(json.dumps(summary)) == summary and summary["feature_size"] == 8
    assert tables_markdown(settled, summary, results, header) == text
    assert [p.title.split(",")[0] for p in curve_panels(settled, summary, results)] == [
        "Gaussian MMD^2", "FD (own classifier)", "sharpness ratio"]


def _finished_part(folder: Path, seeds: list[int], run_seeds: list[int], accuracy: float = 0.9) -> Path:
    """A finished paper-tables results.json of ``run_seeds`` (made-up numbers; only the merge reads it)."""
    settings = PaperTablesSettings("mnist", "x", budget_iterations=4, seeds=len(seeds), sweep_seeds=0, run_seeds=run_seeds,
                                   models=["gvae", "vae"], curve_every=2, output_dir=str(folder))
    ctx = {"crop": 28, "native": 28, "channels": 1, "n_train": 40, "n_val": 4, "n_test": 20, "n_lik": 16,
           "n_bandwidth": 40, "mmd_batches": 1, "bandwidths": [1.0, 2.0, 4.0], "ms_ssim_settings": {
               "kernel_size": 7, "kernel_sigma": 1.5, "weights": [0.2, 0.3, 0.5]},
           "reference": {"mmd_gaussian": 0.0, "mmd_linear": 0.0, "ms_ssim": 0.2, "fd": 1.0, "sharpness_ratio": 1.0},
           "reference_val": {"mmd_gaussian": 0.01, "fd": 1.0, "sharpness_ratio": 1.0}, "classifier_accuracy": accuracy,
           "classifier_val_accuracy": 0.91, "classifier_epochs_trained": 3, "feature_size": 8}
    runs = [{"table": "main", "model": m, "latent": 1000, "seed": s, "iterations": 4, "train_seconds": 1.0 + s,
             "metrics": {"mmd_gaussian": 0.1 * (s + 1), "fd": 5.0 + s, "sharpness_ratio": 0.8, "ms_ssim": 0.3},
             "curve": [{"iteration": it, "mmd_gaussian": 0.2 / it, "fd": 10.0 / it, "sharpness_ratio": 0.5}
                       for it in (2, 4)]} for s in run_seeds for m in ("gvae", "vae")]
    header = {"command": f"python examples/paper_tables.py --run-seeds {run_seeds[0]}", "date": "today",
              "hardware": "cpu", "commit": "abc", "total_minutes": 2.0 + run_seeds[0]}
    folder.mkdir(parents=True)
    write_json(folder / "results.json", results_content(header, settings, ctx, runs))
    (folder / f"samples_gvae_z1000_seed{run_seeds[0]}.png").write_bytes(b"png")
    return folder


def test_runs_of_one_process_per_seed_merge_into_one_report(tmp_path):
    parts = [_finished_part(tmp_path / f"s{k}", [0, 1], [k]) for k in (0, 1)]
    content, text = merge_results(parts, tmp_path / "merged", False, "python examples/paper_tables.py --merge ...")
    assert [(r["model"], r["seed"]) for r in content["results"]] == [("gvae", 0), ("vae", 0), ("gvae", 1), ("vae", 1)]
    assert content["args"]["run_seeds"] is None and content["header"]["processes"] == 2
    # the header: every command, the longest process as wall time, the sum as process time
    assert "--run-seeds 0 ; python examples/paper_tables.py --run-seeds 1 ; python examples/paper_tables.py --merge" in text
    assert "wall time 3.0 min (the longest process), 5.0 min of process time in all" in text
    assert "seeds [0, 1] for Tables 4, 6, 7" in text and "| GVAE | 4 ± 0 |" in text
    assert "| 2 | 0.1 ± 0 |" in text  # the mean curve over the two seeds
    merged = tmp_path / "merged"
    assert (merged / "curves.png").is_file() and (merged / "tables.md").read_text() == text
    assert (merged / "samples_gvae_z1000_seed0.png").is_file() and (merged / "samples_gvae_z1000_seed1.png").is_file()
    with pytest.raises(FileExistsError, match="tables.md exists"):
        merge_results(parts, merged, False, "merge")
    with pytest.raises(ValueError, match="appears twice"):
        merge_results([parts[0], parts[0]], tmp_path / "twice", False, "merge")
    # another classifier (or kernel, or split): its FD does not compare
    other = _finished_part(tmp_path / "other", [0, 1], [1], accuracy=0.8)
    with pytest.raises(ValueError, match="feature classifier"):
        merge_results([parts[0], other], tmp_path / "bad", False, "merge")
    with pytest.raises(FileNotFoundError, match="results.json"):
        merge_results([tmp_path / "nowhere"], tmp_path / "bad", False, "merge")
