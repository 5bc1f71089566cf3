"""examples/paper_tables.py: quick mode end to end on a tiny IDX fixture, and its IDX reader's errors."""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("paper_tables", REPO / "examples" / "paper_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = struct.pack(">I", magic) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fixture(folder: Path, n_train: int = 64, n_test: int = 40) -> Path:
    """Two classes of 28x28 images (bright left / right half), in the MNIST IDX layout."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 2
        images = rng.integers(0, 40, size=(n, 28, 28))
        images[labels == 0, 4:24, 4:14] += 200
        images[labels == 1, 4:24, 14:24] += 200
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images, 0x00000803)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels, 0x00000801)
    return folder


def test_quick_mode_writes_tables_grids_and_results(tmp_path):
    script = _load_script()
    data = _fixture(tmp_path / "idx")
    out = tmp_path / "tables"
    threads = torch.get_num_threads()
    try:
        argv = ["--dataset", "mnist", "--data-dir", str(data), "--quick", "--seeds", "2", "--output-dir", str(out)]
        assert script.main(argv) == 0
        text = (out / "tables.md").read_text()
        for heading in ("Table 4", "Table 5", "Table 6", "Table 7", "Verdict"):
            assert f"## {heading}" in text
        assert "--quick --seeds 2" in text and "3 iterations per run" in text and "seeds [0, 1]" in text
        assert "k = 16" in text and "discretised logistic" in text
        for name in ("| GVAE |", "| VAE |", "| WGAN-GP |", "| *real: train vs test* |", "| 4 | 1 |", "| 8 | 1 |"):
            assert name in text, name
        results = json.loads((out / "results.json").read_text())
        runs = results["results"]
        # 3 models x 2 seeds in the main table, plus latent 4 for the sweep (latent 8 = the main GVAE seed 0)
        assert len(runs) == 7 and {r["model"] for r in runs} == {"gvae", "vae", "wgan_gp"}
        assert all(r["iterations"] == 3 for r in runs)
        for r in runs:
            m = r["metrics"]
            assert all(math.isfinite(m[k]) for k in ("mmd_gaussian", "mmd_linear", "ms_ssim", "fd"))
            if r["table"] == "main" and r["model"] != "wgan_gp":
                assert m["iw_bound"] >= m["elbo_iw_subset"] - 1.0  # k = 16 vs 1-sample ELBO on the same images
                assert math.isfinite(m["kl"]) and m["kl"] >= 0 and 0 <= m["rec_mae"] <= 1
            if r["model"] == "wgan_gp":
                assert "elbo" not in m
        for png in ("samples_gvae_z8_seed0.png", "samples_vae_z8_seed0.png", "samples_wgan_gp_z8_seed0.png",
                    "samples_gvae_z4_seed0.png", "reconstructions_gvae_seed0.png", "real_test_images.png"):
            assert (out / png).stat().st_size > 100, png
        assert len(list((out / "checkpoints").glob("*.pt"))) == 7
        # never overwrite a finished run
        assert script.main(argv) == 2
    finally:
        torch.set_num_threads(threads)


def test_idx_reader_rejects_bad_files(tmp_path):
    script = _load_script()
    data = _fixture(tmp_path, n_train=4, n_test=2)
    images, labels = script._read_idx_split(data, "train")
    assert images.shape == (4, 1, 28, 28) and images.dtype == np.uint8 and labels.tolist() == [0, 1, 0, 1]
    _write_idx(data / "t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28)), 0x00000801)
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz.*magic"):
        script._read_idx_split(data, "test")
    with pytest.raises(FileNotFoundError, match="train-images"):
        script._read_idx_split(tmp_path / "missing", "train")
