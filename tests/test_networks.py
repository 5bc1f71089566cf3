import pytest
import torch

from monai_gvae.networks import GVAE, GVAECritic, GVAEEncoder, GVAEGenerator, load_gvae

TINY = {"base_channels": 4, "max_channels": 8}


@pytest.mark.parametrize("architecture", ["resnet", "conv"])
@pytest.mark.parametrize("spatial_dims,size", [(2, 32), (2, 64), (2, 128), (3, 32), (3, 64)])
def test_shapes(architecture, spatial_dims, size):
    model = GVAE(spatial_dims=spatial_dims, in_channels=2, image_size=size, latent_size=6,
                 architecture=architecture, num_res_units=1, **TINY)
    critic = GVAECritic(spatial_dims=spatial_dims, in_channels=2, image_size=size, architecture=architecture, **TINY)
    x = torch.rand(2, 2, *(size,) * spatial_dims) * 2 - 1
    recon, mu, logvar = model(x)
    assert recon.shape == x.shape
    assert mu.shape == logvar.shape == (2, 6)
    assert recon.abs().max() <= 1.0  # tanh output
    assert critic(x).shape == (2, 1)
    assert model.sample(3).shape == (3, 2) + (size,) * spatial_dims


def test_issue_examples_construct():
    GVAE(spatial_dims=2, in_channels=2, image_size=64, latent_size=128, architecture="resnet")
    GVAECritic(spatial_dims=3, in_channels=1, image_size=32, architecture="conv")


def test_parts_and_default_critic_has_no_batchnorm():
    enc = GVAEEncoder(spatial_dims=2, in_channels=1, image_size=16, latent_size=4, **TINY)
    gen = GVAEGenerator(spatial_dims=2, out_channels=1, image_size=16, latent_size=4, **TINY)
    assert gen(torch.randn(2, 4)).shape == (2, 1, 16, 16)
    assert [t.shape for t in enc(torch.zeros(2, 1, 16, 16))] == [(2, 4), (2, 4)]
    critic = GVAECritic(spatial_dims=2, in_channels=1, image_size=16, **TINY)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in critic.modules())
    paper = GVAECritic(spatial_dims=2, in_channels=1, image_size=16, norm="batch", **TINY)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in paper.modules())


def test_sample_reproducible_with_seeded_generator():
    model = GVAE(spatial_dims=2, in_channels=1, image_size=16, latent_size=4, architecture="conv", **TINY).eval()
    a = model.sample(4, generator=torch.Generator().manual_seed(7))
    b = model.sample(4, generator=torch.Generator().manual_seed(7))
    c = model.sample(4, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_checkpoint_roundtrip_identical_outputs(tmp_path):
    model = GVAE(spatial_dims=2, in_channels=3, image_size=16, latent_size=4, architecture="conv",
                 image_channels=1, num_classes=2, **TINY).eval()
    path = tmp_path / "model.pt"
    torch.save({"gvae": model.state_dict(), "other": {}}, path)
    loaded = load_gvae(path)
    z = torch.randn(3, 4)
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model.decode(z), loaded.decode(z))
        assert torch.equal(model.encode(x)[0], loaded.encode(x)[0])
    assert loaded.config == model.config and loaded.num_classes == 2 and loaded.label_channels == 2
    assert len(loaded.checksum) == 64


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_gvae(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        load_gvae(bad)
    torch.save({"critic": {}}, tmp_path / "nokey.pt")
    with pytest.raises(ValueError, match="no entry 'gvae'"):
        load_gvae(tmp_path / "nokey.pt")


def test_bad_input_errors():
    model = GVAE(spatial_dims=2, in_channels=2, image_size=16, latent_size=4, architecture="conv", **TINY)
    with pytest.raises(ValueError, match="2 input channel"):
        model(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="spatial size"):
        model(torch.zeros(1, 2, 32, 32))
    with pytest.raises(ValueError, match="4-d batch"):
        model(torch.zeros(2, 16, 16))
    with pytest.raises(ValueError, match="power of two"):
        GVAE(spatial_dims=2, in_channels=1, image_size=28)
    with pytest.raises(ValueError, match="power of two"):
        GVAECritic(spatial_dims=2, in_channels=1, image_size=8, architecture="conv")
    with pytest.raises(ValueError, match="architecture"):
        GVAE(spatial_dims=2, in_channels=1, image_size=32, architecture="unet")
    with pytest.raises(ValueError, match="spatial_dims"):
        GVAE(spatial_dims=1, in_channels=1, image_size=32)
    with pytest.raises(ValueError, match="num_classes"):
        GVAE(spatial_dims=2, in_channels=3, image_size=32, image_channels=1)
    with pytest.raises(ValueError, match="latents of shape"):
        model.decode(torch.zeros(2, 5))


@pytest.mark.parametrize("upsample", ["nearest", "linear"])
@pytest.mark.parametrize("spatial_dims,condition_channels", [(2, 0), (3, 0), (2, 3)])
def test_interpolating_upsampling_generator(tmp_path, spatial_dims, condition_channels, upsample):
    """upsample="nearest"/"linear" (resize then convolve, no checkerboard) for the conv architecture: shapes, the
    setting kept in the checkpoint, gradient checkpointing, and the errors."""
    torch.manual_seed(0)
    in_channels = 1 if condition_channels else 2
    kwargs = dict(spatial_dims=spatial_dims, in_channels=in_channels, image_size=16, latent_size=6,
                  architecture="conv", upsample=upsample, **TINY)
    if condition_channels:
        kwargs.update(num_classes=3, condition_channels=3)
    model = GVAE(**kwargs).eval()
    cond = torch.zeros((2, 3) + (16,) * spatial_dims) if condition_channels else None
    z = torch.randn(2, 6)
    out = model.decode(z, cond)
    assert out.shape == (2, in_channels) + (16,) * spatial_dims
    assert model.config["upsample"] == upsample
    upsamplers = [m for m in model.generator.modules() if type(m).__name__ == "UpSample"]
    assert len(upsamplers) == 4
    # the interpolation each mode names: nearest repeats pixels in 2x2 blocks, linear interpolates between them
    ramp = torch.arange(4.0).reshape((1, 1) + (4,) + (1,) * (spatial_dims - 1)).expand((1, 1) + (4,) * spatial_dims)
    row = upsamplers[0](ramp)[(0, 0, slice(None)) + (0,) * (spatial_dims - 1)]
    blocky = torch.equal(row[0::2], row[1::2])
    assert blocky == (upsample == "nearest")
    assert not any(getattr(m, "transposed", False) for m in model.generator.modules())
    torch.save(model.state_dict(), tmp_path / "m.pt")
    assert torch.equal(load_gvae(str(tmp_path / "m.pt")).decode(z, cond), out)
    if not condition_channels:
        ckpt = GVAE(**kwargs, gradient_checkpointing=True)
        ckpt.load_state_dict(model.state_dict())
        x = torch.rand((2, 2) + (16,) * spatial_dims)
        torch.manual_seed(1)
        a = model.train()(x)[0]
        torch.manual_seed(1)
        assert torch.allclose(ckpt.train()(x)[0], a)
    assert "upsample" not in GVAE(2, 1, 16, 4, "conv", **TINY).config  # the default is not stored
    with pytest.raises(ValueError, match="resnet"):
        GVAE(2, 1, 16, 4, "resnet", upsample="transposed", **TINY)
    with pytest.raises(ValueError, match="resnet"):
        GVAE(2, 1, 16, 4, "resnet", upsample="linear", **TINY)
    with pytest.raises(ValueError, match="upsample"):
        GVAE(2, 1, 16, 4, "conv", upsample="bilinear", **TINY)


def test_logvar_clamp_bounds_the_encoders_log_variance_and_travels_with_the_weights(tmp_path, monkeypatch):
    """GVAE(logvar_clamp=(low, high)): encode/forward return the log-variance clamped (exp stays finite when the
    encoder's head spikes), the mean untouched; the bounds are stored in the state dict; the trainer clamps the same
    way."""
    model = GVAE(spatial_dims=2, in_channels=1, image_size=16, latent_size=3, logvar_clamp=(-4.0, 2.0), **TINY)
    spike = torch.tensor([[-1e4, 0.5, 1e4], [-3.0, -5.0, 3.0]])
    mu = torch.tensor([[1.0, -2.0, 3.0], [0.0, 1e3, -1e3]])
    monkeypatch.setattr(model.encoder, "forward", lambda x, condition=None: (mu, spike))
    got_mu, logvar = model.encode(torch.zeros(2, 1, 16, 16))
    assert torch.equal(got_mu, mu) and torch.equal(logvar, torch.tensor([[-4.0, 0.5, 2.0], [-3.0, -4.0, 2.0]]))
    recon, _, logvar = model(torch.zeros(2, 1, 16, 16))
    assert torch.isfinite(recon).all() and logvar.max() == 2.0
    # the default bounds, and the bounds saved with the weights
    assert GVAE(spatial_dims=2, in_channels=1, image_size=16, latent_size=3, **TINY).config["logvar_clamp"] == [-30.0, 20.0]
    torch.save(model.state_dict(), tmp_path / "m.pt")
    assert tuple(load_gvae(tmp_path / "m.pt").config["logvar_clamp"]) == (-4.0, 2.0)

    # training: the trainer clamps the encoder's output with the network's bounds before the loss sees it
    from monai_gvae.engines import GVAETrainer
    from monai_gvae.losses import EncoderGeneratorLoss

    seen = []

    class Recording(EncoderGeneratorLoss):
        def forward(self, x, recon, mu, logvar, *args, **kwargs):
            seen.append(logvar.detach().clone())
            return super().forward(x, recon, mu, logvar, *args, **kwargs)

    critic = GVAECritic(spatial_dims=2, in_channels=1, image_size=16, **TINY)
    spiking = lambda x, condition=None: (torch.zeros(x.shape[0], 3), torch.full((x.shape[0], 3), 1e4))  # noqa: E731
    monkeypatch.setattr(model.encoder, "forward", spiking)
    trainer = GVAETrainer("cpu", 1, [{"image": torch.rand(2, 1, 16, 16) * 2 - 1}], model, critic,
                          torch.optim.SGD(model.parameters(), 0.0), torch.optim.SGD(critic.parameters(), 0.0),
                          loss_function=Recording(), seed=0)
    trainer.run()  # a log-variance of 1e4 unclamped: exp overflows, a non-finite loss stops the run
    assert len(seen) == 1 and torch.equal(seen[0], torch.full((2, 3), 2.0))
