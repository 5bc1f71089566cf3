"""monai_gvae.benchmarks.segmentation: subset draw, segmenter training with mixing, Dice, the benchmark's tables."""

import argparse

import pytest
import torch
from monai.networks.utils import one_hot

from monai_gvae.benchmarks.segmentation import (
    ARM_NAMES,
    SegmentationSettings,
    INTENSITY_RANDOMISATIONS,
    POLY_LR_POWER,
    classical_transform,
    dice_scores,
    intensity_randomisation,
    labelled_items,
    segmentation_report,
    train_arm_segmenter,
    train_segmenter,
    write_segmentation_outputs,
)
from monai_gvae.data import labelled_subset
from monai_gvae.networks import GVAE
from monai_gvae.transforms import GVAESamplePool


def separable_items(n, seed, size=32):
    """A bright square (class 1) and a brighter small square (class 2) on a dark background: intensity alone
    separates the classes."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        label = torch.zeros(1, size, size, dtype=torch.long)
        r, c = torch.randint(4, 16, (2,), generator=g)
        label[0, r : r + 10, c : c + 10] = 1
        r, c = torch.randint(18, 26, (2,), generator=g)
        label[0, r : r + 6, c : c + 6] = 2
        out.append({"image": label.float() / 2 + 0.05 * torch.randn(1, size, size, generator=g), "label": label})
    return out


def test_labelled_items_is_seeded_bounded_and_the_data_packages_draw():
    train = [{"i": i} for i in range(46)]
    a, b = labelled_items(train, "5", 1), labelled_items(train, "5", 1)
    assert a == b and len(a) == 5 and labelled_items(train, "5", 2) != a
    assert len(labelled_items(train, "all", 0)) == 46
    for seed in (0, 1, 2):  # the same k slices as a bundle run with labelled_subset
        assert labelled_items(train, 5, seed) == labelled_subset(train, 5, seed)
    with pytest.raises(ValueError, match="outside"):
        labelled_items(train, "47", 0)
    with pytest.raises(ValueError, match="outside"):
        labelled_items(train, 0, 0)


def test_classical_transform_moves_image_and_label_together():
    item = separable_items(1, 0)[0]
    t = classical_transform()
    t.set_random_state(3)
    out = t(dict(item))
    label = torch.as_tensor(out["label"])
    assert label.shape == (1, 32, 32) and set(label.unique().tolist()) <= {0, 1, 2}  # nearest: no new classes
    image = torch.as_tensor(out["image"])
    # where the label says class 2, the image is bright (they were warped together)
    assert image[label == 2].mean() > 0.8 and image[label == 0].mean() < 0.2


def test_dice_scores_of_a_perfect_and_a_wrong_segmenter():
    test = separable_items(4, 1)

    def oracle(images):
        labels = torch.stack([i["label"] for i in test])
        return one_hot(labels, 3).float()

    scores = dice_scores(oracle, test, num_classes=3, class_names=("square", "small"))
    assert scores == {"dice": 1.0, "dice_square": 1.0, "dice_small": 1.0}
    background = dice_scores(lambda x: one_hot(torch.zeros_like(x, dtype=torch.long), 3).float(), test, 3, ("a", "b"))
    assert background["dice"] == 0.0


def test_segmenter_learns_a_trivially_separable_fixture():
    kwargs = dict(iterations=80, batch_size=8, seed=0, classical=False, channels=(8, 16), lr=1e-2, num_classes=3)
    net, seconds = train_segmenter(separable_items(8, 0), **kwargs)
    assert seconds > 0 and not net.training
    scores = dice_scores(net, separable_items(6, 1), num_classes=3, class_names=("square", "small"))
    assert scores["dice"] > 0.9 and min(scores["dice_square"], scores["dice_small"]) > 0.85
    # same seed, same data: the same network
    again, _ = train_segmenter(separable_items(8, 0), **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    # synthetic pairs mixed in (here: more of the same kind), with a seeded shuffle
    mixed, _ = train_segmenter(separable_items(8, 0), synthetic=separable_items(8, 5), synthetic_fraction=0.5,
                               shuffle_seed=0, **kwargs)
    assert dice_scores(mixed, separable_items(6, 1), 3, ("a", "b"))["dice"] > 0.85


def test_settings_from_the_command_line():
    ns = argparse.Namespace(seg_channels="4,8,16", seg_iterations=3, batch_size=4, quick=True, ks="5")
    s = SegmentationSettings.from_namespace(ns)
    assert s.seg_channels == (4, 8, 16) and s.seg_iterations == 3 and s.gvae_iterations == 400
    assert SegmentationSettings.from_namespace({"seg_channels": "8,16"}).seg_channels == (8, 16)
    with pytest.raises(ValueError, match="comma-separated integers"):
        SegmentationSettings.from_namespace({"seg_channels": "8,x"})
    with pytest.raises(ValueError, match="unknown arm"):
        train_arm_segmenter([], "mixup", None, s, 0)
    with pytest.raises(ValueError, match="needs a GVAESamplePool"):
        train_arm_segmenter([], "gvae", None, s, 0)


def known_results():
    runs = []
    for seed, (no_aug, classical) in enumerate([(0.60, 0.70), (0.62, 0.66), (0.64, 0.68)]):
        for arm, dice in (("no_aug", no_aug), ("classical", classical)):
            runs.append({"k": "5", "seed": seed, "arm": arm, "dice": dice, "dice_cortex": dice,
                         "dice_deep_grey_matter": dice - 0.1, "dice_cerebellum": dice + 0.1})
    settings = {"ks": "5", "seeds": "0,1,2", "arms": "no_aug,classical", "latent_size": 8, "base_channels": 4,
                "gvae_iterations": 3, "batch_size": 4, "seg_channels": "4,8,16", "seg_lr": 0.001,
                "seg_iterations": 3, "workers": 0, "synthetic_fraction": 0.5}
    return {"runs": runs, "n_train": 46, "n_test": 15, "gvae_seconds_mean": 0.0, "seg_seconds_mean": 2.0,
            "wall_seconds": 90.0, "hardware": "test", "settings": settings, "command": "python x.py --quick"}


def test_report_renders_known_numbers(tmp_path):
    lines = segmentation_report(known_results())
    text = "\n".join(lines)
    assert "Command: `python x.py --quick`" in text and "mean ± standard deviation over 3 seed(s) (0, 1, 2)" in text
    assert "total wall time 1.5 min" in text
    i = lines.index("| arm | k = 5 |")
    assert lines[i + 1 : i + 4] == ["|---|---|", "| no augmentation | 0.620 ± 0.020 |",
                                    "| classical (flip + affine) | 0.680 ± 0.020 |"]
    # paired differences -0.10, -0.04, -0.04: mean -0.060, std 0.035, a loss outside the spread (no verdict text)
    assert "| arm − classical | k = 5 |" in lines and "| no augmentation | -0.060 ± 0.035 |" in lines
    assert "| classical (flip + affine) | 0.68 / 0.58 / 0.78 |" in lines
    one_seed = known_results()
    one_seed["runs"] = [r for r in one_seed["runs"] if r["seed"] == 0]
    assert "| no augmentation | -0.100 ± 0.000 (1 seed: no spread) |" in segmentation_report(one_seed)
    text = write_segmentation_outputs(known_results(), tmp_path, overwrite=False)
    assert (tmp_path / "results.md").read_text() == text and (tmp_path / "dice.png").is_file()
    assert (tmp_path / "results.json").is_file() and set(ARM_NAMES) >= {"no_aug", "classical"}
    with pytest.raises(FileExistsError):
        write_segmentation_outputs(known_results(), tmp_path, overwrite=False)


def blurred_head(size=32):
    """A smooth disc with a brighter smooth core: a render-like image, and its two-class map."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2).float().sqrt()
    image = (0.4 * torch.sigmoid((10 - r) / 2) + 0.3 * torch.sigmoid((5 - r) / 2))[None]
    label = ((r < 10).long() + (r < 5).long())[None]
    return {"image": image, "label": label}


def gradient_energy(image):
    """Mean squared finite difference: rises as edges steepen (the mean absolute difference of a monotone edge is
    its height whatever its width, so it cannot tell sharpening)."""
    return float(((image[..., 1:, :-1] - image[..., :-1, :-1]) ** 2).mean() + ((image[..., :-1, 1:] -
                 image[..., :-1, :-1]) ** 2).mean())


def test_intensity_randomisation_changes_the_image_only_and_sharpen_sharpens():
    assert intensity_randomisation("none") is None
    with pytest.raises(ValueError, match="intensity randomisation must be one of"):
        intensity_randomisation("blur")
    item = blurred_head()
    for name in INTENSITY_RANDOMISATIONS[1:]:
        transform = intensity_randomisation(name)
        transform.set_random_state(seed=0)
        outs = [transform(dict(item)) for _ in range(10)]
        assert all(torch.equal(torch.as_tensor(o["label"]), item["label"]) for o in outs), name
        images = [torch.as_tensor(o["image"]) for o in outs]
        assert all(0 <= float(i.min()) and float(i.max()) <= 1 for i in images), name
        # probability 0.8 per change: most of ten draws differ from the input
        assert sum(not torch.allclose(i, item["image"]) for i in images) >= 5, name
    sharpen = intensity_randomisation("sharpen")
    sharpen.set_random_state(seed=0)
    sharpened = [gradient_energy(torch.as_tensor(sharpen(dict(item))["image"])) for _ in range(10)]
    assert sum(sharpened) / 10 > 1.03 * gradient_energy(item["image"])


def test_item_and_synthetic_transforms_reach_the_items_they_name():
    calls = {"item": 0, "synthetic": 0}

    def counting(kind):
        def transform(item):
            calls[kind] += 1
            return item
        return transform

    kwargs = dict(iterations=4, batch_size=4, seed=0, classical=False, channels=(4, 8), num_classes=3)
    train_segmenter(separable_items(4, 0), synthetic=separable_items(4, 1), synthetic_fraction=0.25,
                    item_transform=counting("item"), synthetic_transform=counting("synthetic"), **kwargs)
    assert calls == {"item": 16, "synthetic": 4}  # 4 iterations of 4 items, a quarter of them synthetic
    with pytest.raises(ValueError, match="pre-generated synthetic pairs"):
        # a joint GVAE's sample pool synthesises on the fly: there are no pre-generated pairs to transform
        joint = GVAE(2, 4, 32, latent_size=4, architecture="conv", base_channels=4, max_channels=8, image_channels=1,
                     num_classes=3).eval()
        train_segmenter(separable_items(4, 0), synthetic=GVAESamplePool(joint, pool_size=4), synthetic_fraction=0.25,
                        synthetic_transform=counting("synthetic"), **kwargs)


@pytest.mark.parametrize("finetune_iterations", [0, 2])
def test_poly_lr_schedule_decays_to_zero_over_every_iteration(monkeypatch, finetune_iterations):
    seen = []  # the learning rate each optimiser step used, in order

    class RecordingAdam(torch.optim.Adam):
        def step(self, closure=None):
            seen.append(self.param_groups[0]["lr"])
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "Adam", RecordingAdam)
    kwargs = dict(iterations=6, batch_size=2, seed=0, classical=False, channels=(4, 8), num_classes=3, lr=1e-2,
                  synthetic=separable_items(2, 1), synthetic_fraction=0.5, finetune_iterations=finetune_iterations)
    constant_net, _ = train_segmenter(separable_items(4, 0), **kwargs)
    assert seen == [1e-2] * 6
    seen.clear()
    poly_net, _ = train_segmenter(separable_items(4, 0), lr_schedule="poly", **kwargs)
    # one decay over both phases: lr (1 - t/6)^0.9 at iteration t = 0..5, never reset by the fine-tuning phase
    assert seen == pytest.approx([1e-2 * (1 - t / 6) ** POLY_LR_POWER for t in range(6)])
    assert any(not torch.equal(a, b) for a, b in zip(constant_net.parameters(), poly_net.parameters()))
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        train_segmenter(separable_items(4, 0), lr_schedule="cosine", **kwargs)
