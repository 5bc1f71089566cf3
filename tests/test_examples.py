"""The scripts in examples/, run as a user runs them (a subprocess each), in their --quick modes.

What the scripts compute is package code with its own tests (tests/test_benchmarks_*.py); these check that each
recipe still runs end to end and writes its outputs.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import REPO_ROOT, subprocess_env
from monai_gvae.benchmarks import fewlabels, segmentation


def run_example(script: str, *args: str, expect_rc: int = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(Path("examples") / script), *args], cwd=REPO_ROOT,
                          env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == expect_rc, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def example_main(script: str):
    """The ``main(argv)`` of ``examples/<script>``, imported here: for the cheap paths of a script (refusals,
    ``--render``, ``--merge``) once a subprocess run has checked the script as a user runs it, so that each costs no
    interpreter start-up (about 5 s on 2 cores). Never for a training run: those set process-wide torch state."""
    path = Path(REPO_ROOT) / "examples" / script
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def read_benchmark_results(output_dir: Path, benchmark) -> str:
    """Check a benchmark run's ``results.json`` (every arm of ``benchmark.ARMS`` ran, Dice in [0, 1]) and that
    ``results.md`` names every arm; return the table's text."""
    results = json.loads((output_dir / "results.json").read_text())
    assert {r["arm"] for r in results["runs"]} == set(benchmark.ARMS)
    assert all(0.0 <= r["dice"] <= 1.0 for r in results["runs"])
    table = (output_dir / "results.md").read_text()
    for name in benchmark.ARM_NAMES.values():
        assert f"| {name} |" in table
    return table


def test_segmentation_benchmark_quick(tmp_path):
    run_example("segmentation_benchmark.py", "--quick", "--output-dir", str(tmp_path))
    table = read_benchmark_results(tmp_path, segmentation)
    assert "k = 5" in table and "--quick" in table
    with Image.open(tmp_path / "dice.png") as png:
        assert png.size[0] > 100 and png.size[1] > 100
    assert (tmp_path / "samples_k5.png").is_file()
    main = example_main("segmentation_benchmark.py")
    with pytest.raises(FileExistsError, match="overwrite"):
        main(["--quick", "--output-dir", str(tmp_path)])
    # --render redraws the table and plot of a finished run elsewhere, with the original command
    main(["--render", str(tmp_path / "results.json"), "--output-dir", str(tmp_path / "redraw")])
    assert (tmp_path / "redraw" / "results.md").read_text() == table
    assert (tmp_path / "redraw" / "dice.png").is_file()


def test_fewlabels_benchmark_quick(tmp_path):
    run_example("fewlabels_benchmark.py", "--quick", "--arms", ",".join(fewlabels.ARMS), "--upsample", "linear",
                "--output-dir", str(tmp_path))
    table = read_benchmark_results(tmp_path, fewlabels)
    assert "acceptance" in table and "--quick" in table and (tmp_path / "dice.png").is_file()
    assert "conv (linear upsampling)" in table  # every upsampling mode of the networks reaches the GVAE arms
    main = example_main("fewlabels_benchmark.py")
    with pytest.raises(FileExistsError, match="overwrite"):
        main(["--quick", "--output-dir", str(tmp_path)])
    (tmp_path / "results.md").unlink()
    main(["--render", "--output-dir", str(tmp_path)])  # table and plot again
    assert (tmp_path / "results.md").read_text() == table
    # --merge of one run into another folder: the same table plus the merge in the command and header
    main(["--merge", str(tmp_path), "--output-dir", str(tmp_path / "m")])
    merged = (tmp_path / "m" / "results.md").read_text()
    assert "--merge" in merged and "1 merged runs" in merged and (tmp_path / "m" / "dice.png").is_file()


def test_fewlabels_benchmark_names_a_bad_or_missing_device(tmp_path, capsys):
    main = example_main("fewlabels_benchmark.py")
    with pytest.raises(SystemExit):
        main(["--quick", "--device", "gpu", "--output-dir", str(tmp_path / "a")])
    assert "--device must be a torch device such as cpu, cuda or cuda:1, got 'gpu'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="--device cuda: CUDA is not available"):
            main(["--quick", "--device", "cuda", "--output-dir", str(tmp_path / "b")])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before any output


# slow (about 40 s, the heaviest test): it keeps the suite under 10 minutes on 2 cores (issue 20); the package code
# it drives is tested in tests/test_benchmarks_paper_tables.py, and `python -m pytest -m slow` runs it
@pytest.mark.slow
def test_paper_tables_quick_writes_tables_grids_and_results(tmp_path):
    from test_benchmarks_paper_tables import idx_fixture

    data = idx_fixture(tmp_path / "idx")
    out = tmp_path / "tables"
    argv = ["--dataset", "mnist", "--data-dir", str(data), "--quick", "--seeds", "2", "--output-dir", str(out)]
    run_example("paper_tables.py", *argv)
    text = (out / "tables.md").read_text()
    for heading in ("Table 4", "Table 5", "Table 6", "Table 7", "Verdict"):
        assert f"## {heading}" in text
    assert "--quick --seeds 2" in text and "3 iterations per run" in text and "seeds [0, 1]" in text
    assert "k = 16" in text and "discretised logistic" in text
    for name in ("| GVAE |", "| VAE |", "| WGAN-GP |", "| VAE-GAN |", "| alpha-GAN |", "| *real: train vs test* |",
                 "| 4 | 1 |", "| 8 | 1 |", "| Metric | GVAE | VAE | VAE-GAN | alpha-GAN |"):
        assert name in text, name
    # alpha-GAN has no posterior variance: its likelihood cells say so, its reconstruction error is measured
    elbo_row = next(line for line in text.splitlines() if line.startswith("| ELBO ("))
    assert elbo_row.endswith("| n/a (no posterior variance) |") and "no posterior variance" in text.split("## Table 7")[1]
    mae_row = next(line for line in text.splitlines() if line.startswith("| reconstruction error (MAE"))
    assert "n/a" not in mae_row
    results = json.loads((out / "results.json").read_text())
    runs = results["results"]
    # 5 models x 2 seeds in the main table, plus latent 4 for the sweep (latent 8 = the main GVAE seed 0)
    assert len(runs) == 11 and {r["model"] for r in runs} == {"gvae", "vae", "wgan_gp", "vaegan", "alpha_gan"}
    assert all(r["iterations"] == 3 for r in runs)
    for r in runs:
        m = r["metrics"]
        assert all(math.isfinite(m[k]) for k in ("mmd_gaussian", "mmd_linear", "ms_ssim", "fd", "sharpness_ratio"))
        # main-table runs carry their validation curve (every 2 iterations in --quick, and after the last)
        assert [p["iteration"] for p in r["curve"]] == ([2, 3] if r["table"] == "main" else [])
        if r["table"] == "main" and r["model"] not in ("wgan_gp", "alpha_gan"):
            assert m["iw_bound"] >= m["elbo_iw_subset"] - 1.0  # k = 16 vs 1-sample ELBO on the same images
            assert math.isfinite(m["kl"]) and m["kl"] >= 0 and 0 <= m["rec_mae"] <= 1
        if r["model"] == "wgan_gp":
            assert "elbo" not in m
        if r["model"] == "alpha_gan":
            assert "elbo" not in m and "kl" not in m and "iw_bound" not in m and 0 <= m["rec_mae"] <= 1
    assert results["args"]["eval_samples"] == 32 and results["args"]["image_size"] == 32  # the settled settings
    for png in ("samples_gvae_z8_seed0.png", "samples_vae_z8_seed0.png", "samples_wgan_gp_z8_seed0.png",
                "samples_vaegan_z8_seed0.png", "samples_alpha_gan_z8_seed0.png", "samples_gvae_z4_seed0.png",
                "reconstructions_gvae_seed0.png", "reconstructions_alpha_gan_seed0.png", "real_test_images.png"):
        assert (out / png).stat().st_size > 100, png
    assert len(list((out / "checkpoints").glob("*.pt"))) == 11
    assert "code_critic" in torch.load(out / "checkpoints" / "alpha_gan_z8_seed0.pt", weights_only=True)
    assert "## Validation curves" in text and "sharpness ratio |" in text and "**test accuracy " in text
    with Image.open(out / "curves.png") as png:
        assert png.size[0] > 800 and png.size[1] > 200
    # never overwrite a finished run
    proc = run_example("paper_tables.py", *argv, expect_rc=2)
    assert "exists" in proc.stderr
    # one process per seed, then --merge: the same runs and figures as the single process
    for k in (0, 1):
        run_example("paper_tables.py", *argv[:-1], str(tmp_path / f"s{k}"), "--run-seeds", str(k))
    run_example("paper_tables.py", "--merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--output-dir",
                str(tmp_path / "merged"))
    merged = json.loads((tmp_path / "merged" / "results.json").read_text())
    key = lambda r: (r["table"], r["model"], r["latent"], r["seed"])  # noqa: E731
    assert sorted(map(key, merged["results"])) == sorted(map(key, runs))
    single = {key(r): r["metrics"]["mmd_gaussian"] for r in runs}
    assert all(r["metrics"]["mmd_gaussian"] == single[key(r)] for r in merged["results"])  # deterministic per seed
    merged_text = (tmp_path / "merged" / "tables.md").read_text()
    assert "--run-seeds 0" in merged_text and "--merge" in merged_text and "2 processes in parallel" in merged_text
    assert (tmp_path / "merged" / "curves.png").is_file() and (tmp_path / "merged" / "samples_vae_z8_seed0.png").is_file()
    proc = run_example("paper_tables.py", "--merge", str(tmp_path / "s0"), str(tmp_path / "s0"), "--output-dir",
                       str(tmp_path / "twice"), expect_rc=2)
    assert "appears twice" in proc.stderr


def test_fewlabels_benchmark_is_deterministic_and_reads_a_data_dir(tmp_path):
    """The same command and seed give the same figures to the last digit; --data-dir reads NIfTI folders."""
    import nibabel as nib
    import numpy as np

    args = ["--quick", "--arms", "classical,selftrain,cond_pseudo", "--seg-weight", "0.5", "--critic-quantile", "-1"]
    for run in ("a", "b"):
        run_example("fewlabels_benchmark.py", *args, "--output-dir", str(tmp_path / run))
    dice = [[r["dice"] for r in json.loads((tmp_path / run / "results.json").read_text())["runs"]] for run in "ab"]
    assert dice[0] == dice[1] and len(dice[0]) == 3
    # a user's data: one 3D volume (labels 0, 5, 7) sliced along axis 2
    rng = np.random.default_rng(0)
    label = np.zeros((48, 40, 80), np.int16)
    label[8:40, 8:32, :] = 5
    label[16:30, 12:24, ::2] = 7
    image = (label * 20 + rng.normal(0, 5, label.shape)).astype(np.float32)
    for sub, array in (("images", image), ("labels", label)):
        (tmp_path / "data" / sub).mkdir(parents=True)
        nib.save(nib.Nifti1Image(array, np.eye(4)), str(tmp_path / "data" / sub / "vol.nii.gz"))
    run_example("fewlabels_benchmark.py", "--quick", "--data-dir", str(tmp_path / "data"), "--num-classes", "3",
                "--arms", "classical,selftrain", "--output-dir", str(tmp_path / "mine"))
    results = json.loads((tmp_path / "mine" / "results.json").read_text())
    assert results["num_classes"] == 3 and results["n_train"] + results["n_val"] + results["n_test"] < 80
    assert "label values [0, 5, 7] as classes 0..2" in (tmp_path / "mine" / "results.md").read_text()
    proc = run_example("fewlabels_benchmark.py", "--quick", "--data-dir", str(tmp_path / "data"), "--num-classes", "2",
                       "--output-dir", str(tmp_path / "bad"), expect_rc=1)
    assert "3 distinct values" in proc.stderr


def test_fewlabels_pseudo_labels_diagnoses_every_pool_slice_of_the_train_split():
    from monai_gvae.benchmarks.fewlabels import fewlabel_splits
    from monai_gvae.data import labelled_subset

    proc = run_example("fewlabels_pseudo_labels.py", "--seed", "0", "--k", "5", "--seg-iterations", "2", "--keep", "0.5")
    train = fewlabel_splits().train
    chosen = {i["slice_index"] for i in labelled_subset(train, 5, 0)}
    pool = [i["slice_index"] for i in train if i["slice_index"] not in chosen]
    rows = [line.split(" | ") for line in proc.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [int(r[0][2:]) for r in rows] == pool  # the pool, in order: no val or test slice
    assert sum(r[2] == "yes" for r in rows) == round(0.5 * len(pool))
    assert "mean pseudo-label Dice: kept" in proc.stdout and "pool slices showing cerebellum:" in proc.stdout


def test_sweep_defaults_quick_scores_the_validation_split(tmp_path):
    from monai_gvae.data import load_brain_slices

    run_example("sweep_defaults.py", "--quick", "--output-dir", str(tmp_path))
    results = json.loads((tmp_path / "results.json").read_text())
    # two settings (the bundle's adv_weight 0.01 and 0.03), each trained and evaluated on the val slabs only
    assert [t["factors"] for t in results["trials"]] == [{"adv_weight": 0.01}, {"adv_weight": 0.03}]
    assert all(t["num_images"] == len(load_brain_slices("val")) for t in results["trials"])
    assert results["validation"] == {"validate#dataset#split": "val"}
    for t in results["trials"]:
        assert math.isfinite(t["metrics"]["mmd_gaussian"]) and t["metrics"]["sharpness_ratio"] > 0
        assert (Path(t["output_dir"]) / "model.pt").is_file() and (Path(t["output_dir"]) / "metrics_val.json").is_file()
    table = (tmp_path / "results.md").read_text()
    assert "never the test split" in table and "| **0.01** |" in table and "| 0.03 |" in table and "--quick" in table
    proc = run_example("sweep_defaults.py", "--quick", "--output-dir", str(tmp_path), expect_rc=1)
    assert "FileExistsError" in proc.stderr and "overwrite" in proc.stderr
