"""Few-label synthesis: label-conditioned GVAE, pre-training -> adaptation, pair filtering, sigma calibration."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from monai.data import DataLoader, MetaTensor
from monai.losses import DiceCELoss
from monai.networks.nets import UNet

from conftest import subprocess_env
from monai_gvae.data import labelled_subset, synthetic_slices, unlabelled_pool
from monai_gvae.engines import GVAEEvaluator, GVAETrainer
from monai_gvae.networks import GVAE, GVAECritic, load_gvae, load_pretrained_weights
from monai_gvae.transforms import (
    GVAESynthesized,
    PackImageLabeld,
    SyntheticPairFilter,
    calibrate_posterior_sigma,
    class_dice,
    foreground_dice,
    interpolate_label_maps,
    label_to_condition,
    nearest_label_maps,
    posterior_variants,
    signed_distance_maps,
    synthesize_for_labels,
)

SIZE, CLASSES = 32, 3
TINY = {"spatial_dims": 2, "image_size": SIZE, "latent_size": 8, "architecture": "conv", "base_channels": 4,
        "max_channels": 8}
CONFIGS = os.path.join("bundles", "gvae_brain2d", "configs")


def slices(n=12, seed=0):
    """(images in [0, 1], labels) of create_test_image_2d slices: classes 0..2, intensity follows the class."""
    items = synthetic_slices(n, image_size=SIZE, num_seg_classes=CLASSES - 1, seed=seed)
    x = torch.stack([torch.as_tensor(i["image"]) for i in items]).float()
    y = torch.stack([torch.as_tensor(i["label"]) for i in items]).long()
    return x, y


def conditional_model(seed=0):
    torch.manual_seed(seed)
    return GVAE(in_channels=1, num_classes=CLASSES, condition_channels=CLASSES, **TINY).eval()


def test_conditional_networks_and_errors():
    model = conditional_model()
    _, y = slices(3)
    cond = label_to_condition(y, CLASSES)
    assert cond.shape == (3, CLASSES, SIZE, SIZE) and set(cond.unique().tolist()) == {-1.0, 1.0}
    x = torch.rand(3, 1, SIZE, SIZE) * 2 - 1
    recon, mu, _ = model(x, cond)
    assert recon.shape == x.shape and mu.shape == (3, 8)
    a = model.sample(3, generator=torch.Generator().manual_seed(0), condition=cond)
    b = model.sample(3, generator=torch.Generator().manual_seed(0), condition=label_to_condition(y.flip(0), CLASSES))
    assert a.shape == (3, 1, SIZE, SIZE) and not torch.allclose(a, b)  # the image depends on the label map
    critic = GVAECritic(2, 1, SIZE, architecture="conv", base_channels=4, max_channels=8, condition_channels=CLASSES)
    assert critic(x, cond).shape == (3, 1)
    with pytest.raises(ValueError, match="conditional"):
        model.sample(3)
    with pytest.raises(ValueError, match="condition"):
        critic(x)
    with pytest.raises(ValueError, match="condition_channels=0"):
        GVAE(in_channels=1, **TINY).decode(torch.randn(3, 8), cond)
    with pytest.raises(ValueError, match="batch has 2"):
        model.decode(torch.randn(3, 8), cond[:2])
    # the configuration travels with the weights
    assert load_gvae_roundtrip(model).condition_channels == CLASSES


def load_gvae_roundtrip(model):
    return GVAE.from_state_dict(model.state_dict())


@pytest.mark.parametrize("target", ["joint", "conditional"])
def test_pretrained_weights_grow_channels_and_keep_the_function(target):
    torch.manual_seed(0)
    pre = GVAE(in_channels=1, **TINY).eval()
    pre_critic = GVAECritic(2, 1, SIZE, architecture="conv", base_channels=4, max_channels=8).eval()
    if target == "joint":
        model = GVAE(in_channels=1 + CLASSES, image_channels=1, num_classes=CLASSES, **TINY).eval()
        critic = GVAECritic(2, 1 + CLASSES, SIZE, architecture="conv", base_channels=4, max_channels=8).eval()
    else:
        model = conditional_model(1)
        critic = GVAECritic(2, 1, SIZE, architecture="conv", base_channels=4, max_channels=8,
                            condition_channels=CLASSES).eval()
    report = load_pretrained_weights(model, {"gvae": pre.state_dict()})
    assert "encoder.trunk.body.0.conv.weight" in report["partial"] and not report["mismatched"]
    load_pretrained_weights(critic, {"critic": pre_critic.state_dict()}, key="critic")
    x = torch.rand(2, 1, SIZE, SIZE) * 2 - 1
    _, y = slices(2)
    cond = label_to_condition(y, CLASSES)
    z = torch.randn(2, 8)
    with torch.no_grad():
        if target == "joint":
            # new input channels start at zero: the encoder ignores the label; the image channel is unchanged
            assert torch.allclose(model.encode(torch.cat([x, cond], 1))[0], pre.encode(x)[0], atol=1e-5)
            assert torch.allclose(model.decode(z)[:, :1], pre.decode(z), atol=1e-5)
            assert torch.allclose(critic(torch.cat([x, cond], 1)), pre_critic(x), atol=1e-5)
        else:
            assert torch.allclose(model.encode(x, cond)[0], pre.encode(x)[0], atol=1e-5)
            assert torch.allclose(model.decode(z, cond), pre.decode(z), atol=1e-5)
            assert torch.allclose(critic(x, cond), pre_critic(x), atol=1e-5)
    with pytest.raises(ValueError, match="fit the pretrained"):
        load_pretrained_weights(GVAE(in_channels=1, **{**TINY, "architecture": "resnet"}), pre.state_dict())


def test_conditional_trainer_and_evaluator_run():
    x, y = slices(8)
    pack = PackImageLabeld(num_classes=CLASSES)
    data = [pack({"image": a, "label": b}) for a, b in zip(x, y)]
    loader = DataLoader(data, batch_size=4, shuffle=True)
    model = conditional_model().train()
    critic = GVAECritic(2, 1, SIZE, architecture="conv", base_channels=4, max_channels=8, condition_channels=CLASSES)
    trainer = GVAETrainer(
        device="cpu", max_epochs=2, train_data_loader=loader, network=model, critic=critic,
        optimizer=torch.optim.Adam(model.parameters(), 1e-3), critic_optimizer=torch.optim.Adam(critic.parameters()),
        seed=0, n_critic=2,
    )
    trainer.run()
    out = trainer.state.output
    assert trainer.state.iteration == 4 and np.isfinite(out["loss_g"]) and out["gp"] > 0
    assert out["image"].shape == (4, 1, SIZE, SIZE)  # the model's input, without the condition channels
    evaluator = GVAEEvaluator("cpu", DataLoader(data, batch_size=4), model)
    evaluator.run()
    assert evaluator.state.output["pred"].shape == (4, 1, SIZE, SIZE)
    unconditional = GVAECritic(2, 1, SIZE, architecture="conv", base_channels=4, max_channels=8)
    with pytest.raises(ValueError, match="same condition_channels"):
        GVAETrainer(device="cpu", max_epochs=1, train_data_loader=loader, network=model, critic=unconditional,
                    optimizer=torch.optim.Adam(model.parameters()),
                    critic_optimizer=torch.optim.Adam(unconditional.parameters()))


def test_conditional_critic_step_in_chunks_gives_the_same_updates():
    """critic_chunk_size with a conditional critic: each chunk is scored and penalised under its own conditions."""
    x, y = slices(8)
    pack = PackImageLabeld(num_classes=CLASSES)
    data = [pack({"image": a, "label": b}) for a, b in zip(x, y)]
    runs = []
    for chunk_size in (None, 3):
        torch.manual_seed(0)
        model = conditional_model().train()
        critic = GVAECritic(2, 1, SIZE, architecture="conv", base_channels=4, max_channels=8, condition_channels=CLASSES)
        trainer = GVAETrainer(
            device="cpu", max_epochs=1, train_data_loader=DataLoader(data, batch_size=4), network=model, critic=critic,
            optimizer=torch.optim.SGD(model.parameters(), 1e-2), critic_optimizer=torch.optim.SGD(critic.parameters(), 1e-2),
            seed=0, critic_chunk_size=chunk_size,
        )
        trainer.run()
        runs.append([p.detach().clone() for p in list(critic.parameters()) + list(model.parameters())])
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(*runs))


def test_conditional_mode_returns_the_label_unchanged_and_a_new_image():
    x, y = slices(2)
    model = conditional_model()
    synth = GVAESynthesized(keys=["image", "label"], model=model, prob=1.0, mode="conditional",
                            intensity_range=(0.0, 1.0))
    synth.set_random_state(seed=0)
    item = {"image": MetaTensor(x[0]), "label": MetaTensor(y[0].to(torch.uint8))}
    out = synth(item)
    assert torch.equal(out["label"].as_tensor(), item["label"].as_tensor())
    assert out["label"].dtype == torch.uint8 and out["label"].meta["synthetic"] is True
    assert out["image"].shape == x[0].shape and out["image"].dtype == x[0].dtype
    assert out["image"].meta["synthetic"] is True and out["image"].meta["synthetic_mode"] == "conditional"
    assert out["synthetic"] is True
    assert (out["image"].as_tensor() - x[0]).abs().mean() > 0.05  # a new image, not the input
    assert 0.0 <= float(out["image"].min()) and float(out["image"].max()) <= 1.0
    # for the same latent (same seed), another label map gives another image
    synth.set_random_state(seed=0)
    other = synth({"image": x[0], "label": y[1]})
    assert not torch.allclose(torch.as_tensor(other["image"]), torch.as_tensor(out["image"]))
    # posterior variants of a conditional model keep the label too
    post = GVAESynthesized(keys=["image", "label"], model=model, prob=1.0, mode="posterior", sigma=0.5,
                           intensity_range=(0.0, 1.0))
    assert torch.equal(torch.as_tensor(post(item)["label"]), item["label"].as_tensor())
    # a filter that rejects everything leaves the item real
    rejecting = GVAESynthesized(keys=["image", "label"], model=model, prob=1.0, mode="conditional",
                                sample_filter=lambda images, labels: torch.zeros(len(images), dtype=torch.bool))
    kept = rejecting(item)
    assert kept["synthetic"] is False and torch.equal(kept["image"].as_tensor(), item["image"].as_tensor())
    assert rejecting.pool.acceptance_rate == 0.0
    with pytest.raises(ValueError, match="mode='conditional'"):
        GVAESynthesized(keys=["image", "label"], model=model, mode="prior")
    with pytest.raises(ValueError, match="label-conditioned"):
        GVAESynthesized(keys=["image", "label"], model=GVAE(in_channels=1, **TINY), mode="conditional")
    with pytest.raises(ValueError, match="pass the label"):
        GVAESynthesized(keys=["image"], model=model, prob=1.0, mode="conditional")({"image": x[0]})
    assert synthesize_for_labels(model, y, torch.Generator().manual_seed(0)).shape == (2, 1, SIZE, SIZE)


def test_segmenter_filter_rejects_planted_bad_pairs_and_keeps_good_ones():
    x, y = slices(12)
    torch.manual_seed(0)
    # a segmenter trained on the k = 8 "real labelled" items only
    unet = UNet(2, 1, CLASSES, channels=(8, 16), strides=(2,), num_res_units=0)
    opt = torch.optim.Adam(unet.parameters(), 1e-2)
    loss = DiceCELoss(to_onehot_y=True, softmax=True)
    for _ in range(60):
        opt.zero_grad()
        loss(unet(x[:8]), y[:8]).backward()
        opt.step()
    keep = SyntheticPairFilter(CLASSES, segmenter=unet, min_dice=0.7, segmenter_range=(0.0, 1.0))
    images = torch.cat([x, x]) * 2 - 1  # pairs arrive in the model range [-1, 1]
    labels = torch.cat([y, y.roll(1, 0)])  # second half: each image with another item's label (planted bad)
    kept = keep(images, labels)
    assert kept[:12].all(), keep.last_scores["dice"][:12]
    assert not kept[12:].any(), keep.last_scores["dice"][12:]
    assert keep.acceptance_rate == pytest.approx(0.5)
    assert torch.allclose(foreground_dice(y, y, CLASSES), torch.ones(12))


def test_min_reduction_rejects_a_pair_that_loses_one_class():
    x, y = slices(6)
    assert all((y[i] == c).any() for i in range(6) for c in (1, 2))
    lost = y.clone()
    lost[3:][lost[3:] == 2] = 0  # items 3-5: the segmenter finds class 1 but not class 2
    dice = class_dice(lost, y, CLASSES)
    assert dice.shape == (6, CLASSES - 1)
    assert torch.allclose(dice[:, 0], torch.ones(6)) and torch.equal(dice[3:, 1], torch.zeros(3))
    assert torch.allclose(foreground_dice(lost, y, CLASSES), torch.tensor([1.0] * 3 + [0.5] * 3))
    assert torch.equal(foreground_dice(lost, y, CLASSES, reduction="min"), torch.tensor([1.0] * 3 + [0.0] * 3))
    empty = torch.zeros_like(y[:1])  # no foreground in either map: NaN per class, 1 for the item either way
    assert class_dice(empty, empty, CLASSES).isnan().all()
    assert foreground_dice(empty, empty, CLASSES, "min").item() == 1.0

    def segmenter(images):  # class indices, as SyntheticPairFilter accepts them: the planted predictions
        return lost
    mean_keep = SyntheticPairFilter(CLASSES, segmenter=segmenter, min_dice=0.4)
    min_keep = SyntheticPairFilter(CLASSES, segmenter=segmenter, min_dice=0.4, reduction="min")
    assert mean_keep(x * 2 - 1, y).all()  # class 1 right hides class 2 lost
    assert torch.equal(min_keep(x * 2 - 1, y), torch.tensor([True] * 3 + [False] * 3))
    # a class the label holds fewer pixels of than min_class_pixels is not checked
    small = int((y[3:] == 2).flatten(1).sum(1).max()) + 1
    assert class_dice(lost, y, CLASSES, min_pixels=small)[3:, 1].isnan().all()
    lenient = SyntheticPairFilter(CLASSES, segmenter=segmenter, min_dice=0.4, reduction="min", min_class_pixels=small)
    assert lenient(x * 2 - 1, y).all()
    with pytest.raises(ValueError, match="reduction"):
        SyntheticPairFilter(CLASSES, segmenter=segmenter, min_dice=0.4, reduction="median")
    with pytest.raises(ValueError, match="reduction"):
        foreground_dice(y, y, CLASSES, reduction="max")
    with pytest.raises(ValueError, match="shapes differ"):
        class_dice(y[:, :, :4], y, CLASSES)


class AgreementCritic(torch.nn.Module):
    """A joint 'critic' scoring how well the image intensity matches its one-hot label (class c ~ c / 2)."""

    in_channels, condition_channels = 1 + CLASSES, 0

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, packed):
        image = (packed[:, :1] + 1) / 2
        index = packed[:, 1:].argmax(1, keepdim=True).float()
        return -self.scale * (image - index / (CLASSES - 1)).abs().flatten(1).mean(1, keepdim=True)


def test_critic_filter_threshold_from_real_pairs():
    x, y = slices(12)
    images = x * 2 - 1
    keep = SyntheticPairFilter(CLASSES, critic=AgreementCritic())
    with pytest.raises(ValueError, match="critic_threshold"):
        keep(images, y)
    threshold = keep.fit_critic_threshold(images[:8], y[:8], quantile=0.0)
    kept = keep(torch.cat([images, images]), torch.cat([y, y.roll(1, 0)]))
    assert threshold == pytest.approx(float(keep.critic_scores(images[:8], y[:8]).min()))
    assert kept[:8].all() and not kept[12:].any()
    assert keep.acceptance_rate < 0.75
    with pytest.raises(ValueError, match="critic, a segmenter"):
        SyntheticPairFilter(CLASSES)


def test_calibrate_posterior_sigma_picks_the_largest_sigma_above_the_threshold():
    torch.manual_seed(0)
    model = GVAE(in_channels=1 + CLASSES, image_channels=1, num_classes=CLASSES, **TINY).eval()
    x, y = slices(4)
    sigma, table = calibrate_posterior_sigma(model, x * 2 - 1, y, sigmas=(0.0, 1.0, 3.0), min_dice=0.0,
                                             draws=2, generator=torch.Generator().manual_seed(0))
    assert sigma == 3.0 and set(table) == {0.0, 1.0, 3.0} and all(0 <= d <= 1 for d in table.values())
    sigma, _ = calibrate_posterior_sigma(model, x * 2 - 1, y, sigmas=(0.0, 1.0), min_dice=1.01, draws=1)
    assert sigma == 0.0  # nothing reaches the threshold: the smallest candidate
    with pytest.raises(ValueError, match="label channels"):
        calibrate_posterior_sigma(conditional_model(), x, y)


class KnownSigmaGVAE(GVAE):
    """A joint GVAE whose generated label depends only on how far the latent is from the posterior mean, so the
    label Dice of each sigma is known: ``mu = 0`` in 4096 dimensions, where ``|z| / 64`` is sigma to within 3 %.

    Every item's label: class 1 in the top half, class 2 in the bottom-left quarter. Decoded: class 2 always, class 1
    whole below a distance of 0.75, its top half up to 1.5, gone beyond. Mean foreground Dice: 1 for sigma 0 and 0.5,
    (2/3 + 1) / 2 = 5/6 for sigma 1, (0 + 1) / 2 = 0.5 for sigma 2."""

    LATENT = 4096

    def __init__(self):
        super().__init__(in_channels=1 + CLASSES, image_channels=1, num_classes=CLASSES,
                         **{**TINY, "latent_size": self.LATENT, "max_channels": 4})

    @staticmethod
    def truth(n: int) -> torch.Tensor:
        label = torch.zeros(n, 1, SIZE, SIZE, dtype=torch.long)
        label[:, :, : SIZE // 2] = 1
        label[:, :, SIZE // 2 :, : SIZE // 2] = 2
        return label

    def encode(self, x, condition=None):
        zeros = x.new_zeros(x.shape[0], self.LATENT)
        return zeros, zeros

    def decode(self, z, condition=None):
        distance = z.norm(dim=1) / self.LATENT**0.5
        label = self.truth(z.shape[0])
        for i, d in enumerate(distance.tolist()):
            rows = SIZE // 2 if d < 0.75 else SIZE // 4 if d < 1.5 else 0  # rows of class 1 kept
            label[i, :, rows : SIZE // 2] = 0
        onehot = torch.nn.functional.one_hot(label[:, 0], CLASSES).movedim(-1, 1).float()
        return torch.cat([torch.zeros_like(onehot[:, :1]), onehot * 2 - 1], 1)


def test_calibrate_posterior_sigma_at_an_intermediate_threshold():
    """The largest sigma whose mean label Dice reaches min_dice, where some but not all candidates reach it."""
    model = KnownSigmaGVAE().eval()
    images, labels = torch.zeros(3, 1, SIZE, SIZE), KnownSigmaGVAE.truth(3)
    sigmas = (2.0, 0.0, 1.0, 0.5)  # any order
    expected_table = {0.0: 1.0, 0.5: 1.0, 1.0: 5 / 6, 2.0: 0.5}
    for min_dice, expected_sigma in ((0.8, 1.0), (0.9, 0.5), (0.5, 2.0), (1.0, 0.5)):
        sigma, table = calibrate_posterior_sigma(model, images, labels, sigmas=sigmas, min_dice=min_dice, draws=3,
                                                 generator=torch.Generator().manual_seed(0))
        assert table == pytest.approx(expected_table, rel=1e-6)
        assert sigma == expected_sigma, (min_dice, table)


def test_posterior_variants_of_labelled_and_unlabelled_images():
    torch.manual_seed(0)
    joint = GVAE(in_channels=1 + CLASSES, image_channels=1, num_classes=CLASSES, **TINY).eval()
    x, y = slices(3)
    images, labels = posterior_variants(joint, x * 2 - 1, None, sigma=0.0)  # unlabelled: generated labels
    assert images.shape == (3, 1, SIZE, SIZE) and labels.shape == (3, 1, SIZE, SIZE) and labels.max() < CLASSES
    assert images.min() >= -1 and images.max() <= 1
    rng = torch.Generator().manual_seed(0)
    a, _ = posterior_variants(joint, x * 2 - 1, y, sigma=1.0, generator=rng)
    assert not torch.allclose(a, posterior_variants(joint, x * 2 - 1, y, sigma=0.0)[0])
    cond = conditional_model()
    images, labels = posterior_variants(cond, x * 2 - 1, y, sigma=0.5)
    assert torch.equal(labels, y) and images.shape == (3, 1, SIZE, SIZE)
    with pytest.raises(ValueError, match="sigma"):
        posterior_variants(joint, x, None, sigma=-1.0)


def test_labelled_subset_and_pool():
    items = [{"image": i, "label": -i} for i in range(10)]
    a = labelled_subset(items, 3, seed=1)
    assert a == labelled_subset(items, 3, seed=1) and len(a) == 3 and a != labelled_subset(items, 3, seed=2)
    assert [d["image"] for d in a] == sorted(d["image"] for d in a)
    assert all("label" not in d for d in unlabelled_pool(items)) and len(unlabelled_pool(items)) == 10
    with pytest.raises(ValueError, match="k must be"):
        labelled_subset(items, 11)


def run_bundle(repo_root, *args):
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--meta_file",
           os.path.join(CONFIGS, "metadata.json"), "--bundle_root", os.path.join("bundles", "gvae_brain2d"), *args]
    return subprocess.run(cmd, cwd=repo_root, env=subprocess_env(), capture_output=True, text=True, timeout=600)


def test_pretrain_then_adapt_through_the_bundle(repo_root, tmp_path):
    from monai.bundle import ConfigWorkflow

    from monai_gvae.bundle import load_pretrained

    tiny = {"base_channels": 4, "latent_size": 8, "max_epochs": 1}
    # pre-training on the image pool, as the docs run it
    pre = run_bundle(repo_root, "--config_file", str([os.path.join(CONFIGS, "train.yaml"),
                                                     os.path.join(CONFIGS, "pretrain.yaml")]),
                     "--output_dir", str(tmp_path / "pre"), *[str(a) for kv in tiny.items() for a in ("--" + kv[0], kv[1])])
    assert pre.returncode == 0, pre.stderr[-3000:]
    pretrained = load_gvae(tmp_path / "pre" / "model.pt")
    assert pretrained.config["in_channels"] == 1 and pretrained.label_channels == 0
    # adaptation to label-conditioned synthesis on k = 5 labelled slices (in-process: one interpreter start less)
    workflow = ConfigWorkflow(
        config_file=[os.path.join(repo_root, CONFIGS, "train.yaml"), os.path.join(repo_root, CONFIGS, "adapt.yaml")],
        meta_file=os.path.join(repo_root, CONFIGS, "metadata.json"), logging_file=False, workflow_type="train",
        bundle_root=os.path.join(repo_root, "bundles", "gvae_brain2d"), output_dir=str(tmp_path / "adapted"),
        pretrained=str(tmp_path / "pre" / "model.pt"), conditional=True, num_labelled=5, **tiny,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    adapted = load_gvae(tmp_path / "adapted" / "model.pt")
    assert adapted.condition_channels == 4 and adapted.num_classes == 4 and adapted.image_channels == 1
    assert workflow.parser.get_parsed_content("train#trainer").state.iteration == 1
    # one Adam step (lr 1e-3) from the pre-trained weights: the image channel's weights are the pre-trained ones
    # to within a few steps' size, and the grown condition channels started at zero
    name = "encoder.trunk.body.0.conv.weight"
    grown, source = adapted.state_dict()[name], pretrained.state_dict()[name]
    assert (grown[:, :1] - source).abs().max() < 3e-3 and grown[:, 1:].abs().max() < 3e-3
    assert (source.abs().max()) > 0.05
    assert (tmp_path / "adapted" / "samples.png").is_file()
    # the adapted model synthesises images for label maps through the transform
    label = torch.zeros(1, 64, 64, dtype=torch.int64)
    label[0, 20:40, 20:40] = 1
    out = GVAESynthesized(keys=["image", "label"], model=tmp_path / "adapted" / "model.pt", prob=1.0,
                          mode="conditional", intensity_range=(0.0, 1.0))({"image": torch.zeros(1, 64, 64),
                                                                             "label": label})
    assert torch.equal(torch.as_tensor(out["label"]), label) and out["synthetic"] is True
    # adapting into the folder of the pretrained checkpoint would overwrite it: refused
    with pytest.raises(ValueError, match="choose another --output_dir"):
        load_pretrained(tmp_path / "pre" / "model.pt", tmp_path / "pre", {"gvae": adapted})
    with pytest.raises(FileNotFoundError, match="pretrained checkpoint not found"):
        load_pretrained(tmp_path / "nowhere.pt", tmp_path / "x", {"gvae": adapted})


def test_label_map_interpolation_moves_shapes_between_the_two_maps():
    """Shape-based interpolation: the ends are the two maps; between, a disc grows steadily from one radius to the
    other and a class present at one end only shrinks away; pairs are chosen by label similarity."""
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    r = ((yy - 16) ** 2 + (xx - 16) ** 2).sqrt()
    a = (r < 5).long()[None]  # class 1: a disc of radius 5
    b = (r < 11).long()[None]  # radius 11, and class 2 at a corner
    b[0, :4, :4] = 2
    assert torch.equal(interpolate_label_maps(a, b, 0.0, 3), a) and torch.equal(interpolate_label_maps(a, b, 1.0, 3), b)
    areas = [int((interpolate_label_maps(a, b, w, 3) == 1).sum()) for w in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert areas == sorted(areas) and len(set(areas)) == 5
    assert abs(areas[2] - np.pi * 8**2) < 0.1 * np.pi * 8**2  # halfway: radius 8
    corner = [int((interpolate_label_maps(a, b, w, 3) == 2).sum()) for w in (0.25, 0.75, 1.0)]
    assert corner[0] <= corner[1] <= corner[2] == 16
    sdf = signed_distance_maps(a, 3)
    assert sdf.shape == (3, 32, 32) and sdf[1, 16, 16] < 0 < sdf[1, 0, 0] and (sdf[2] > 40).all()  # class 2 absent
    with pytest.raises(ValueError, match="weight"):
        interpolate_label_maps(a, b, 1.5, 3)
    with pytest.raises(ValueError, match="shape"):
        interpolate_label_maps(a, b[:, :16], 0.5, 3)
    with pytest.raises(ValueError, match="outside"):
        interpolate_label_maps(a, b, 0.5, 2)
    labels = torch.stack([a, b, (r < 6).long()[None], (r < 12).long()[None]])
    assert nearest_label_maps(labels, 3)[:, 0].tolist() == [2, 3, 0, 1]
    with pytest.raises(ValueError, match="two"):
        nearest_label_maps(labels[:1], 3)
