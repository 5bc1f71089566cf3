"""Smoke tests of the augmentation examples: the segmentation benchmark (--quick) and the throughput script."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_segmentation_benchmark_quick(tmp_path):
    bench = load_example("segmentation_benchmark")
    threads = torch.get_num_threads()
    try:
        results = bench.main(["--quick", "--output-dir", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    assert {r["arm"] for r in results["runs"]} == set(bench.ARMS)
    assert all(0.0 <= r["dice"] <= 1.0 for r in results["runs"])
    table = (tmp_path / "results.md").read_text()
    for name in bench.ARM_NAMES.values():
        assert f"| {name} |" in table
    assert "k = 5" in table and "--quick" in table
    with Image.open(tmp_path / "dice.png") as png:
        assert png.size[0] > 100 and png.size[1] > 100
    assert (tmp_path / "samples_k5.png").is_file()
    with pytest.raises(FileExistsError, match="overwrite"):
        bench.main(["--quick", "--output-dir", str(tmp_path)])
    # --render redraws the table and plot of a finished run elsewhere, with the original command
    bench.main(["--render", str(tmp_path / "results.json"), "--output-dir", str(tmp_path / "redraw")])
    assert (tmp_path / "redraw" / "results.md").read_text() == table
    assert (tmp_path / "redraw" / "dice.png").is_file()


def test_segmentation_benchmark_subset_is_seeded_and_bounded():
    bench = load_example("segmentation_benchmark")
    train = [{"i": i} for i in range(46)]
    a, b = bench.choose_subset(train, "5", 1), bench.choose_subset(train, "5", 1)
    assert a == b and len(a) == 5 and bench.choose_subset(train, "5", 2) != a
    assert len(bench.choose_subset(train, "all", 0)) == 46
    with pytest.raises(ValueError, match="outside"):
        bench.choose_subset(train, "47", 0)
