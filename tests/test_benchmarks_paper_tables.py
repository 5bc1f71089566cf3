"""monai_gvae.benchmarks.paper_tables and .paper_report: data loading (the data package's IDX reader), the run
plan, training and scoring under a budget, and the tables' statistics."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from monai_gvae.benchmarks.paper_report import compare_to_baseline, format_stats, tables_markdown
from monai_gvae.benchmarks.paper_tables import (
    PaperTablesSettings,
    center_crop,
    evaluate_run,
    load_dataset,
    pad_to,
    plan_runs,
    prepare_evaluation,
    read_image_folder,
    train_run,
)


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


def test_runs_are_trained_under_the_budget_and_scored(tmp_path):
    data = idx_fixture(tmp_path / "idx", n_train=48, n_test=20)
    settings = PaperTablesSettings(
        "mnist", str(data), budget_iterations=3, seeds=1, sweep_seeds=0, latent_size=8, models=["gvae", "vae"],
        base_channels=4, max_channels=8, batch_size=8, eval_samples=32, mmd_batch=16, lik_images=16, elbo_samples=1,
        iw_k=16, iw_images=4, iw_chunk=8, classifier_epochs=1, kl_warmup=0)
    messages = []
    settled, ctx = prepare_evaluation(settings, messages.append)
    # 20 test images: fewer than --eval-samples, which is reduced (and the MMD batch with it)
    assert settled.image_size == 32 and settled.eval_samples == 20 and settled.mmd_batch == 16
    assert settings.eval_samples == 32 and any("reduced to 20" in m for m in messages)
    assert ctx["crop"] == 28 and ctx["train_images"].shape == (48, 1, 32, 32) and ctx["classifier"] is not None
    # real vs real: the unbiased MMD estimate is near zero (either sign)
    assert abs(ctx["reference"]["mmd_gaussian"]) < 0.1 and len(ctx["bandwidths"]) == 3
    results = []
    for table, model, latent, seed in plan_runs(settled):
        run = train_run(settled, model, latent, seed, ctx["train_images"], messages.append)
        assert run["iterations"] == 3 and (run["critic"] is None) == (model == "vae")
        metrics = evaluate_run(settled, run, model, ctx, seed, full=True)
        assert all(math.isfinite(metrics[k]) for k in ("mmd_gaussian", "mmd_linear", "ms_ssim", "fd", "kl", "elbo"))
        assert metrics["iw_bound"] >= metrics["elbo_iw_subset"] - 1.0 and 0 <= metrics["rec_mae"] <= 1
        assert set(metrics["iw_curve"]) == {"1", "10", "16"}
        results.append({"table": table, "model": model, "latent": latent, "seed": seed, "metrics": metrics,
                        "iterations": run["iterations"], "train_seconds": run["train_seconds"]})
    header = {"command": "python examples/paper_tables.py", "date": "today", "hardware": "cpu", "commit": "abc",
              "total_minutes": 0.5}
    text = tables_markdown(settled, ctx, results, header)
    for heading in ("Table 4", "Table 5", "Table 6", "Table 7", "Verdict"):
        assert f"## {heading}" in text
    assert "Not run (`--sweep-seeds 0`)." in text and "| GVAE | 3 | " in text and "| Metric | GVAE | VAE |" in text
    assert "- ELBO, GVAE vs VAE: GVAE " in text and "(one seed: no spread, not a comparison)" in text
