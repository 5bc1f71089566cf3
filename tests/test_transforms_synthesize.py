"""Tests for GVAESynthesize / GVAESynthesized and the sample pool (monai_gvae.transforms)."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.data import CacheDataset, DataLoader, Dataset, MetaTensor, list_data_collate
from monai.transforms import Compose, EnsureTyped
from monai.utils import set_determinism

from monai_gvae.data import load_brain_slices
from monai_gvae.engines import GVAETrainer
from monai_gvae.networks import GVAE, GVAECritic, model_checksum, resolve_gvae
from monai_gvae.transforms import (
    GVAESamplePool,
    GVAESynthesize,
    GVAESynthesized,
    GVAESynthesizeD,
    GVAESynthesizeDict,
    pack_image_label,
)

SIZE = 32
CLASSES = 4


def tiny_gvae(seed: int = 0, label_channels: int = CLASSES) -> GVAE:
    torch.manual_seed(seed)
    return GVAE(
        spatial_dims=2, in_channels=1 + label_channels, image_size=SIZE, latent_size=8, architecture="conv",
        base_channels=4, max_channels=16, image_channels=1, num_classes=CLASSES if label_channels else None,
    ).eval()


def brain_32(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """The embedded slices at 32x32: images (N, 1, 32, 32) in [0, 1], labels (N, 1, 32, 32) int64."""
    items = load_brain_slices(split)
    images = torch.stack([torch.as_tensor(i["image"]) for i in items])
    labels = torch.stack([torch.as_tensor(i["label"]).float() for i in items])
    return F.interpolate(images, size=SIZE, mode="area"), F.interpolate(labels, size=SIZE, mode="nearest").long()


@pytest.fixture(scope="module")
def model() -> GVAE:
    return tiny_gvae()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[GVAE, str]:
    """A tiny joint image+label GVAE trained 40 iterations on the 32x32 brain slices; and its checkpoint."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: one thread is faster than two on a shared machine
    torch.manual_seed(0)
    images, labels = brain_32("train")
    packed = torch.stack([pack_image_label(i, l, CLASSES) for i, l in zip(images, labels)])
    gvae = GVAE(2, 1 + CLASSES, SIZE, latent_size=8, architecture="conv", base_channels=8, max_channels=32,
                image_channels=1, num_classes=CLASSES)
    critic = GVAECritic(2, 1 + CLASSES, SIZE, architecture="conv", base_channels=8, max_channels=32)
    rng = torch.Generator().manual_seed(0)
    loader = [{"image": packed[torch.randint(0, len(packed), (16,), generator=rng)]} for _ in range(40)]
    GVAETrainer(
        "cpu", 1, loader, network=gvae, critic=critic,
        optimizer=torch.optim.Adam(gvae.parameters(), 3e-3, betas=(0.5, 0.9)),
        critic_optimizer=torch.optim.Adam(critic.parameters(), 1e-4, betas=(0.5, 0.9)), seed=0,
    ).run()
    torch.set_num_threads(threads)
    bundle = tmp_path_factory.mktemp("bundle")
    os.makedirs(bundle / "models")
    ckpt = str(bundle / "models" / "model.pt")
    torch.save({"gvae": gvae.state_dict(), "critic": critic.state_dict()}, ckpt)
    return gvae.eval(), ckpt


def meta_image(seed: int = 0) -> MetaTensor:
    affine = torch.diag(torch.tensor([2.0, 3.0, 1.0, 1.0], dtype=torch.float64))
    affine[:3, 3] = torch.tensor([10.0, -5.0, 7.0])
    image = torch.rand(1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    return MetaTensor(image, affine=affine, meta={"filename_or_obj": "/data/patient_0042/t1.nii.gz", "PatientID": "P42"})


def index_label(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, CLASSES, (1, SIZE, SIZE), generator=torch.Generator().manual_seed(seed))


def test_prior_index_label_format_and_meta(model):
    synth = GVAESynthesize(model, prob=1.0, intensity_range=(0.0, 1.0)).set_random_state(0)
    image, label = synth(meta_image(), index_label())
    assert image.shape == (1, SIZE, SIZE) and image.dtype == torch.float32
    assert label.shape == (1, SIZE, SIZE) and label.dtype == torch.int64
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert set(label.unique().tolist()) <= set(range(CLASSES))
    for out in (image, label):
        assert isinstance(out, MetaTensor)
        assert out.meta["synthetic"] is True
        assert out.meta["synthetic_mode"] == "prior"
        # the identity synthesis manifests record too: one model_checksum, in monai_gvae.networks.io
        assert out.meta["synthetic_model_sha256"] == model_checksum(model)
        assert torch.equal(image.affine, meta_image().affine)  # geometry kept
    # no real identifiers on synthetic outputs
    assert image.meta["filename_or_obj"] == "SYNTHETIC" and image.meta["PatientID"] == "SYNTHETIC"
    # the label is generated, not copied
    assert not torch.equal(label.as_tensor(), index_label())


def test_onehot_label_and_integer_image_keep_their_format(model):
    synth = GVAESynthesize(model, prob=1.0).set_random_state(1)  # observed range
    image = (torch.rand(1, SIZE, SIZE) * 200 + 20).to(torch.uint8)
    onehot = F.one_hot(index_label()[0], CLASSES).movedim(-1, 0).to(torch.float16)
    out_image, out_label = synth(image, onehot)
    assert out_image.dtype == torch.uint8 and out_image.shape == image.shape
    assert int(image.min()) <= int(out_image.min()) and int(out_image.max()) <= int(image.max())
    assert out_label.dtype == torch.float16 and out_label.shape == (CLASSES, SIZE, SIZE)
    assert set(out_label.unique().tolist()) <= {0.0, 1.0}
    assert torch.all(out_label.float().sum(0) == 1.0)  # one-hot sums to one everywhere
    # explicit formats are honoured and checked
    with pytest.raises(ValueError, match="one-channel"):
        GVAESynthesize(model, prob=1.0, label_format="index")(image, onehot)


def test_prob_zero_untouched_prob_one_always_synthetic(model):
    image, label = meta_image(), index_label()
    keep = GVAESynthesize(model, prob=0.0).set_random_state(0)
    for _ in range(10):
        out_image, out_label = keep(image, label)
        assert torch.equal(out_image.as_tensor(), image.as_tensor()) and torch.equal(out_label.as_tensor(), label)
        assert out_image.dtype == image.dtype and out_label.dtype == label.dtype
        assert out_image.meta["filename_or_obj"] == image.meta["filename_or_obj"]
        assert torch.equal(out_image.affine, image.affine)
        assert out_image.meta["synthetic"] is False and out_label.meta["synthetic"] is False
    assert "synthetic" not in image.meta  # the input was not modified
    replace = GVAESynthesize(model, prob=1.0, intensity_range=(0.0, 1.0)).set_random_state(0)
    outs = [replace(image, label) for _ in range(10)]
    assert all(o[0].meta["synthetic"] is True and not torch.equal(o[0].as_tensor(), image.as_tensor()) for o in outs)
    assert len({o[0].sum().item() for o in outs}) > 1  # different samples, not one repeated


def test_dictionary_version_aliases_and_missing_keys(model):
    assert GVAESynthesizeD is GVAESynthesized and GVAESynthesizeDict is GVAESynthesized
    synth = GVAESynthesized(["image", "label"], model, prob=1.0, intensity_range=(0.0, 1.0)).set_random_state(0)
    item = {"image": meta_image(), "label": index_label(), "slice_index": 7}
    out = synth(item)
    assert out["synthetic"] is True and out["slice_index"] == 7 and out["image"].meta["synthetic"] is True
    assert item["image"] is not out["image"]
    with pytest.raises(KeyError, match="label"):
        synth({"image": meta_image()})
    lenient = GVAESynthesized(["image", "label"], model, prob=1.0, allow_missing_keys=True)
    assert lenient({"image": meta_image()})["image"].shape == (1, SIZE, SIZE)
    with pytest.raises(ValueError, match="keys"):
        GVAESynthesized(["image", "label", "mask"], model)


def test_flag_survives_collation_in_mixed_batches(model):
    synth = GVAESynthesized(["image", "label"], model, prob=0.5, intensity_range=(0.0, 1.0))
    data = [{"image": meta_image(i), "label": index_label(i)} for i in range(16)]
    set_determinism(3)
    batch = next(iter(DataLoader(Dataset(data, synth), batch_size=16, collate_fn=list_data_collate)))
    flags = batch["synthetic"]
    assert flags.dtype == torch.bool and 0 < int(flags.sum()) < 16  # a mixed batch
    assert torch.equal(torch.as_tensor(batch["image"].meta["synthetic"]), flags)
    assert torch.equal(torch.as_tensor(batch["label"].meta["synthetic"]), flags)
    checksums = batch["image"].meta["synthetic_model_sha256"]
    assert [c == model_checksum(model) for c in checksums] == flags.tolist()
    assert batch["image"].affine.shape == (16, 4, 4)
    set_determinism(None)


def run_loader(model, num_workers: int, seed: int) -> list[torch.Tensor]:
    set_determinism(seed)
    data = [{"image": meta_image(i), "label": index_label(i)} for i in range(12)]
    synth = GVAESynthesized(["image", "label"], model, prob=0.5, intensity_range=(0.0, 1.0), pool_size=8)
    loader = DataLoader(Dataset(data, synth), batch_size=4, num_workers=num_workers, shuffle=True)
    out = [torch.cat([b["image"].as_tensor().flatten(1), b["label"].as_tensor().flatten(1).float(),
                      b["synthetic"][:, None].float()], 1) for _ in range(2) for b in loader]
    set_determinism(None)
    return out


@pytest.mark.parametrize("num_workers", [0, 2])
def test_seeded_runs_repeat_exactly(model, num_workers):
    first, second = run_loader(model, num_workers, 5), run_loader(model, num_workers, 5)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    flags = torch.cat([b[:, -1] for b in first])
    assert 0 < flags.sum() < len(flags)
    other = run_loader(model, num_workers, 6)
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_set_random_state_reseeds_latents(model):
    a = GVAESynthesize(model, prob=1.0, intensity_range=(0.0, 1.0), pool_size=4, refresh_every=2)
    b = GVAESynthesize(model, prob=1.0, intensity_range=(0.0, 1.0), pool_size=4, refresh_every=2)
    image = torch.rand(1, SIZE, SIZE)
    for t in (a, b):
        t(image)  # fill the pools with unrelated states
        t.set_random_state(11)
    outs_a, outs_b = [a(image) for _ in range(6)], [b(image) for _ in range(6)]
    assert all(torch.equal(x, y) for x, y in zip(outs_a, outs_b))
    assert a.pool.num_refills >= 3  # the refills (after every 2 draws) repeat too


def test_after_cached_prefix_and_copies_share_the_model(model):
    synth = GVAESynthesized(["image", "label"], model, prob=1.0, intensity_range=(0.0, 1.0))
    data = [{"image": torch.rand(1, SIZE, SIZE), "label": index_label(i)} for i in range(6)]
    ds = CacheDataset(data, Compose([EnsureTyped(keys=["image", "label"]), synth]), num_workers=2, progress=False)
    items = [ds[i] for i in range(len(ds))]
    assert all(i["synthetic"] is True and i["image"].meta["synthetic"] is True for i in items)
    assert all(isinstance(c["image"], MetaTensor) and "synthetic" not in c["image"].meta for c in ds._cache)
    clone = copy.deepcopy(synth)
    assert clone.pool is not synth.pool and clone.pool.model is synth.pool.model


def test_posterior_is_closer_to_its_input_than_prior(trained):
    gvae, _ = trained
    images, labels = brain_32("test")
    post = GVAESynthesize(gvae, prob=1.0, mode="posterior", sigma=0.2, intensity_range=(0.0, 1.0)).set_random_state(0)
    prior = GVAESynthesize(gvae, prob=1.0, mode="prior", intensity_range=(0.0, 1.0)).set_random_state(0)
    d_post, d_prior = [], []
    for image, label in zip(images, labels):
        p_image, p_label = post(image, label)
        q_image, _ = prior(image, label)
        assert p_image.meta["synthetic_mode"] == "posterior"
        assert set(p_label.unique().tolist()) <= set(range(CLASSES))
        d_post.append(float((p_image - image).abs().mean()))
        d_prior.append(float((q_image - image).abs().mean()))
    assert np.mean(d_post) < 0.6 * np.mean(d_prior)
    assert np.mean(np.array(d_post) < np.array(d_prior)) >= 0.8
    with pytest.raises(ValueError, match="pass the label"):
        post(images[0])


def test_model_from_checkpoint_and_bundle_folder(trained, tmp_path):
    gvae, ckpt = trained
    bundle = os.path.dirname(os.path.dirname(ckpt))
    from_file, from_bundle = GVAESamplePool(ckpt), GVAESamplePool(bundle)
    assert from_file.checksum == from_bundle.checksum and len(from_file.checksum) == 64
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(from_file.decode(z)[0], GVAESamplePool(gvae).decode(z)[0], atol=1e-6)
    with pytest.raises(FileNotFoundError, match="models"):
        resolve_gvae(str(tmp_path))
    with pytest.raises(TypeError, match="GVAE"):
        GVAESynthesize(torch.nn.Linear(2, 2))


def test_input_checks_and_resize(model):
    synth = GVAESynthesize(model, prob=1.0, intensity_range=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"resize=True"):
        synth(torch.rand(1, 48, 48), torch.zeros(1, 48, 48, dtype=torch.long))
    with pytest.raises(ValueError, match="image channel"):
        synth(torch.rand(2, SIZE, SIZE))
    with pytest.raises(ValueError, match="3 channels"):
        synth(torch.rand(1, SIZE, SIZE), torch.zeros(3, SIZE, SIZE))
    with pytest.raises(ValueError, match="images only"):
        GVAESynthesize(tiny_gvae(label_channels=0), prob=1.0)(torch.rand(1, SIZE, SIZE), index_label())
    with pytest.raises(ValueError, match="mode"):
        GVAESynthesize(model, mode="conditional")
    for mode in ("prior", "posterior"):
        resized = GVAESynthesize(model, prob=1.0, mode=mode, resize=True, intensity_range=(0.0, 1.0))
        image, label = resized(torch.rand(1, 48, 40), torch.randint(0, CLASSES, (1, 48, 40)))
        assert image.shape == (1, 48, 40) and label.shape == (1, 48, 40)
        assert set(label.unique().tolist()) <= set(range(CLASSES))


def test_pool_refresh_filter_and_device_default(model):
    pool = GVAESamplePool(model, pool_size=4, batch_size=2, refresh_every=3)
    rng = torch.Generator().manual_seed(0)
    draws = [pool.draw(u, rng)[0] for u in np.linspace(0, 0.99, 7)]
    assert pool.num_refills == 3 and len(pool) == 4 and pool.device.type == "cpu"
    assert torch.equal(draws[0], draws[0].clamp(-1, 1))
    half = GVAESamplePool(model, pool_size=8, sample_filter=lambda img, lab: img.flatten(1).mean(1) > img.mean())
    half.refill(torch.Generator().manual_seed(0))
    assert 0.0 < half.acceptance_rate < 1.0 and 0 < len(half) <= 8
    none = GVAESamplePool(model, pool_size=4, max_attempts=2, sample_filter=lambda img, lab: torch.zeros(len(img)))
    with pytest.raises(RuntimeError, match="rejected all 8"):
        none.refill()


def test_pool_speed_options_keep_the_samples(model):
    """channels_last (default) changes the weights' memory layout only; amp decodes in bfloat16 on a CPU: the
    same samples to bfloat16's precision, float32 out, and the same model identity."""
    plain = GVAESamplePool(copy.deepcopy(model), channels_last=False)
    fast = GVAESamplePool(copy.deepcopy(model))
    half = GVAESamplePool(copy.deepcopy(model), amp=True)
    assert fast.model.generator.trunk.body[0].conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert plain.checksum == fast.checksum == half.checksum
    z = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    (i0, l0), (i1, l1), (i2, l2) = plain.decode(z), fast.decode(z), half.decode(z)
    assert i2.dtype == torch.float32 and l2.dtype == torch.int64
    assert torch.allclose(i0, i1, atol=1e-5) and (l0 == l1).float().mean() > 0.999
    assert (i0 - i2).abs().max() < 0.05 and (l0 == l2).float().mean() > 0.9
    assert not torch.equal(i0, i2)  # bfloat16 really was used
    synth = GVAESynthesized(["image", "label"], model=copy.deepcopy(model), prob=1.0, amp=True)
    assert synth.pool.amp
