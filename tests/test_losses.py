import math

import pytest
import torch

from monai_gvae.losses import (
    CriticLoss,
    EncoderGeneratorLoss,
    gradient_penalty,
    kl_divergence,
    wasserstein_critic_loss,
)


class LinearCritic(torch.nn.Module):
    """D(x) = <w, x>: its input gradient is w everywhere, so GP = (||w|| - 1)^2 exactly."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1, keepdim=True)


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_gradient_penalty_closed_form(scale):
    w = torch.randn(1, 2, 4, 4)
    w = w / w.norm() * scale
    critic = LinearCritic(w)
    real, fake = torch.randn(5, 2, 4, 4), torch.randn(5, 2, 4, 4)
    gp = gradient_penalty(critic, real, fake)
    assert gp.item() == pytest.approx((scale - 1.0) ** 2, abs=1e-5)
    gp.backward()  # differentiable w.r.t. the critic's parameters (create_graph=True)
    if scale != 1.0:
        assert critic.w.grad is not None and critic.w.grad.abs().sum() > 0


class QuadraticCritic(torch.nn.Module):
    """D(x) = 0.5 * ||x||^2 -> grad = x_hat; GP = mean((||x_hat|| - 1)^2) with x_hat the interpolate."""

    def forward(self, x):
        return 0.5 * x.flatten(1).pow(2).sum(1, keepdim=True)


def test_gradient_penalty_uses_interpolates():
    real, fake = torch.full((3, 1, 2, 2), 2.0), torch.zeros(3, 1, 2, 2)
    g = torch.Generator().manual_seed(0)
    eps = torch.rand((3, 1, 1, 1), generator=torch.Generator().manual_seed(0))
    expected = ((eps.flatten() * 2.0 * 2.0 - 1.0) ** 2).mean()  # ||x_hat|| = 2 * eps * sqrt(4)
    assert gradient_penalty(QuadraticCritic(), real, fake, generator=g).item() == pytest.approx(expected.item(), rel=1e-5)


def test_gradient_penalty_broadcasts_real_over_groups_of_fakes():
    """A fake batch of ``times * N`` items pairs item ``i`` with real ``i % N``: the same penalty as a repeated real
    batch, without the copy."""
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.LazyLinear(1))
    real, fake = torch.randn(3, 2, 6, 6), torch.randn(6, 2, 6, 6)
    critic(real)  # materialise the lazy layer
    gp = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(1))
    repeated = gradient_penalty(critic, real.repeat(2, 1, 1, 1), fake, torch.Generator().manual_seed(1))
    assert torch.equal(gp, repeated)
    with pytest.raises(ValueError, match="whole multiple"):
        gradient_penalty(critic, real, fake[:4])
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(critic, real, fake[:, :1])


def test_kl_closed_form():
    assert kl_divergence(torch.zeros(3, 5), torch.zeros(3, 5)).item() == 0.0
    mu, var = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.5, 2.0]])
    expected = sum(0.5 * (m**2 + v - 1 - math.log(v)) for m, v in zip(mu[0].tolist(), var[0].tolist()))
    assert kl_divergence(mu, var.log()).item() == pytest.approx(expected, rel=1e-6)
    assert kl_divergence(mu.repeat(4, 1), var.log().repeat(4, 1), reduction="none").shape == (4,)
    with pytest.raises(ValueError, match="reduction"):
        kl_divergence(mu, var, reduction="max")


def test_wasserstein_and_critic_loss():
    real, fake = torch.tensor([[2.0], [4.0]]), torch.tensor([[1.0], [1.0]])
    assert wasserstein_critic_loss(real, fake).item() == -2.0
    terms = CriticLoss(gp_weight=10.0)(real, fake, torch.tensor(0.5))
    assert terms["loss"].item() == pytest.approx(-2.0 + 5.0)
    assert terms["wasserstein"].item() == 2.0


def test_encoder_generator_loss_terms_and_warmup():
    loss_fn = EncoderGeneratorLoss(rec_weight=2.0, kl_weight=0.1, adv_weight=0.5, kl_warmup_iterations=10)
    x, recon = torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 0.5)
    mu, logvar = torch.ones(2, 3), torch.zeros(2, 3)
    scores = torch.tensor([[1.0], [3.0]])
    terms = loss_fn(x, recon, mu, logvar, scores, iteration=5)
    assert terms["rec"].item() == pytest.approx(0.5)
    assert terms["kl"].item() == pytest.approx(1.5)
    assert terms["adv"].item() == pytest.approx(-2.0)
    assert terms["loss"].item() == pytest.approx(2.0 * 0.5 + 0.05 * 1.5 + 0.5 * -2.0)
    assert loss_fn.kl_weight_at(0) == 0.0 and loss_fn.kl_weight_at(100) == 0.1
    with pytest.raises(ValueError, match="kl_weight"):
        EncoderGeneratorLoss(kl_weight=-1)
