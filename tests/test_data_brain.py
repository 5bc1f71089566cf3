"""Tests for the embedded brain data set (monai_gvae.data.brain) and its rebuild script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import subprocess_env
from monai_gvae.data import (
    BRAIN_CLASS_NAMES,
    DEFAULT_BRAIN_SLICES_FILE,
    DEFAULT_BRAIN_VOLUME_FILE,
    BrainSliceDataset,
    brain_holdout_mask,
    brain_slab_split,
    load_brain_slices,
    load_brain_volume,
    synthetic_slices,
)

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = Path("/usr/share/mricron/templates")


def test_class_names_and_files_shipped():
    assert BRAIN_CLASS_NAMES == ("background", "cortex", "deep_grey_matter", "cerebellum")
    for path in (DEFAULT_BRAIN_SLICES_FILE, DEFAULT_BRAIN_VOLUME_FILE):
        assert path.is_file()
        assert path.stat().st_size < 512 * 1024
    assert (DEFAULT_BRAIN_SLICES_FILE.parent / "BRAIN_DATA_NOTICE.txt").is_file()
    with np.load(DEFAULT_BRAIN_SLICES_FILE, allow_pickle=False) as npz:
        assert tuple(npz["class_names"]) == BRAIN_CLASS_NAMES
        assert npz["image"].dtype == np.uint8 and npz["label"].dtype == np.uint8


def test_slices_shapes_dtypes_ranges():
    items = load_brain_slices("all")
    assert 110 <= len(items) <= 130  # every axial 1 mm slice with brain
    for item in items:
        assert set(item) == {"image", "label", "slice_index"}
        assert item["image"].shape == (1, 64, 64) and item["image"].dtype == np.float32
        assert item["label"].shape == (1, 64, 64) and item["label"].dtype == np.int64
        assert isinstance(item["slice_index"], int)
        assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
        assert item["image"].max() > 0.5  # every slice contains brain
        assert set(np.unique(item["label"])) <= {0, 1, 2, 3}
    union = set(np.unique(np.stack([i["label"] for i in items])).tolist())
    assert union == {0, 1, 2, 3}
    indices = [i["slice_index"] for i in items]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    # labels lie inside the brain: no foreground label on zero-intensity background far from tissue
    img = np.stack([i["image"] for i in items])
    lab = np.stack([i["label"] for i in items])
    assert (img[lab > 0] > 0).mean() > 0.95


def test_orientation_anterior_up_cerebellum_posterior():
    items = load_brain_slices("all")
    lab = np.stack([i["label"][0] for i in items])
    rows = np.nonzero(lab == 3)[1]
    assert rows.mean() > 32  # cerebellum (posterior) in the lower half of radiological views


@pytest.mark.parametrize("fraction", [0.25, 0.1, 0.3])
def test_slab_splits_are_disjoint_contiguous_and_gapped(fraction):
    all_idx = [i["slice_index"] for i in load_brain_slices("all")]
    splits = {s: [i["slice_index"] for i in load_brain_slices(s, holdout_fraction=fraction)] for s in ("train", "val", "test")}
    assert not set(splits["train"]) & set(splits["test"]) and not set(splits["val"]) & (set(splits["train"]) | set(splits["test"]))
    assert len(splits["test"]) == round(len(all_idx) * fraction)
    assert len(splits["val"]) == round(len(all_idx) * 0.15)
    # no test slice within 3 slices of a train or val slice, no val slice within 3 of a train slice
    for held, others in (("test", ("train", "val")), ("val", ("train",))):
        nearest = min(abs(a - b) for a in splits[held] for o in others for b in splits[o])
        assert nearest > 3, (held, nearest)
    # held-out slabs spread over the brain: inferior, middle and superior test slabs
    assert splits["test"][0] < np.percentile(all_idx, 25) and splits["test"][-1] > np.percentile(all_idx, 75)
    # deterministic
    assert splits["test"] == [i["slice_index"] for i in load_brain_slices("test", holdout_fraction=fraction)]


def test_default_split_sizes_and_layout():
    roles = brain_slab_split(121)
    text = "".join({"train": ".", "val": "V", "test": "T", "gap": "-"}[r] for r in roles)
    assert text.count("T") == 30 and text.count("V") == 18 and text.count(".") == 43 and text.count("-") == 30
    assert text.split(".")[0] == "" and "---TTTTTTTTTT---" in text and "---VVVVVVVVV---" in text
    assert [len(load_brain_slices(s)) for s in ("train", "val", "test")] == [43, 18, 30]


def test_paired_layout_puts_a_val_slab_beside_each_test_slab():
    roles = brain_slab_split(121, layout="paired")
    text = "".join({"train": ".", "val": "V", "test": "T", "gap": "-"}[r] for r in roles)
    assert text.count("T") == 30 and text.count("V") == 18 and text.count(".") == 46
    # three held-out blocks, each val slab, the gap, test slab, with gaps to train on both sides
    assert text.count("---VVVVVV---TTTTTTTTTT---") == 3 and "T." not in text and ".V" not in text
    # no test slice within 3 of a train or val slice, no val slice within 3 of a train slice
    idx = {r: [i for i, x in enumerate(roles) if x == r] for r in ("train", "val", "test")}
    for held, others in (("test", ("train", "val")), ("val", ("train",))):
        assert min(abs(a - b) for a in idx[held] for o in others for b in idx[o]) > 3
    # validation now covers the levels the test slabs cover: each test slab has its val slab 4 slices below
    starts = [i for i in idx["test"] if i - 1 not in idx["test"]]
    assert all(s - 4 in idx["val"] for s in starts)
    # the embedded slices: the cerebellum-dominated levels (over half the brain) reach val, which the
    # alternating layout's val slabs never show
    def cerebellum_dominated(split, layout):
        return sum(int((i["label"] == 3).sum() > 0.5 * (i["label"] > 0).sum())
                   for i in load_brain_slices(split, layout=layout))
    assert cerebellum_dominated("val", "alternate") == 0 and cerebellum_dominated("val", "paired") > 0
    assert [len(load_brain_slices(s, layout="paired")) for s in ("train", "val", "test")] == [46, 18, 30]


def test_slab_split_errors():
    with pytest.raises(ValueError, match="no training slice"):
        brain_slab_split(40, 0.25, 0.15, gap=3)
    with pytest.raises(ValueError, match="val_fraction"):
        brain_slab_split(100, 0.25, 1.0)
    with pytest.raises(ValueError, match="gap"):
        brain_slab_split(100, gap=-1)
    assert (brain_slab_split(10, 0.0, 0.0) == "train").all()
    with pytest.raises(ValueError, match="layout must be one of"):
        brain_slab_split(100, layout="interleaved")
    with pytest.raises(ValueError, match="val_slabs .2. must equal test_slabs .3."):
        brain_slab_split(100, val_slabs=2, layout="paired")


def test_holdout_mask():
    assert brain_holdout_mask(8, 0.25).nonzero()[0].tolist() == [2, 6]
    assert not brain_holdout_mask(10, 0.0).any()
    with pytest.raises(ValueError):
        brain_holdout_mask(10, 1.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        load_brain_slices("validation")
    with pytest.raises(ValueError, match="val_fraction"):
        load_brain_slices("val", val_fraction=1.5)
    with pytest.raises(ValueError, match="holdout_fraction"):
        load_brain_slices("train", holdout_fraction=-0.1)


def test_missing_and_bad_data_file(tmp_path):
    missing = tmp_path / "nope" / "brain.npz"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_brain_slices(data_file=missing)
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_brain_volume(data_file=missing)
    with pytest.raises(FileNotFoundError, match=str(missing)):
        BrainSliceDataset(data_file=missing)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=str(bad)):
        load_brain_slices(data_file=bad)
    nolabel = tmp_path / "nolabel.npz"
    np.savez(nolabel, image=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="label"):
        load_brain_slices(data_file=nolabel)


def test_custom_data_file(tmp_path):
    path = tmp_path / "custom.npz"
    image = np.full((3, 16, 16), 255, np.uint8)
    label = np.ones((3, 16, 16), np.uint8)
    np.savez(path, image=image, label=label)
    items = load_brain_slices(data_file=str(path))
    assert [i["slice_index"] for i in items] == [0, 1, 2]
    assert items[0]["image"].shape == (1, 16, 16) and float(items[0]["image"].max()) == 1.0


def test_volume():
    vol = load_brain_volume()
    assert vol["image"].shape == (1, 64, 64, 64) and vol["image"].dtype == np.float32
    assert vol["label"].shape == (1, 64, 64, 64) and vol["label"].dtype == np.int64
    assert 0.0 <= vol["image"].min() and vol["image"].max() <= 1.0
    assert set(np.unique(vol["label"]).tolist()) == {0, 1, 2, 3}
    assert vol["affine"].shape == (4, 4)
    # RAS: the cerebellum lies posterior (low axis-1) and inferior (low axis-2) of the cortex
    cb, cx = np.argwhere(vol["label"][0] == 3).mean(0), np.argwhere(vol["label"][0] == 1).mean(0)
    assert cb[1] < cx[1] and cb[2] < cx[2]


def test_dataset_with_transform():
    from monai.transforms import Compose, EnsureTyped, ScaleIntensityRanged

    ds = BrainSliceDataset(
        split="test",
        transform=Compose(
            [ScaleIntensityRanged("image", 0.0, 1.0, -1.0, 1.0), EnsureTyped(["image", "label"], track_meta=False)]
        ),
    )
    assert len(ds) == len(load_brain_slices("test"))
    item = ds[0]
    assert tuple(item["image"].shape) == (1, 64, 64)
    assert float(item["image"].min()) >= -1.0 and float(item["image"].max()) <= 1.0


def test_synthetic_slices():
    items = synthetic_slices(4, image_size=32, num_seg_classes=3, seed=3)
    assert len(items) == 4
    for k, item in enumerate(items):
        assert item["image"].shape == (1, 32, 32) and item["image"].dtype == np.float32
        assert item["label"].shape == (1, 32, 32) and item["label"].dtype == np.int64
        assert item["slice_index"] == k
        assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
        assert set(np.unique(item["label"])) <= {0, 1, 2, 3}
    again = synthetic_slices(4, image_size=32, num_seg_classes=3, seed=3)
    other = synthetic_slices(4, image_size=32, num_seg_classes=3, seed=4)
    for a, b in zip(items, again):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    assert any(not np.array_equal(a["label"], b["label"]) for a, b in zip(items, other))
    assert synthetic_slices(1)[0]["image"].shape == (1, 64, 64)
    assert synthetic_slices(0) == []
    with pytest.raises(ValueError):
        synthetic_slices(1, image_size=4)


@pytest.mark.skipif(
    not all((TEMPLATES / f).is_file() for f in ("ch2bet.nii.gz", "aal.nii.gz", "aal.nii.txt")),
    reason=f"no MRIcron templates (ch2bet.nii.gz, aal.nii.gz, aal.nii.txt) in {TEMPLATES}: install the Debian package "
    "mricron-data (apt-get install mricron-data; .ci/run installs it where it can)",
)
def test_rebuild_reproduces_shipped_arrays(tmp_path):
    # the script, run as a user runs it
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "build_brain_data.py"), "--templates-dir",
                           str(TEMPLATES), "--out", str(tmp_path)], cwd=REPO, env=subprocess_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name, shipped in (("brain2d_64.npz", DEFAULT_BRAIN_SLICES_FILE), ("brain3d_64.npz", DEFAULT_BRAIN_VOLUME_FILE)):
        with np.load(tmp_path / name, allow_pickle=False) as new, np.load(shipped, allow_pickle=False) as old:
            assert sorted(new.files) == sorted(old.files)
            for key in old.files:
                np.testing.assert_array_equal(new[key], old[key], err_msg=f"{name}:{key}")
