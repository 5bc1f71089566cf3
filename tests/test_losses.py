import math

import pytest
import torch

from monai_gvae.losses import (
    CriticLoss,
    EncoderGeneratorLoss,
    gradient_difference,
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


class ConditionedCritic(torch.nn.Module):
    """A small conv critic scoring ``(x, c)`` pairs, as a conditional GVAECritic does."""

    def __init__(self, channels, condition_channels):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(channels + condition_channels, 4, 3), torch.nn.LeakyReLU(0.2), torch.nn.Flatten(),
            torch.nn.Linear(4 * 4 * 4, 1),
        )

    def forward(self, x, condition=None):
        return self.net(x if condition is None else torch.cat([x, condition], 1))


@pytest.mark.parametrize("chunk_size", [1, 2, 4, 6])
@pytest.mark.parametrize("conditional", [False, True])
def test_gradient_penalty_in_chunks_gives_the_same_value_and_gradients(chunk_size, conditional):
    """Chunks back-propagated one at a time: the same eps, penalty and critic gradients as one pass."""
    torch.manual_seed(0)
    critic = ConditionedCritic(2, 3 if conditional else 0)
    chunked_critic = ConditionedCritic(2, 3 if conditional else 0)
    chunked_critic.load_state_dict(critic.state_dict())
    real, fake = torch.randn(3, 2, 6, 6), torch.randn(6, 2, 6, 6)  # fakes: two groups, as in the trainer
    condition = torch.randn(6, 3, 6, 6) if conditional else None
    gp = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(1), condition)
    (10.0 * gp).backward()
    shares = []

    def backward(term):
        assert term.requires_grad  # each share still has its graph when handed over
        shares.append(term.detach())
        (10.0 * term).backward()

    total = gradient_penalty(chunked_critic, real, fake, torch.Generator().manual_seed(1), condition,
                             chunk_size=chunk_size, backward=backward)
    assert len(shares) == math.ceil(6 / chunk_size)
    assert not total.requires_grad  # already back-propagated
    assert total.item() == pytest.approx(gp.item(), rel=1e-6)
    assert total.item() == pytest.approx(sum(s.item() for s in shares), rel=1e-6)
    for a, b in zip(critic.parameters(), chunked_critic.parameters()):
        assert (a.grad is None) == (b.grad is None)  # the score's bias gets none: the penalty ignores it
        assert a.grad is None or torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-7)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in chunked_critic.parameters())


def test_gradient_penalty_chunk_size_errors():
    critic = ConditionedCritic(2, 0)
    real, fake = torch.randn(2, 2, 6, 6), torch.randn(2, 2, 6, 6)
    with pytest.raises(ValueError, match="needs backward"):
        gradient_penalty(critic, real, fake, chunk_size=1)
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
            gradient_penalty(critic, real, fake, chunk_size=bad, backward=lambda t: t.backward())
    # CriticLoss.penalty passes the chunks through, and does nothing when the penalty is off
    calls = []
    gp = CriticLoss(gp_weight=10.0).penalty(critic, real, fake, chunk_size=1, backward=calls.append)
    assert len(calls) == 2 and gp.item() == pytest.approx(sum(c.item() for c in calls), rel=1e-6)
    assert CriticLoss(gp_weight=0.0).penalty(critic, real, fake, chunk_size=1, backward=calls.append).item() == 0.0
    assert len(calls) == 2


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


@pytest.mark.parametrize("spatial", [(6, 6), (4, 5, 6)])
def test_gradient_difference_charges_missing_edges_and_sharpens(spatial):
    torch.manual_seed(0)
    x = torch.rand(2, 1, *spatial)
    assert gradient_difference(x, x).item() == 0.0  # the data itself: nothing to charge
    assert gradient_difference(x + 0.3, x).item() == pytest.approx(0.0, abs=1e-6)  # a shift keeps the edges
    flat = torch.full_like(x, 0.5)  # every edge missing: the mean absolute difference of the data
    expected = torch.stack([x.diff(dim=d).abs().mean() for d in range(2, x.dim())]).mean()
    assert gradient_difference(flat, x).item() == pytest.approx(expected.item())
    blurred = torch.nn.functional.avg_pool2d(x.flatten(0, -3) if len(spatial) == 2 else x[..., 0], 3, 1, 1)
    if len(spatial) == 2:
        assert 0 < gradient_difference(blurred.view_as(x), x) < gradient_difference(flat, x)
    # descending it from a nearly flat image brings its edges towards the data's (L1 alone would settle on the mean)
    recon = (flat + 0.01 * torch.randn_like(x)).requires_grad_(True)
    optim = torch.optim.SGD([recon], lr=0.5)
    before = gradient_difference(recon, x).item()
    for _ in range(60):
        optim.zero_grad()
        gradient_difference(recon, x).backward()
        optim.step()
    assert gradient_difference(recon, x).item() < 0.7 * before
    with pytest.raises(ValueError, match="same shape"):
        gradient_difference(x, x[:1])
    with pytest.raises(ValueError, match="spatial"):
        gradient_difference(torch.zeros(2, 3), torch.zeros(2, 3))


def test_encoder_generator_loss_gradient_term_only_when_weighted():
    x, recon = torch.rand(2, 1, 6, 6), torch.full((2, 1, 6, 6), 0.5)
    mu, logvar, scores = torch.ones(2, 3), torch.zeros(2, 3), torch.tensor([[1.0], [3.0]])
    plain = EncoderGeneratorLoss(kl_weight=0.1, adv_weight=0.5)(x, recon, mu, logvar, scores)
    assert "grad" not in plain  # weight 0: the objective and its terms as before the term existed
    terms = EncoderGeneratorLoss(kl_weight=0.1, adv_weight=0.5, gradient_weight=2.0)(x, recon, mu, logvar, scores)
    assert terms["grad"].item() == pytest.approx(gradient_difference(recon, x).item()) and terms["grad"] > 0
    assert terms["loss"].item() == pytest.approx(plain["loss"].item() + 2.0 * terms["grad"].item())
    assert EncoderGeneratorLoss(gradient_weight=1.0)(None, None, mu, logvar, scores)["grad"].item() == 0.0
    with pytest.raises(ValueError, match="gradient_weight"):
        EncoderGeneratorLoss(gradient_weight=-1)
