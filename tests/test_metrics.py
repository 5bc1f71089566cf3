"""Correctness of monai_gvae.metrics: MMD, MS-SSIM diversity, KL, ELBO, importance-weighted bound, Frechet,
sharpness, memorisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.metrics import MMDMetric

from monai_gvae.metrics import (
    ELBOMetric,
    FrechetDistanceMetric,
    GaussianMMDMetric,
    GVAELikelihood,
    ImportanceWeightedBoundMetric,
    LinearMMDMetric,
    MSSSIMDiversityMetric,
    SharpnessRatioMetric,
    classifier_accuracy,
    elbo,
    fit_pixel_scale,
    frechet_distance,
    gaussian_mmd,
    importance_weighted_bound,
    kl_to_prior,
    linear_mmd,
    mean_gradient_magnitude,
    median_heuristic,
    memorization_report,
    ms_ssim,
    ms_ssim_pairs,
    ms_ssim_settings,
    pixel_log_likelihood,
    sharpness_ratio,
    train_feature_classifier,
)
from monai_gvae.networks import GVAE


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- MMD
def test_gaussian_mmd_self_is_zero_and_grows_with_mean_shift():
    x = torch.randn(300, 1, 6, 6, generator=_gen(0))
    y = torch.randn(300, 1, 6, 6, generator=_gen(1))
    bw = median_heuristic(x)
    assert len(bw) == 3 and bw[0] < bw[1] < bw[2]
    # the unbiased estimate on two samples of one distribution is about 0 (and may be slightly negative)
    same = float(gaussian_mmd(x, y, bw))
    assert abs(same) < 2e-3
    values = [float(gaussian_mmd(x, y + shift, bw)) for shift in (0.25, 0.5, 1.0, 2.0)]
    assert values[0] > 5 * abs(same)
    assert all(a < b for a, b in zip(values, values[1:])), values
    per_bw = gaussian_mmd(x, y + 1.0, bw, reduction="none")
    assert per_bw.shape == (3,) and torch.isclose(per_bw.mean(), gaussian_mmd(x, y + 1.0, bw))


def test_gaussian_mmd_matches_explicit_u_statistic():
    x = torch.randn(7, 3, generator=_gen(2), dtype=torch.float64)
    y = torch.randn(5, 3, generator=_gen(3), dtype=torch.float64) + 0.5
    sigma = 1.3

    def k(a, b):
        return math.exp(-float((a - b).pow(2).sum()) / (2 * sigma**2))

    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    xy = sum(k(x[i], y[j]) for i in range(7) for j in range(5)) / 35
    assert float(gaussian_mmd(x, y, [sigma])) == pytest.approx(xx + yy - 2 * xy, rel=1e-9)


def test_mmd_metrics_accumulate_and_linear_matches_monai():
    x = torch.rand(40, 1, 8, 8, generator=_gen(4))
    y = torch.rand(40, 1, 8, 8, generator=_gen(5)) + 0.2
    metric = GaussianMMDMetric(bandwidths=(2.0, 4.0))
    metric(x[:20], y[:20])
    metric(list(x[20:]), list(y[20:]))  # decollated batches are stacked
    expected = (gaussian_mmd(x[:20], y[:20], (2.0, 4.0)) + gaussian_mmd(x[20:], y[20:], (2.0, 4.0))) / 2
    assert float(metric.aggregate()) == pytest.approx(float(expected))
    lin = LinearMMDMetric()
    lin(x, y)
    assert float(lin.aggregate()) == pytest.approx(float(MMDMetric()(y, x)), rel=1e-5)
    assert float(linear_mmd(x, y)) > float(linear_mmd(x[:20], x[20:]))
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_mmd(x[:1], y[:1])
    with pytest.raises(ValueError, match="positive"):
        gaussian_mmd(x, y, [0.0])


# ---------------------------------------------------------------- MS-SSIM
def test_ms_ssim_settings_fit_small_2d_and_3d():
    assert ms_ssim_settings((28, 28))["kernel_size"] == 7 and len(ms_ssim_settings((28, 28))["weights"]) == 3
    assert len(ms_ssim_settings((32, 32, 32))["weights"]) == 3
    assert len(ms_ssim_settings((256, 256))["weights"]) == 5 and ms_ssim_settings((256, 256))["kernel_size"] == 11
    for shape in ((28, 28), (64, 64), (16, 16)):
        assert sum(ms_ssim_settings(shape)["weights"]) == pytest.approx(1.0)


@pytest.mark.parametrize("shape", [(6, 1, 28, 28), (4, 2, 32, 32), (4, 1, 32, 32, 32)])
def test_ms_ssim_identical_is_one_and_noise_is_low(shape):
    a = torch.rand(shape, generator=_gen(6))
    assert torch.allclose(ms_ssim(a, a.clone()), torch.ones(shape[0]), atol=1e-5)
    noise = torch.rand((shape[0] * 2,) + shape[1:], generator=_gen(7))
    assert float(ms_ssim_pairs(noise).mean()) < 0.2
    # smooth structured images that differ only slightly are near 1
    base = torch.linspace(0, 1, shape[-1]).expand(shape).contiguous()
    assert float(ms_ssim(base, (base + 0.02 * torch.rand(shape, generator=_gen(8))).clamp(0, 1)).mean()) > 0.8


def test_ms_ssim_data_range_is_checked_and_used():
    a = torch.rand(4, 1, 28, 28, generator=_gen(9))
    with pytest.raises(ValueError, match="value_range"):
        ms_ssim(a * 2 - 1, a * 2 - 1)  # [-1, 1] images scored as [0, 1]
    # the same images in [-1, 1] with the right range give the same value as in [0, 1]
    b = torch.rand(4, 1, 28, 28, generator=_gen(10))
    same = ms_ssim(a * 2 - 1, b * 2 - 1, value_range=(-1, 1))
    assert torch.allclose(same, ms_ssim(a, b), atol=1e-5)
    metric = MSSSIMDiversityMetric(value_range=(-1, 1))
    metric(a * 2 - 1)
    metric(b * 2 - 1)
    assert metric.get_buffer().shape == (4, 1)


# ---------------------------------------------------------------- KL, likelihoods, bounds
def test_kl_matches_torch_distributions():
    mu = torch.randn(5, 4, generator=_gen(11))
    logvar = torch.randn(5, 4, generator=_gen(12))
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros(4), torch.ones(4))
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    assert torch.allclose(kl_to_prior(mu, logvar), expected, atol=1e-5)
    assert torch.allclose(kl_to_prior(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))


@pytest.mark.parametrize("likelihood", ["discretized_logistic", "discretized_gaussian"])
def test_discretised_likelihood_normalises_and_fits_scale(likelihood):
    bins = (torch.arange(256) / 255.0).view(256, 1, 1, 1)
    for mean in (0.0, 0.37, 1.0):
        for scale in (0.002, 0.05, 0.5):
            p = pixel_log_likelihood(bins, torch.full_like(bins, mean), likelihood, scale).exp()
            assert float(p.sum()) == pytest.approx(1.0, abs=1e-4)
    x = torch.randint(0, 256, (64, 1, 8, 8), generator=_gen(13)) / 255.0
    noisy = (x + 0.03 * torch.randn(x.shape, generator=_gen(14))).clamp(0, 1)
    s = fit_pixel_scale(x, noisy, likelihood)
    ll = lambda v: float(pixel_log_likelihood(x, noisy, likelihood, v).mean())  # noqa: E731
    assert ll(s) >= max(ll(s * 1.3), ll(s / 1.3))
    target = 0.03 * (math.sqrt(3) / math.pi if likelihood == "discretized_logistic" else 1.0)
    assert 0.5 * target < s < 2.0 * target


def test_bernoulli_needs_binary_data():
    x = (torch.rand(2, 1, 4, 4, generator=_gen(15)) > 0.5).float()
    ll = pixel_log_likelihood(x, torch.full_like(x, 0.5), "bernoulli")
    assert torch.allclose(ll, torch.full((2,), 16 * math.log(0.5)))
    with pytest.raises(ValueError, match="binarised"):
        pixel_log_likelihood(x * 0.5, x, "bernoulli")
    with pytest.raises(ValueError, match="scale"):
        pixel_log_likelihood(x, x, "discretized_logistic")


class _PPCA:
    """Probabilistic PCA ``z ~ N(0, I), x | z ~ N(W z + b, s^2 I)``: ``log p(x)`` is known in closed form."""

    def __init__(self, dim_x: int = 6, dim_z: int = 2, noise: float = 0.5, seed: int = 0) -> None:
        g = _gen(seed)
        self.W = torch.randn(dim_x, dim_z, generator=g, dtype=torch.float64)
        self.b = torch.randn(dim_x, generator=g, dtype=torch.float64)
        self.noise = noise
        post_cov = torch.linalg.inv(torch.eye(dim_z, dtype=torch.float64) + self.W.T @ self.W / noise**2)
        self.post_cov = post_cov
        # an imperfect q(z|x): diagonal, 3x the posterior variances; the ELBO is ~0.9 nats loose
        self.q_logvar = torch.log(torch.diagonal(post_cov) * 3.0)

    def sample(self, n: int, seed: int = 1) -> torch.Tensor:
        g = _gen(seed)
        z = torch.randn(n, self.W.shape[1], generator=g, dtype=torch.float64)
        return z @ self.W.T + self.b + self.noise * torch.randn(n, self.W.shape[0], generator=g, dtype=torch.float64)

    def log_px(self, x: torch.Tensor) -> torch.Tensor:
        cov = self.W @ self.W.T + self.noise**2 * torch.eye(self.W.shape[0], dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x.double())

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = (x.double() - self.b) @ self.W @ self.post_cov.T / self.noise**2
        return mu, self.q_logvar.expand_as(mu)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        mean = z.double() @ self.W.T + self.b
        return torch.distributions.Normal(mean, self.noise).log_prob(x.double()).sum(-1)


def test_importance_weighted_bound_on_ppca():
    model = _PPCA()
    x = model.sample(200)
    exact = model.log_px(x)
    terms = elbo(x, model.encode, model.log_likelihood, num_samples=2000, generator=_gen(2))
    curve = importance_weighted_bound(
        x, model.encode, model.log_likelihood, num_samples=5000, chunk_size=1000, generator=_gen(3),
        return_prefixes=(1, 10, 100, 1000),
    )
    gap = {k: float((exact - v).mean()) for k, v in curve.items()}
    # L_1 is the ELBO in expectation; the bound is at least the ELBO and rises with k towards log p(x)
    diff = curve[1] - terms["elbo"]
    assert abs(float(diff.mean())) < 4 * float(diff.std()) / math.sqrt(len(diff))
    assert float((exact - terms["elbo"]).mean()) > 0.5  # the ELBO is clearly loose with this q
    assert float(curve[5000].mean()) > float(terms["elbo"].mean()) + 0.5
    assert gap[1] > gap[10] > gap[100] > 0, gap
    # stated tolerance: with k >= 1000 the mean bound is within 0.01 nats of the exact log-likelihood
    assert abs(gap[1000]) < 0.01 and abs(gap[5000]) < 0.01, gap
    # a single estimate is random (only its expectation is a bound), but each image is close
    assert float((curve[5000] - exact).abs().max()) < 0.1


def _tiny_gvae() -> GVAE:
    torch.manual_seed(0)
    return GVAE(2, 1, 16, latent_size=4, architecture="conv", base_channels=4, max_channels=8).eval()


def test_gvae_adapter_metrics_and_bound_above_elbo():
    model = _tiny_gvae()
    x01 = torch.randint(0, 256, (6, 1, 16, 16), generator=_gen(20)) / 255.0
    adapter = GVAELikelihood(model, "discretized_logistic", scale=0.1, crop_size=12)
    assert adapter.crop(x01).shape == (6, 1, 12, 12)
    terms = elbo(x01, adapter.encode, adapter.log_likelihood, num_samples=8, generator=_gen(21))
    assert torch.allclose(terms["elbo"], terms["log_likelihood"] - terms["kl"], atol=1e-3)
    curve = importance_weighted_bound(x01, adapter.encode, adapter.log_likelihood, 64, chunk_size=16,
                                      generator=_gen(22), return_prefixes=(1, 64))
    assert float(curve[64].mean()) >= float(terms["elbo"].mean())
    metric = ELBOMetric(adapter, num_samples=2, value_range=(-1, 1))
    metric(x01[:3] * 2 - 1)
    metric(x01[3:] * 2 - 1)
    all_terms = metric.aggregate_all()
    assert set(all_terms) == {"elbo", "log_likelihood", "kl"}
    assert all_terms["elbo"] == pytest.approx(all_terms["log_likelihood"] - all_terms["kl"], abs=1e-2)
    iw = ImportanceWeightedBoundMetric(adapter, num_samples=16, chunk_size=8, value_range=(-1, 1), seed=5)
    iw(x01 * 2 - 1)
    # the metric is the mean of the function's per-image bound, with the same latent noise (seed 5)
    direct = importance_weighted_bound(x01, adapter.encode, adapter.log_likelihood, 16, chunk_size=8, generator=_gen(5))
    assert float(iw.aggregate()) == pytest.approx(float(direct.mean()), rel=1e-6)
    # and the ELBO metric's terms are the function's, batch by batch with one generator (seed 0)
    g = _gen(0)
    by_batch = [elbo(x, adapter.encode, adapter.log_likelihood, num_samples=2, generator=g) for x in (x01[:3], x01[3:])]
    for term in ("elbo", "log_likelihood", "kl"):
        assert all_terms[term] == pytest.approx(float(torch.cat([b[term] for b in by_batch]).mean()), rel=1e-6), term
    with pytest.raises(ValueError, match="scale"):
        GVAELikelihood(model, "discretized_gaussian")


# ---------------------------------------------------------------- Frechet distance
def test_frechet_distance_classifier_and_metric():
    g = _gen(30)
    # two classes of 12x12 images: bright left half vs bright right half, with noise
    n = 96
    labels = torch.arange(n) % 2
    images = 0.15 * torch.rand(n, 1, 12, 12, generator=g)
    images[labels == 0, :, :, :6] += 0.7
    images[labels == 1, :, :, 6:] += 0.7
    clf = train_feature_classifier(images, labels, epochs=15, batch_size=32, seed=0)
    assert classifier_accuracy(clf, images, labels) > 0.9
    metric = FrechetDistanceMetric(clf)
    metric(images[labels == 0][:24], images[labels == 0][24:])
    same_class = float(metric.aggregate())
    metric.reset()
    metric(images[labels == 1][:24], images[labels == 0][24:])
    other_class = float(metric.aggregate())
    assert other_class > 5 * max(same_class, 1e-6)
    f = torch.randn(50, 4, generator=g)
    assert float(frechet_distance(f, f)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(RuntimeError, match="at least 2"):
        FrechetDistanceMetric(clf).aggregate()


def test_feature_classifier_trains_until_a_validation_accuracy_target():
    g = _gen(31)
    labels = torch.arange(160) % 2
    images = 0.15 * torch.rand(160, 1, 16, 16, generator=g)
    images[labels == 0, :, :, :8] += 0.7
    images[labels == 1, :, :, 8:] += 0.7
    train, val = slice(0, 128), slice(128, 160)
    clf = train_feature_classifier(images[train], labels[train], epochs=20, batch_size=32, seed=0, hidden=8,
                                   lr_decay=0.8, val_images=images[val], val_labels=labels[val], target_accuracy=0.9)
    # stopped at the first epoch whose validation accuracy reached the target, long before the 20 allowed
    assert clf.val_accuracy >= 0.9 and clf.epochs_trained < 20
    assert clf.val_accuracy == classifier_accuracy(clf, images[val], labels[val])
    assert clf.features(images[:3]).shape == (3, 8) and clf.feature_size == 8
    full = train_feature_classifier(images[train], labels[train], epochs=2, batch_size=32, seed=0,
                                    val_images=images[val], val_labels=labels[val])
    assert full.epochs_trained == 2 and full.val_accuracy is not None and full.feature_size == 64
    with pytest.raises(ValueError, match="validation split"):
        train_feature_classifier(images, labels, target_accuracy=0.9)
    with pytest.raises(ValueError, match="both"):
        train_feature_classifier(images, labels, val_images=images)
    with pytest.raises(ValueError, match="lr_decay"):
        train_feature_classifier(images, labels, lr_decay=1.5)


# ---------------------------------------------------------------- sharpness
def _sharp_fixture(spatial_dims: int, n: int = 12, size: int = 16) -> torch.Tensor:
    """Images in [0, 1] with hard edges: random boxes of random brightness on a dark background."""
    g = _gen(50 + spatial_dims)
    images = 0.1 * torch.ones((n, 1) + (size,) * spatial_dims)
    for i in range(n):
        for _ in range(3):
            lo = torch.randint(0, size // 2, (spatial_dims,), generator=g).tolist()
            hi = [a + int(torch.randint(3, size // 2, (1,), generator=g)) for a in lo]
            images[(i, 0, *(slice(a, b) for a, b in zip(lo, hi)))] = float(torch.rand(1, generator=g)) * 0.8 + 0.2
    return images


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_sharpness_orders_blurred_below_sharp_and_is_one_for_identical_sets(spatial_dims):
    sharp = _sharp_fixture(spatial_dims).double()
    pool = torch.nn.functional.avg_pool2d if spatial_dims == 2 else torch.nn.functional.avg_pool3d
    blurred = pool(sharp, 3, 1, 1, count_include_pad=False)
    more_blurred = pool(blurred, 3, 1, 1, count_include_pad=False)
    assert float(sharpness_ratio(sharp, sharp.clone())) == pytest.approx(1.0, abs=1e-12)
    ratios = [float(sharpness_ratio(x, sharp)) for x in (blurred, more_blurred)]
    assert ratios[1] < ratios[0] < 0.9  # blurred below its sharp original, more blur lower still
    # independent of the intensity range: a common affine map of both sets leaves the ratio as it is
    assert float(sharpness_ratio(blurred * 2 - 1, sharp * 2 - 1)) == pytest.approx(ratios[0], rel=1e-9)
    # added noise (or a checkerboard) reads as "sharper than the data": above 1
    checker = torch.zeros_like(sharp)
    checker[(..., *(slice(None, None, 2),) * spatial_dims)] = 0.2
    assert float(sharpness_ratio(sharp + checker, sharp)) > 1.2
    # the cumulative metric over batches of different sizes gives the function's value on the whole sets
    metric = SharpnessRatioMetric()
    metric(blurred[:5], sharp[:2])
    metric(list(blurred[5:]), None)  # decollated items are stacked; real images may come in other batches
    metric(None, sharp[2:])
    assert float(metric.aggregate()) == pytest.approx(ratios[0], rel=1e-9)
    metric.reset()
    with pytest.raises(RuntimeError, match="at least one generated and one real"):
        metric.aggregate()


def test_mean_gradient_magnitude_by_hand_and_bad_input():
    ramp = torch.arange(8.0).repeat(2, 1, 8, 1)  # +1 per column: every forward difference along W is 1, along H 0
    assert mean_gradient_magnitude(ramp).tolist() == [1.0, 1.0]
    diagonal = ramp + ramp.transpose(-1, -2)  # +1 per row and per column: sqrt(2) everywhere
    assert mean_gradient_magnitude(diagonal)[0].item() == pytest.approx(math.sqrt(2))
    image = torch.rand(1, 2, 5, 4, 3, generator=_gen(60)).double()
    a = image[0].numpy()
    by_hand = np.mean([math.sqrt(sum((a[c, i + di, j + dj, k + dk] - a[c, i, j, k]) ** 2
                                     for di, dj, dk in ((1, 0, 0), (0, 1, 0), (0, 0, 1))))
                       for c in range(2) for i in range(4) for j in range(3) for k in range(2)])
    assert mean_gradient_magnitude(image).item() == pytest.approx(by_hand, rel=1e-12)
    with pytest.raises(ValueError, match="2D or 3D"):
        mean_gradient_magnitude(torch.zeros(4, 8))
    with pytest.raises(ValueError, match="at least 2 pixels"):
        mean_gradient_magnitude(torch.zeros(1, 1, 1, 8))
    with pytest.raises(ValueError, match="NaN"):
        mean_gradient_magnitude(torch.full((1, 1, 4, 4), float("nan")))
    with pytest.raises(ValueError, match="same per-image shape"):
        sharpness_ratio(torch.rand(2, 1, 4, 4), torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="no gradient"):
        sharpness_ratio(torch.rand(2, 1, 4, 4), torch.ones(2, 1, 4, 4))
    with pytest.raises(ValueError, match="same shape"):
        SharpnessRatioMetric()(torch.rand(2, 1, 4, 4), torch.rand(2, 1, 8, 8))


def test_mean_gradient_magnitude_over_a_mask_ignores_the_background():
    # a ramp (gradient 1 per column) on the left half, a flat background on the right
    image = torch.zeros(2, 1, 8, 8)
    image[..., :4] = torch.arange(4.0)
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    mask[..., :3] = True  # the voxels whose forward difference stays inside the ramp
    assert mean_gradient_magnitude(image, mask=mask).tolist() == [1.0, 1.0]
    # unmasked, the flat half dilutes it: 3 unit steps in 7 forward differences per row (the 4th is 3 -> 0: 3)
    assert mean_gradient_magnitude(image)[0].item() == pytest.approx((3 * 1 + 3) / 7)
    per_channel = torch.cat([mask, ~mask], 1)  # a mask per channel: channel 2 counts the flat half only
    two = torch.cat([image, image], 1)
    masked = mean_gradient_magnitude(two, mask=per_channel)
    # 7 rows of forward differences: 3 unit steps (channel 1), then the 3 -> 0 step and 3 flat ones (channel 2)
    assert masked[0].item() == pytest.approx((7 * 3 * 1 + 7 * 3) / (7 * 3 + 7 * 4))
    with pytest.raises(ValueError, match="mask must have shape"):
        mean_gradient_magnitude(image, mask=mask[:, :, :4])
    with pytest.raises(ValueError, match=r"holds no voxel of image\(s\) \[1\]"):
        mean_gradient_magnitude(image, mask=torch.stack([mask[0], torch.zeros_like(mask[0])]))


# ---------------------------------------------------------------- as MONAI/Ignite metrics on an evaluator
def test_metrics_attach_to_gvae_evaluator_through_ignite_handlers():
    from monai.data import DataLoader
    from monai.handlers import IgniteMetricHandler, from_engine

    from monai_gvae.engines import GVAEEvaluator

    model = _tiny_gvae()
    images = torch.randint(0, 256, (12, 1, 16, 16), generator=_gen(40)) / 127.5 - 1.0  # [-1, 1]
    loader = DataLoader([{"image": im} for im in images], batch_size=6, shuffle=False)
    adapter = GVAELikelihood(model, "discretized_logistic", scale=0.2)
    evaluator = GVAEEvaluator(
        "cpu", loader, model,
        key_val_metric={"mmd": IgniteMetricHandler(GaussianMMDMetric((4.0, 8.0)), output_transform=from_engine(["pred", "label"]))},
        additional_metrics={
            "elbo": IgniteMetricHandler(ELBOMetric(adapter, num_samples=2), output_transform=from_engine(["image", "image"])),
            "ms_ssim": IgniteMetricHandler(MSSSIMDiversityMetric(value_range=(-1, 1)), output_transform=from_engine(["pred", "label"])),
            "sharpness": IgniteMetricHandler(SharpnessRatioMetric(), output_transform=from_engine(["pred", "label"])),
        },
    )
    evaluator.run()
    metrics = evaluator.state.metrics
    with torch.no_grad():
        recon = model.decode(model.encode(images)[0])
    expected = (gaussian_mmd(recon[:6], images[:6], (4.0, 8.0)) + gaussian_mmd(recon[6:], images[6:], (4.0, 8.0))) / 2
    assert metrics["mmd"] == pytest.approx(float(expected), rel=1e-4)
    assert metrics["ms_ssim"] == pytest.approx(float(ms_ssim_pairs(recon, value_range=(-1, 1)).mean()), rel=1e-4)
    assert metrics["sharpness"] == pytest.approx(float(sharpness_ratio(recon, images)), rel=1e-5)
    # the ELBO handler averages the per-image ELBO of both batches, drawn with the metric's own generator (seed 0)
    g = _gen(0)
    x01 = (images + 1) / 2
    expected_elbo = torch.cat([elbo(x, adapter.encode, adapter.log_likelihood, num_samples=2, generator=g)["elbo"]
                               for x in (x01[:6], x01[6:])]).mean()
    assert metrics["elbo"] == pytest.approx(float(expected_elbo), rel=1e-5)


# ---------------------------------------------------------------- memorisation
def _smooth_images(n: int, g: torch.Generator, size: int = 16) -> torch.Tensor:
    """``n`` smooth random images in [0, 1] (box-filtered noise, min-max scaled): a 1-pixel shift stays close."""
    x = torch.nn.functional.avg_pool2d(torch.rand(n, 1, size + 3, size + 3, generator=g), 4, 1)
    low, high = x.amin((1, 2, 3), keepdim=True), x.amax((1, 2, 3), keepdim=True)
    return (x - low) / (high - low)


def _rms_to_nearest(queries: torch.Tensor, references: torch.Tensor) -> np.ndarray:
    """Nearest-neighbour RMS distances by a plain loop (the documented definition, independent of the code)."""
    q, r = queries.double().numpy(), references.double().numpy()
    return np.array([min(float(np.sqrt(((a - b) ** 2).mean())) for b in r) for a in q])


def test_memorization_flags_near_copies_and_new_real_images_by_the_percentile_rule():
    g = _gen(50)
    train, holdout = _smooth_images(30, g), _smooth_images(20, g)
    planted = {
        "exact": train[0],
        "noisy": (train[3] + 0.02 * torch.randn(train[3].shape, generator=g)).clamp(0, 1),  # small noise
        "shifted": torch.roll(train[7], 1, dims=-1),  # moved by one pixel
    }
    # the held-out images themselves as "samples": each is exactly as close as that new real image is
    synthetic = torch.cat([torch.stack(list(planted.values())), holdout])
    names = list(planted) + [f"new_{i}" for i in range(len(holdout))]
    reference = _rms_to_nearest(holdout, train)
    distances = _rms_to_nearest(synthetic, train)
    for percentile, new_flagged in ((5.0, 1), (50.0, 10)):
        report = memorization_report(synthetic, train, holdout, percentile=percentile, synthetic_names=names)
        threshold = float(np.percentile(reference, percentile))
        assert report["spaces"]["pixel"]["threshold"] == pytest.approx(threshold, rel=1e-9)
        # (the code expands the squares: an exact copy comes out at ~1e-8)
        assert [s["pixel_distance"] for s in report["samples"]] == pytest.approx(list(distances), rel=1e-6, abs=1e-6)
        expected = [n for n, d in zip(names, distances) if d < threshold or d <= 1e-6]
        assert report["flagged"] == expected
        # the near-copies are flagged; of the new real images, those below the percentile of their own distances:
        # the closest one at 5 % (20 images), half of them at 50 %
        assert expected[:3] == ["exact", "noisy", "shifted"] and len(expected) == 3 + new_flagged
        nearest = {s["name"]: s["nearest_training"] for s in report["samples"]}
        assert (nearest["exact"], nearest["noisy"], nearest["shifted"]) == ("0", "3", "7")
    # without held-out images the training set's leave-one-out distances are the reference
    report = memorization_report(synthetic, train, percentile=5.0, synthetic_names=names)
    loo = np.array([min(float(np.sqrt(((a - b) ** 2).mean())) for j, b in enumerate(train.double().numpy()) if j != i)
                    for i, a in enumerate(train.double().numpy())])
    assert report["spaces"]["pixel"]["threshold"] == pytest.approx(float(np.percentile(loo, 5.0)), rel=1e-9)
    assert report["flagged"][:3] == ["exact", "noisy", "shifted"]


def test_memorization_feature_space_flags_what_pixels_miss():
    """A feature_fn adds a second space: a training image moved by 5 pixels (circularly) is far in pixel space but
    identical in Fourier magnitudes, so it is flagged there (and overall), and only there."""
    g = _gen(51)
    train, holdout = _smooth_images(30, g), _smooth_images(20, g)
    shifted = torch.roll(train[4], 5, dims=-1)
    synthetic = torch.stack([shifted, holdout[0], train[9]])

    def fourier(x: torch.Tensor) -> torch.Tensor:  # invariant to circular shifts
        return torch.fft.fft2(x.double()).abs().flatten(1)

    plain = memorization_report(synthetic, train, holdout, synthetic_names=["shifted", "new", "copy"])
    assert plain["flagged"] == ["copy"] and "fourier" not in plain["spaces"]
    report = memorization_report(synthetic, train, holdout, synthetic_names=["shifted", "new", "copy"],
                                 feature_fn=fourier, feature_name="fourier")
    assert report["flagged"] == ["shifted", "copy"] and set(report["spaces"]) == {"pixel", "fourier"}
    shifted_row = report["samples"][0]
    assert not shifted_row["pixel_flagged"] and shifted_row["fourier_flagged"] and shifted_row["flagged"]
    assert shifted_row["fourier_nearest_training"] == "4" and shifted_row["fourier_distance"] < 1e-6
    # the feature space has its own threshold, from the features of the held-out images
    feature_reference = _rms_to_nearest(fourier(holdout), fourier(train))
    assert report["spaces"]["fourier"]["threshold"] == pytest.approx(float(np.percentile(feature_reference, 5.0)), rel=1e-9)
    assert not report["samples"][1]["flagged"]


def test_metric_helpers_stack_decollated_batches_and_scale_to_unit_range():
    from monai_gvae.metrics.utils import stack_batch, to_unit_range

    items = [torch.full((1, 2, 2), float(i)) for i in range(3)]
    stacked = stack_batch(items)
    assert stacked.shape == (3, 1, 2, 2) and torch.equal(stacked[2], items[2])
    assert torch.equal(stack_batch(tuple(items)), stacked)
    batch = torch.zeros(2, 1, 2, 2)
    assert stack_batch(batch) is batch and stack_batch(None) is None  # tensors and a missing y pass through
    scaled = to_unit_range(torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0]), (-1, 1))
    assert scaled.dtype == torch.float32 and torch.equal(scaled, torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))
    assert torch.equal(to_unit_range(torch.tensor([0, 128, 255], dtype=torch.uint8), (0, 255))[[0, 2]],
                       torch.tensor([0.0, 1.0]))
