"""Tests for SyntheticMixDataset and load_synthetic_manifest (monai_gvae.data.mixing)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.data import DataLoader
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from monai.utils import set_determinism

from monai_gvae.bundle import synthesize_to_nifti
from monai_gvae.data import SyntheticMixDataset, load_synthetic_manifest
from monai_gvae.networks import GVAE
from monai_gvae.transforms import GVAESynthesized

SIZE = 16


@pytest.fixture(scope="module")
def model() -> GVAE:
    torch.manual_seed(0)
    return GVAE(2, 3, SIZE, latent_size=4, architecture="conv", base_channels=4, max_channels=8,
                image_channels=1, num_classes=2).eval()


def real_items(n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"image": rng.random((1, SIZE, SIZE), dtype=np.float32), "label": (rng.random((1, SIZE, SIZE)) > 0.5).astype(np.int64),
             "index": i} for i in range(n)]


@pytest.mark.parametrize("fraction, epoch_length", [(0.5, None), (0.25, 64), (0.7, 50)])
def test_ratio_per_epoch(model, fraction, epoch_length):
    synth = GVAESynthesized(["image", "label"], model, prob=1.0, intensity_range=(0.0, 1.0), pool_size=8)
    mixed = SyntheticMixDataset(real_items(10), synth, synthetic_fraction=fraction, epoch_length=epoch_length)
    length = epoch_length or round(10 / (1 - fraction))
    assert len(mixed) == length and mixed.num_synthetic == round(fraction * length)
    set_determinism(0)
    loader = DataLoader(mixed, batch_size=4, shuffle=True)
    per_batch = []
    for epoch in range(2):
        mixed.set_epoch(epoch)
        flags = []
        for batch in loader:
            assert torch.equal(torch.as_tensor(batch["image"].meta["synthetic"]), batch["synthetic"])
            flags.append(batch["synthetic"])
            per_batch.append(batch["synthetic"].float().mean().item())
        flags = torch.cat(flags)
        assert int(flags.sum()) == mixed.num_synthetic  # exact per epoch
    # shuffled batches scatter around the requested share: the mean over batches is within sampling error
    n = len(per_batch)
    assert abs(np.mean(per_batch) - fraction) < 3 * np.sqrt(fraction * (1 - fraction) / (4 * n)) + 0.02
    assert np.std(per_batch) > 0  # spread over batches, not blocks of one kind
    set_determinism(None)


def test_real_items_each_once_and_layout_seeded(model):
    synth = GVAESynthesized(["image", "label"], model, prob=1.0, intensity_range=(0.0, 1.0))
    mixed = SyntheticMixDataset(real_items(6), synth, synthetic_fraction=0.5, seed=3)
    real = [mixed[i]["index"] for i in range(len(mixed)) if not mixed.is_synthetic(i)]
    assert sorted(real) == list(range(6))
    layout0 = [mixed._real_index.tolist(), mixed._synthetic_index.tolist()]
    mixed.set_epoch(1)
    assert [mixed._real_index.tolist(), mixed._synthetic_index.tolist()] != layout0
    mixed.set_epoch(0)
    assert [mixed._real_index.tolist(), mixed._synthetic_index.tolist()] == layout0
    synthetic = mixed[len(mixed) - 1]
    assert synthetic["synthetic"] is True and synthetic["image"].meta["synthetic"] is True
    assert synthetic["image"].shape == (1, SIZE, SIZE) and set(np.unique(synthetic["label"])) <= {0, 1}


def test_pre_generated_nifti_side(model, tmp_path):
    synthesize_to_nifti(model, str(tmp_path), num_samples=3, seed=0)
    items = load_synthetic_manifest(tmp_path)
    assert len(items) == 3 and all(i["synthetic"] and i["image"].endswith(".nii.gz") for i in items)
    load = Compose([LoadImaged(keys=["image", "label"]), EnsureChannelFirstd(keys=["image", "label"])])
    mixed = SyntheticMixDataset(real_items(4), items, synthetic_fraction=0.5, synthetic_transform=load)
    synthetic = [mixed[i] for i in range(len(mixed)) if mixed.is_synthetic(i)]
    assert len(synthetic) == 4 and all(s["image"].shape == (1, SIZE, SIZE) for s in synthetic)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["synthetic"] = False
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="synthetic"):
        load_synthetic_manifest(tmp_path)


def test_invalid_arguments(model):
    with pytest.raises(ValueError, match="synthetic_fraction"):
        SyntheticMixDataset(real_items(2), [], synthetic_fraction=1.0)
    with pytest.raises(ValueError, match="synthetic side"):
        SyntheticMixDataset(real_items(2), None, synthetic_fraction=0.5)
    with pytest.raises(ValueError, match="prob=1.0"):
        SyntheticMixDataset(real_items(2), GVAESynthesized(["image", "label"], model, prob=0.5))
    with pytest.raises(ValueError, match="pre-generated synthetic pairs"):
        SyntheticMixDataset(real_items(2), GVAESynthesized(["image", "label"], model, prob=1.0),
                            synthetic_transform=lambda i: i)
    assert len(SyntheticMixDataset(real_items(3), None, synthetic_fraction=0.0)) == 3
    with pytest.raises(FileNotFoundError, match="manifest"):
        load_synthetic_manifest("/nonexistent")
