"""The few-label levers: segmentation consistency and gradient matching in GVAETrainer, SPADE conditioning, the
patch critic."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from monai_gvae.engines import GVAETrainer
from monai_gvae.losses import SegmentationConsistencyLoss, SegmentationGradientMatchingLoss
from monai_gvae.networks import GVAE, GVAECritic
from monai_gvae.networks.blocks import SPADE


def _one_hot(labels: torch.Tensor, classes: int = 3) -> torch.Tensor:
    return nn.functional.one_hot(labels, classes).movedim(-1, 1).float() * 2 - 1


def _conditional_pair(dims: int = 2, size: int = 16, mode: str = "concat", head: str = "linear"):
    torch.manual_seed(0)
    gvae = GVAE(dims, 1, size, latent_size=4, architecture="conv", base_channels=4, max_channels=8, num_classes=3,
                condition_channels=3, condition_mode=mode, upsample="nearest")
    critic = GVAECritic(dims, 1, size, architecture="conv", base_channels=4, max_channels=8, condition_channels=3,
                        head=head)
    return gvae, critic


def _batches(n: int = 2, size: int = 16):
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 3, (4, size, size), generator=g)
    image = torch.rand(4, 1, size, size, generator=g) * 2 - 1
    return [{"image": torch.cat([image, _one_hot(labels)], 1)}] * n


def _trainer(gvae, critic, segmenter=None, seg_weight=0.0, **kwargs):
    return GVAETrainer(
        device="cpu", max_epochs=1, train_data_loader=_batches(1), network=gvae, critic=critic,
        optimizer=torch.optim.SGD(gvae.parameters(), 0.1), critic_optimizer=torch.optim.SGD(critic.parameters(), 0.1),
        seed=0, segmenter=segmenter, seg_weight=seg_weight, **kwargs,
    )


def test_segmentation_consistency_changes_the_generator_step_only():
    gvae, critic = _conditional_pair()
    segmenter = nn.Conv2d(1, 3, 3, padding=1)
    seg_before = copy.deepcopy(segmenter.state_dict())
    runs = {}
    for name, (seg, weight) in {"plain": (None, 0.0), "seg": (segmenter, 1.0)}.items():
        g, c = copy.deepcopy(gvae), copy.deepcopy(critic)
        trainer = _trainer(g, c, seg, weight)
        trainer.run()
        runs[name] = (g, c, trainer.state.output)
    (g0, c0, out0), (g1, c1, out1) = runs["plain"], runs["seg"]
    # the critic step (first in the iteration) is untouched: same critic weights after the iteration
    for p0, p1 in zip(c0.parameters(), c1.parameters()):
        assert torch.equal(p0, p1)
    assert out0["loss_d"] == out1["loss_d"] and out0["gp"] == out1["gp"]
    # the generator's update differs, and the segmentation term is reported
    assert any(not torch.equal(p0, p1) for p0, p1 in zip(g0.generator.parameters(), g1.generator.parameters()))
    assert out0["loss_seg"] == 0.0 and out1["loss_seg"] > 0.0
    # the segmenter is frozen: never trained, no gradients
    for key, value in segmenter.state_dict().items():
        assert torch.equal(value, seg_before[key])
    assert all(p.grad is None for p in segmenter.parameters())


def test_segmentation_consistency_gradient_reaches_the_images_only():
    segmenter = nn.Conv2d(1, 3, 1)
    loss = SegmentationConsistencyLoss(segmenter, weight=2.0)
    images = (torch.rand(2, 1, 8, 8) * 2 - 1).requires_grad_(True)
    condition = _one_hot(torch.randint(0, 3, (2, 8, 8)), 3)
    value = loss(images, condition)
    value.backward()
    assert value > 0 and images.grad is not None and images.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in segmenter.parameters())
    # the weight scales the term; the input range maps [-1, 1] images to the segmenter's range
    half = SegmentationConsistencyLoss(segmenter, weight=1.0)(images.detach(), condition)
    assert float(value.detach()) == pytest.approx(2 * float(half), rel=1e-6)
    with pytest.raises(ValueError, match="same batch"):
        loss(images[:1], condition)


def test_segmentation_consistency_errors():
    gvae, critic = _conditional_pair()
    with pytest.raises(ValueError, match="needs a segmenter"):
        _trainer(gvae, critic, None, 0.5)
    with pytest.raises(ValueError, match="seg_weight must be > 0"):
        _trainer(gvae, critic, nn.Conv2d(1, 3, 1), 0.0)
    plain = GVAE(2, 1, 16, latent_size=4, architecture="conv", base_channels=4, max_channels=8)
    plain_critic = GVAECritic(2, 1, 16, architecture="conv", base_channels=4, max_channels=8)
    with pytest.raises(ValueError, match="label-conditioned generator"):
        _trainer(plain, plain_critic, nn.Conv2d(1, 3, 1), 0.5)
    with pytest.raises(ValueError, match="weight"):
        SegmentationConsistencyLoss(nn.Conv2d(1, 3, 1), weight=-1)


def test_gradient_matching_is_zero_for_the_real_pairs_and_trains_a_copy():
    torch.manual_seed(0)
    segmenter = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1))
    before = copy.deepcopy(segmenter.state_dict())
    loss = SegmentationGradientMatchingLoss(segmenter, weight=2.0, segmenter_lr=1e-2)
    reals = torch.rand(4, 1, 8, 8) * 2 - 1
    condition = _one_hot(torch.randint(0, 3, (4, 8, 8)), 3)
    # generated images equal to the real ones teach the segmenter the same thing: distance 0
    assert float(loss(reals.clone(), condition, reals, condition).detach()) == pytest.approx(0.0, abs=1e-5)
    fakes = (torch.rand(4, 1, 8, 8) * 2 - 1).requires_grad_(True)
    value = loss(fakes, condition, reals, condition)
    assert 0 < float(value.detach()) <= 4.0  # weight * (1 - cos) in [0, 2 * weight]
    value.backward()
    assert fakes.grad is not None and fakes.grad.abs().sum() > 0  # a double backward reaches the images
    copy_before = copy.deepcopy(loss.segmenter.state_dict())
    loss.segmenter_step()  # the copy keeps training on the last call's pairs ...
    assert any(not torch.equal(v, loss.segmenter.state_dict()[k]) for k, v in copy_before.items())
    for key, value in segmenter.state_dict().items():  # ... the network given is never modified
        assert torch.equal(value, before[key])
    fixed = SegmentationGradientMatchingLoss(segmenter, segmenter_lr=0.0)
    fixed(fakes.detach(), condition, reals, condition)
    fixed.segmenter_step()
    assert all(torch.equal(v, before[k]) for k, v in fixed.segmenter.state_dict().items())
    with pytest.raises(ValueError, match="same batch"):
        loss(fakes[:2], condition, reals, condition)
    with pytest.raises(ValueError, match="must be >= 0"):
        SegmentationGradientMatchingLoss(segmenter, segmenter_lr=-1.0)


def test_gradient_matching_in_the_trainer_changes_the_generator_step_only():
    gvae, critic = _conditional_pair()
    torch.manual_seed(0)
    segmenter = nn.Conv2d(1, 3, 3, padding=1)
    seg_before = copy.deepcopy(segmenter.state_dict())
    runs = {}
    for objective in ("consistency", "gradient_matching"):
        g, c = copy.deepcopy(gvae), copy.deepcopy(critic)
        trainer = _trainer(g, c, segmenter, 1.0, seg_objective=objective)
        trainer.run()
        runs[objective] = (g, c, trainer.state.output)
    (g0, c0, out0), (g1, c1, out1) = runs["consistency"], runs["gradient_matching"]
    assert all(torch.equal(p0, p1) for p0, p1 in zip(c0.parameters(), c1.parameters()))  # critic step untouched
    assert any(not torch.equal(p0, p1) for p0, p1 in zip(g0.generator.parameters(), g1.generator.parameters()))
    assert 0.0 < out1["loss_seg"] <= 2.0
    assert all(torch.equal(v, seg_before[k]) for k, v in segmenter.state_dict().items())
    with pytest.raises(ValueError, match="seg_objective must be one of"):
        _trainer(gvae, critic, segmenter, 1.0, seg_objective="bilevel")


@pytest.mark.parametrize("dims", [2, 3])
def test_spade_block_shapes_and_zero_start(dims):
    spade = SPADE(dims, channels=6, condition_channels=3)
    h = torch.randn(2, 6, *(8,) * dims)
    condition = _one_hot(torch.randint(0, 3, (2, *(16,) * dims)), 3)  # resized to h's grid by area averaging
    out = spade(h, condition)
    assert out.shape == h.shape
    # gamma and beta start at zero: the block is the plain (parameter-free) normalisation
    assert torch.allclose(out, spade.norm(h), atol=1e-6)
    nn.init.normal_(spade.gamma.weight)
    other = _one_hot(torch.zeros(2, *(16,) * dims, dtype=torch.long), 3)
    assert not torch.allclose(spade(h, condition), spade(h, other))
    with pytest.raises(ValueError, match="norm"):
        SPADE(dims, 6, 3, norm="layer")


@pytest.mark.parametrize("dims,arch", [(2, "conv"), (2, "resnet"), (3, "conv"), (3, "resnet")])
def test_spade_generator_and_patch_critic_shapes(dims, arch):
    size = 16
    gvae = GVAE(dims, 1, size, latent_size=4, architecture=arch, base_channels=4, max_channels=8, num_classes=3,
                condition_channels=3, condition_mode="spade", upsample="nearest")
    condition = _one_hot(torch.randint(0, 3, (2, *(size,) * dims)), 3)
    images = gvae.sample(2, generator=torch.Generator().manual_seed(0), condition=condition)
    assert images.shape == (2, 1, *(size,) * dims) and images.abs().max() <= 1
    assert gvae.config["condition_mode"] == "spade"
    rebuilt = GVAE.from_state_dict(gvae.state_dict())  # the configuration travels with the weights
    assert rebuilt.config == gvae.config
    critic = GVAECritic(dims, 1, size, architecture=arch, base_channels=4, max_channels=8, condition_channels=3,
                        head="patch")
    patches = critic.patch_scores(images, condition)
    cells = (size // 16) if arch == "conv" else 4
    assert patches.shape == (2, 1, *(cells,) * dims)
    assert torch.allclose(critic(images, condition), patches.flatten(1).mean(1, keepdim=True))
    with pytest.raises(ValueError, match="head='patch'"):
        GVAECritic(dims, 1, size, architecture=arch, base_channels=4, max_channels=8).patch_scores(images)
    with pytest.raises(ValueError, match="head"):
        GVAECritic(dims, 1, size, architecture=arch, head="global")


def test_spade_needs_a_conditional_generator_and_trains():
    with pytest.raises(ValueError, match="condition_channels > 0"):
        GVAE(2, 1, 16, latent_size=4, architecture="conv", base_channels=4, condition_mode="spade")
    with pytest.raises(ValueError, match="condition_mode"):
        GVAE(2, 1, 16, latent_size=4, architecture="conv", base_channels=4, condition_mode="film")
    gvae, critic = _conditional_pair(mode="spade", head="patch")
    before = copy.deepcopy(gvae.state_dict())
    trainer = _trainer(gvae, critic)
    trainer.run()
    assert trainer.state.output["gp"] > 0  # the gradient penalty runs through the patch critic
    changed = [k for k, v in gvae.state_dict().items() if "spade" in k and not torch.equal(v, before[k])]
    assert changed  # SPADE's label-map convolutions are trained
