"""The few-label benchmark on a folder of several scans: whole volumes held out (held-out subjects), k counted in
labelled scans, registration from one slice per labelled scan; and slabs that never straddle two scans."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_gvae.benchmarks import fewlabels
from monai_gvae.benchmarks.fewlabels import (
    MIN_VOLUMES_FOR_VOLUME_SPLIT,
    FewLabelSettings,
    atlas_labelled_pool,
    fewlabel_splits,
    labelled_and_pool,
)
from monai_gvae.data import brain_slab_split
from test_examples import run_example


def write_scans(folder, count: int, depth: int = 8, size: int = 16) -> None:
    """``count`` small 3D scans (labels 0, 1, 2; every slice along axis 2 holds foreground), one per subject, whose
    structure sits a little elsewhere in each, in ``folder/images`` and ``folder/labels``."""
    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for n in range(count):
        label = np.zeros((size, size, depth), np.int16)
        label[2:14, 2:14, :] = 1
        label[4 + n % 3:9 + n % 3, 5:10, :] = 2
        image = (40.0 * label + 10.0 + n).astype(np.float32)
        for sub, array in (("images", image), ("labels", label)):
            nib.save(nib.Nifti1Image(array, np.eye(4)), str(folder / sub / f"subject{n:02d}.nii.gz"))


def test_whole_volumes_are_held_out_from_enough_scans_and_the_split_is_fixed(tmp_path):
    write_scans(tmp_path, 10)
    data = fewlabel_splits(tmp_path, axis=2)  # auto: 10 3D volumes >= MIN_VOLUMES_FOR_VOLUME_SPLIT
    assert data.split_unit == "volume"
    volumes = {s: {i["volume"] for i in getattr(data, s)} for s in ("train", "val", "test")}
    assert [len(volumes[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    assert not (volumes["train"] & volumes["test"] or volumes["train"] & volumes["val"]
                or volumes["val"] & volumes["test"])  # no scan in two splits
    assert len(data.train) + len(data.val) + len(data.test) == 10 * 8  # every slice of every scan, none left out
    assert "volumes: 6 train, 2 val, 2 test" in data.description
    again = fewlabel_splits(tmp_path, axis=2, split_layout="paired")  # the slab layout does not move volumes
    assert {i["volume"] for i in again.test} == volumes["test"]


def test_slabs_stay_inside_each_scan_and_one_volume_is_split_as_before(tmp_path):
    write_scans(tmp_path / "two", 2, depth=64)
    data = fewlabel_splits(tmp_path / "two", axis=2)  # auto: 2 volumes are too few to hold one out
    assert data.split_unit == "slab" and "slabs inside each volume" in data.description
    expected = brain_slab_split(64, 0.25, 0.15, 3)
    for volume in ("subject00", "subject01"):
        roles = {i["level"]: s for s in ("train", "val", "test") for i in getattr(data, s) if i["volume"] == volume}
        assert [roles.get(level, "gap") for level in range(64)] == list(expected)
    write_scans(tmp_path / "one", 1, depth=64)
    one = fewlabel_splits(tmp_path / "one", axis=2)
    assert [i["level"] for i in one.test] == [z for z in range(64) if expected[z] == "test"]
    # slabs of very short scans cannot hold gaps: the error names the scan and the way out
    write_scans(tmp_path / "short", 3, depth=8)
    with pytest.raises(ValueError, match=r"volume subject00: 8 slices are too few .*\(split_unit 'volume'\)"):
        fewlabel_splits(tmp_path / "short", axis=2)


def test_a_volume_split_that_cannot_be_made_is_refused_with_the_counts(tmp_path):
    write_scans(tmp_path, 3)
    with pytest.raises(ValueError, match=r"3 volumes gives \{'train': 2, 'val': 0, 'test': 1\}"):
        fewlabel_splits(tmp_path, axis=2, split_unit="volume")
    assert fewlabel_splits(tmp_path, axis=2, split_unit="volume", val_fraction=0.0).split_unit == "volume"
    with pytest.raises(ValueError, match="embedded slices are one volume"):
        fewlabel_splits(split_unit="volume")
    with pytest.raises(ValueError, match="split_unit must be one of"):
        fewlabel_splits(tmp_path, split_unit="subject")
    assert MIN_VOLUMES_FOR_VOLUME_SPLIT == 4


def test_k_labelled_scans_are_whole_volumes_and_the_pool_is_the_other_train_volumes(tmp_path):
    write_scans(tmp_path, 10)
    train = fewlabel_splits(tmp_path, axis=2).train
    draws = []
    for seed in (0, 1, 2):
        labelled, pool = labelled_and_pool(train, 2, seed, "volume")
        chosen = {i["volume"] for i in labelled}
        assert len(chosen) == 2 and len(labelled) == 2 * 8  # every slice of the two scans
        assert not chosen & {i["volume"] for i in pool}
        assert len(labelled) + len(pool) == len(train)
        assert labelled_and_pool(train, 2, seed, "volume")[0] == labelled  # the seed fixes the draw
        draws.append(chosen)
    assert len({frozenset(d) for d in draws}) > 1  # other seeds, other scans
    slices, _ = labelled_and_pool(train, 2, 0, "slice")
    assert len(slices) == 2
    with pytest.raises(ValueError, match=r"k = 6 labelled volumes: the train split holds 6 volumes"):
        labelled_and_pool(train, 6, 0, "volume")
    with pytest.raises(ValueError, match="k_unit must be one of"):
        labelled_and_pool(train, 2, 0, "scan")
    with pytest.raises(ValueError, match="k_unit must be one of"):
        FewLabelSettings(k_unit="scan")


def test_registration_from_labelled_scans_uses_one_slice_per_scan_at_the_nearest_level(monkeypatch):
    calls = []

    def fake_propagate(image, atlases, demons_iterations=100, return_image=False):
        calls.append([int(a["image"].flatten()[0]) for a in atlases])  # each atlas image holds its level
        return torch.zeros(1, 4, 4, dtype=torch.long), 0.5, torch.zeros(1, 4, 4)

    monkeypatch.setattr(fewlabels.pool_labels, "propagate_label_map", fake_propagate)

    def scan(volume, levels):
        return [{"image": torch.full((1, 4, 4), float(z)), "label": torch.zeros(1, 4, 4, dtype=torch.long),
                 "volume": volume, "level": z, "slice_index": hash((volume, z)) % 10**6} for z in levels]

    labelled = scan("a", range(0, 9)) + scan("b", range(20, 37))  # scan b is twice as long
    pool = scan("c", range(5, 10))  # relative levels 0, 0.25, 0.5, 0.75, 1
    atlas_labelled_pool(labelled, pool, per_volume=True)
    assert calls == [[0, 20], [2, 24], [4, 28], [6, 32], [8, 36]]  # the same relative level in each scan
    calls.clear()
    atlas_labelled_pool(labelled, pool)  # the slice protocol: every labelled slice is a candidate
    assert calls == [list(range(0, 9)) + list(range(20, 37))] * 5


def test_the_benchmark_runs_on_labelled_scans_from_the_command_line(tmp_path):
    write_scans(tmp_path / "scans", 10)
    run_example("fewlabels_benchmark.py", "--quick", "--data-dir", str(tmp_path / "scans"), "--k-unit", "volume",
                "--arms", "classical,selftrain,selftrain_atlas", "--output-dir", str(tmp_path / "out"))
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["split_unit"] == "volume" and results["settings"]["k_unit"] == "volume"
    assert results["n_train"] == 6 * 8 and results["n_test"] == 2 * 8
    assert {r["arm"] for r in results["runs"]} == {"classical", "selftrain", "selftrain_atlas"}
    assert {r["k"] for r in results["runs"]} == {1}  # --quick labels one scan
    assert all(0.0 <= r["dice"] <= 1.0 for r in results["runs"])
    header = (tmp_path / "out" / "results.md").read_text()
    assert "whole volumes held out (no volume in two splits)" in header
    assert "k labelled volumes (every slice labelled)" in header
    assert "each labelled volume's slice at the nearest relative level" in header
    assert "k slices" not in header and "pool images with the k scans' labels registered" in header
    # k in scans needs scans held out: the embedded slices (one volume) are refused before anything is written
    proc = run_example("fewlabels_benchmark.py", "--quick", "--k-unit", "volume", "--output-dir",
                       str(tmp_path / "refused"), expect_rc=1)
    assert "--k-unit volume labels whole volumes" in proc.stderr and not (tmp_path / "refused").exists()


def write_slice_files(folder, subjects: int, slices: int, size: int = 16) -> None:
    """Each subject's slices as 2D files ``p{n}_slice{j}.nii.gz`` (numbers unpadded, so that name order is not slice
    order past slice 9); class 2 widens with the slice number j, so that the order read can be checked."""
    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for n in range(subjects):
        for j in range(slices):
            label = np.zeros((size, size), np.int16)
            label[2:14, 2:14] = 1
            label[4:9, 3 + n % 3:4 + n % 3 + j // 2] = 2
            image = (label * 40.0 + 10.0).astype(np.float32)
            for sub, array in (("images", image), ("labels", label)):
                nib.save(nib.Nifti1Image(array, np.eye(4)), str(folder / sub / f"p{n}_slice{j}.nii.gz"))


def test_2d_slice_files_grouped_by_subject_are_volumes(tmp_path):
    from monai_gvae.data import InputImageError, load_labelled_slices

    write_slice_files(tmp_path, subjects=6, slices=12)
    items = load_labelled_slices(tmp_path, image_size=16, volume_pattern=r"(p\d+)_slice\d+")
    assert [i["volume"] for i in items] == [f"p{n}" for n in range(6) for _ in range(12)]  # each subject consecutive
    assert [i["level"] for i in items[:12]] == list(range(12))  # slice2 before slice10: natural name order
    assert [i["source"] for i in items[:2]] == ["p0:0", "p0:1"]
    # the level order is the slice order: class 2 widens along it (1 column at slice 0, 6 at slice 11)
    widths = [int((i["label"] == 2).sum()) // 5 for i in items[:12]]
    assert widths == [1 + j // 2 for j in range(12)]
    ungrouped = load_labelled_slices(tmp_path, image_size=16)  # each file its own volume, as before
    assert len({i["volume"] for i in ungrouped}) == 72 and {i["level"] for i in ungrouped} == {0}
    # as volumes they are held out whole, and k counts subjects
    data = fewlabel_splits(tmp_path, volume_pattern=r"(p\d+)_slice\d+")
    assert data.split_unit == "volume" and "2D files grouped by" in data.description
    volumes = {s: {i["volume"] for i in getattr(data, s)} for s in ("train", "val", "test")}
    assert not (volumes["train"] & volumes["test"] or volumes["val"] & volumes["test"])
    labelled, pool = labelled_and_pool(data.train, 1, 0, "volume")
    assert len({i["volume"] for i in labelled}) == 1 and len(labelled) == 12
    # bad patterns and names are named
    with pytest.raises(ValueError, match="no group"):
        load_labelled_slices(tmp_path, image_size=16, volume_pattern=r"p\d+")
    with pytest.raises(ValueError, match="not a regular expression"):
        load_labelled_slices(tmp_path, image_size=16, volume_pattern=r"(p\d+")
    with pytest.raises(InputImageError, match=r"p0_slice0\.nii\.gz.*does not match"):
        load_labelled_slices(tmp_path, image_size=16, volume_pattern=r"(subject\d+)")
    write_scans(tmp_path / "scans", 1)
    with pytest.raises(InputImageError, match="3D volume; volume_pattern groups 2D slice files"):
        load_labelled_slices(tmp_path / "scans", image_size=16, volume_pattern=r"(subject\d+)")


def test_slice_files_of_several_subjects_run_from_the_command_line_with_registered_synthesis(tmp_path):
    write_slice_files(tmp_path / "slices", subjects=6, slices=12)
    run_example("fewlabels_benchmark.py", "--quick", "--data-dir", str(tmp_path / "slices"), "--volume-pattern",
                r"(p\d+)_slice\d+", "--k-unit", "volume", "--arms", "classical,atlas_synth",
                "--output-dir", str(tmp_path / "out"))
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["split_unit"] == "volume" and results["settings"]["volume_pattern"] == r"(p\d+)_slice\d+"
    assert {"MONAI", "Pytorch", "Numpy", "SimpleITK"} <= set(results["versions"])
    assert results["n_train"] % 12 == 0 and results["n_test"] % 12 == 0  # whole subjects
    synth = [r for r in results["runs"] if r["arm"] == "atlas_synth"]
    assert synth and all(r["num_synthetic"] > 0 and 0.0 <= r["dice"] <= 1.0 for r in synth)
    assert "registered synthesis" in (tmp_path / "out" / "results.md").read_text()
