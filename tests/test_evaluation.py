"""``monai_gvae.metrics.evaluate``: each value against an independent computation, and one path for the bundle's
``metrics.json`` and ``monai-gvae evaluate`` (identical values for the same model and data)."""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.metrics.regression import compute_ms_ssim
from PIL import Image
from scipy.stats import norm

from conftest import subprocess_env
from evaluation_oracle import dice_by_hand, gaussian_mmd_by_hand, sharpness_ratio_by_hand
from monai_gvae.bundle.evaluation import evaluate_model, report_to_json, write_json_report
from monai_gvae.cli import main
from monai_gvae.data import load_image_folder
from monai_gvae.metrics import (
    EVALUATION_METRICS,
    WholeSetGaussianMMDMetric,
    default_metrics,
    describe_evaluation,
    evaluate,
    ms_ssim_settings,
)
from monai_gvae.networks import GVAE, load_gvae, sample_latents

REPO = Path(__file__).resolve().parents[1]
SIZE, LATENT = 16, 4


class KnownGVAE(GVAE):
    """A GVAE whose encoder and generator are simple closed-form maps, so every metric can be computed by hand.

    ``mu`` = the mean of each image channel's quarter rows (4 numbers), ``logvar`` = -30 (the clamp floor: the
    posterior is a point up to 3e-7), ``G(z)`` = ``tanh`` of a fixed linear map of ``z`` (label channels: class
    ``argmax`` of a fixed map).
    """

    def __init__(self, num_classes: int | None = None) -> None:
        label_channels = num_classes or 0
        super().__init__(spatial_dims=2, in_channels=1 + label_channels, image_size=SIZE, latent_size=LATENT,
                         architecture="conv", base_channels=4, max_channels=8, image_channels=1,
                         num_classes=num_classes)
        weights = torch.Generator().manual_seed(7)
        self.register_buffer("w", torch.randn(LATENT, (1 + label_channels) * SIZE * SIZE, generator=weights))

    def encode(self, x, condition=None):
        mu = x[:, 0].reshape(x.shape[0], LATENT, -1).mean(-1) * 2.0
        return mu, torch.full_like(mu, -30.0)

    def decode(self, z, condition=None):
        return torch.tanh(z @ self.w / 2.0).reshape(z.shape[0], -1, SIZE, SIZE)


def packed_images(n: int, num_classes: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n`` packed inputs in [-1, 1] (image channel from smooth noise; one-hot labels from thresholds)."""
    g = torch.Generator().manual_seed(seed)
    image = torch.nn.functional.avg_pool2d(torch.rand(n, 1, SIZE + 3, SIZE + 3, generator=g), 4, 1)
    low, high = image.amin((2, 3), keepdim=True), image.amax((2, 3), keepdim=True)
    image = (image - low) / (high - low)
    if num_classes is None:
        return image * 2 - 1, None
    label = torch.bucketize(image, torch.linspace(0, 1, num_classes + 1)[1:-1])
    onehot = torch.nn.functional.one_hot(label[:, 0], num_classes).movedim(-1, 1).float()
    return torch.cat([image * 2 - 1, onehot * 2 - 1], 1), label


def batches(x: torch.Tensor, size: int) -> list[dict]:
    return [{"image": x[i : i + size]} for i in range(0, x.shape[0], size)]


def test_each_value_matches_an_independent_computation():
    torch.manual_seed(0)
    model = KnownGVAE().eval()
    x, _ = packed_images(6)
    values = evaluate(model, batches(x, 4), seed=3, likelihood_scale=0.05)
    assert set(values) == set(EVALUATION_METRICS) - {"reconstruction_dice"} | {"num_images"}
    assert values["num_images"] == 6

    with torch.no_grad():
        mu, logvar = model.encode(x)
        recon = model.decode(mu)
        fake = model.decode(sample_latents(LATENT, 3, 0, 6))
    real01, recon01 = (x.numpy() + 1) / 2, (recon.numpy() + 1) / 2
    # reconstruction: mean absolute error of the image channel in [0, 1]
    assert values["reconstruction_l1_01"] == pytest.approx(np.abs(recon01 - real01).mean(), rel=1e-6)
    # KL of N(mu, exp(logvar)) to N(0, 1) per image, from the textbook formula
    var = np.exp(logvar.double().numpy())
    kl = 0.5 * (mu.double().numpy() ** 2 + var - 1.0 - np.log(var)).sum(1)
    assert values["kl"] == pytest.approx(kl.mean(), rel=1e-6)
    # ELBO: the posterior is a point, so E_q[log p(x|z)] = log p(x | G(mu)); discretised Gaussian over 256 bins
    half, mean01 = 0.5 / 255, recon01.astype(np.float64)
    upper = (np.where(real01 > 1 - half, np.inf, real01 + half) - mean01) / 0.05
    lower = (np.where(real01 < half, -np.inf, real01 - half) - mean01) / 0.05
    # the bin's probability from the tail it lies in (no 1 - 1 cancellation far from the mean)
    prob = np.where(lower > 0, norm.sf(lower) - norm.sf(upper), norm.cdf(upper) - norm.cdf(lower))
    log_lik = np.log(prob).reshape(6, -1).sum(1)
    assert values["elbo"] == pytest.approx((log_lik - kl).mean(), rel=1e-4)
    # MMD of the whole set: prior samples i = sample_latents(seed 3, index i) against all real images
    fake01 = ((fake.numpy() + 1) / 2).reshape(6, -1).astype(np.float64)
    expected_mmd = gaussian_mmd_by_hand(fake01, real01.reshape(6, -1).astype(np.float64))
    assert values["mmd_gaussian"] == pytest.approx(expected_mmd, rel=1e-6)
    # MS-SSIM diversity: pairs (0, 1), (2, 3), (4, 5) of the same samples
    settings = ms_ssim_settings((SIZE, SIZE))
    f = torch.from_numpy(fake01).float().reshape(6, 1, SIZE, SIZE)
    pairs = compute_ms_ssim(f[0::2], f[1::2], spatial_dims=2, data_range=1.0, kernel_size=settings["kernel_size"],
                            weights=settings["weights"])
    assert values["ms_ssim_diversity"] == pytest.approx(float(pairs.mean()), rel=1e-6)
    # sharpness: mean gradient magnitude (forward differences) of the same prior samples over the real images'
    assert values["sharpness_ratio"] == pytest.approx(
        sharpness_ratio_by_hand(fake01.reshape(6, 1, SIZE, SIZE), real01.astype(np.float64)), rel=1e-6)


def test_dice_of_generated_labels_matches_hand_count():
    model = KnownGVAE(num_classes=3).eval()
    x, label = packed_images(5, num_classes=3)
    values = evaluate(model, batches(x, 2), metrics=["reconstruction_dice"])
    assert set(values) == {"reconstruction_dice", "num_images"}
    with torch.no_grad():
        decoded = model.decode(model.encode(x)[0])[:, 1:].argmax(1).numpy()
    truth = label[:, 0].numpy()
    # per image, the mean over the foreground classes present in its truth (MONAI ignore_empty); then over images
    assert values["reconstruction_dice"] == pytest.approx(dice_by_hand(decoded, truth, 3), rel=1e-6)
    # an image whose truth lacks a class it predicts: that class is left out of its mean, not scored 0
    truth[0][truth[0] == 2] = 1
    packed = torch.cat([x[:, :1], torch.nn.functional.one_hot(torch.from_numpy(truth), 3).movedim(-1, 1) * 2.0 - 1], 1)
    assert (decoded[0] == 2).any() and not (truth[0] == 2).any()
    values = evaluate(model, batches(packed, 2), metrics=["reconstruction_dice"])
    assert values["reconstruction_dice"] == pytest.approx(dice_by_hand(decoded, truth, 3), rel=1e-6)
    assert "reconstruction_dice" in default_metrics(model) and "reconstruction_dice" not in default_metrics(KnownGVAE())


def test_values_do_not_depend_on_batching_except_the_elbo_draws():
    model = KnownGVAE(num_classes=3).eval()
    x, _ = packed_images(7, num_classes=3)
    a = evaluate(model, batches(x, 7), seed=1)
    b = evaluate(model, batches(x, 3), seed=1)
    for key in set(a) - {"elbo"}:
        assert a[key] == pytest.approx(b[key], rel=1e-6), key
    # max_samples cuts the loader; another seed draws other prior samples
    assert evaluate(model, batches(x, 3), max_samples=4, metrics=["kl"])["num_images"] == 4
    assert evaluate(model, batches(x, 3), seed=2)["mmd_gaussian"] != a["mmd_gaussian"]


def test_whole_set_mmd_metric_is_one_estimate_over_all_batches():
    g = torch.Generator().manual_seed(0)
    fake, real = torch.rand(9, 1, 4, 4, generator=g), torch.rand(7, 1, 4, 4, generator=g) + 0.3
    metric = WholeSetGaussianMMDMetric()
    metric(fake[:5], real[:3])
    metric(fake[5:], real[3:])
    expected = gaussian_mmd_by_hand(fake.reshape(9, -1).double().numpy(), real.reshape(7, -1).double().numpy())
    assert float(metric.aggregate()) == pytest.approx(expected, rel=1e-7)
    metric.reset()
    with pytest.raises(RuntimeError, match="no batch"):
        metric.aggregate()


def test_bad_requests_are_named():
    model = KnownGVAE().eval()
    x, _ = packed_images(4)
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(model, batches(x, 2), metrics=["mmd"])
    with pytest.raises(ValueError, match="no label channels"):
        evaluate(model, batches(x, 2), metrics=["reconstruction_dice"])
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        evaluate(model, batches(x * 3, 2))
    with pytest.raises(ValueError, match="model takes"):
        evaluate(model, batches(x[:, :, :8], 2))
    with pytest.raises(ValueError, match="at least 2 images"):
        evaluate(model, batches(x[:1], 1))
    assert evaluate(model, batches(x[:1], 1), metrics=["kl", "reconstruction_l1_01"])["num_images"] == 1
    with pytest.raises(ValueError, match="no images"):
        evaluate(model, [])
    conditional = GVAE(spatial_dims=2, in_channels=1, image_size=SIZE, latent_size=LATENT, architecture="conv",
                       base_channels=4, max_channels=8, num_classes=2, condition_channels=2)
    with pytest.raises(ValueError, match="label-conditioned"):
        evaluate(conditional, batches(x, 2))


def test_reports_state_their_protocol_and_write_strict_json(tmp_path):
    model = KnownGVAE(num_classes=3).eval()
    x, label = packed_images(4, num_classes=3)
    images = (x[:, :1] + 1) / 2
    report = evaluate_model(model, images, label, batch_size=2, seed=5, metrics=["reconstruction_dice", "kl"])
    assert set(report["metrics"]) == {"reconstruction_dice", "kl"} == set(report["definitions"])
    assert report["settings"]["seed"] == 5 and report["num_images"] == 4 and report["model_sha256"]
    assert describe_evaluation(model, metrics=["kl"])["definitions"]["kl"].startswith("mean KL")
    # NaN (e.g. a Dice with no foreground anywhere) is written as null; never over an existing file
    out = write_json_report(tmp_path / "r.json", {"metrics": {"dice": float("nan")}})
    written = json.loads(Path(out).read_text())
    assert written == {"metrics": {"dice": None}} == json.loads(report_to_json({"metrics": {"dice": float("nan")}}))
    with pytest.raises(FileExistsError):
        write_json_report(tmp_path / "r.json", {})


# --- the bundle's metrics.json and `monai-gvae evaluate` on the same model and data

def _mnist_binary(root: Path) -> None:
    """IDX files of binary 28x28 images (0 or 255): every path maps them to exactly -1 and 1, bit for bit."""
    for prefix, n in (("train", 8), ("t10k", 6)):
        images = (np.random.RandomState(n).rand(n, 28, 28) > 0.6).astype(np.uint8) * 255
        for kind, arr in (("images", images), ("labels", np.arange(n, dtype=np.uint8) % 10)):
            data = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
            (root / f"{prefix}-{kind}-idx{arr.ndim}-ubyte.gz").write_bytes(gzip.compress(data))


@pytest.mark.filterwarnings("ignore:parsing config_file")
def test_bundle_metrics_json_and_cli_evaluate_agree(tmp_path, monkeypatch):
    from monai.bundle import ConfigParser, run

    monkeypatch.chdir(REPO)
    data_dir, out = tmp_path / "data", tmp_path / "run"
    data_dir.mkdir()
    _mnist_binary(data_dir)
    folder = "bundles/gvae_mnist/configs"
    common = {"meta_file": f"{folder}/metadata.json", "bundle_root": "bundles/gvae_mnist", "dataset_dir": str(data_dir),
              "batch_size": 4, "num_workers": 0, "device": "$torch.device('cpu')"}
    run("training", config_file=f"{folder}/train.yaml", max_epochs=1, base_channels=4, latent_size=8,
        output_dir=str(out), **common)

    # the bundle's evaluation, as a user runs it
    cmd = [sys.executable, "-m", "monai.bundle", "run", "evaluating",
           "--config_file", f"['{folder}/train.yaml','{folder}/evaluate.yaml']", "--output_dir", str(out)]
    for key, value in common.items():
        cmd += [f"--{key}", str(value)]
    proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bundle_report = json.loads((out / "metrics.json").read_text())

    # the same held-out images (the bundle's preprocessing: padded to 32x32), written as PNG for the command line
    parser = ConfigParser()
    parser.read_config([f"{folder}/train.yaml"])
    parser.update({"dataset_dir": str(data_dir), "image_size": 32})
    held_out = tmp_path / "held_out"
    held_out.mkdir()
    dataset = parser.get_parsed_content("validate#dataset")
    bundle_images = torch.stack([torch.as_tensor(item["image"]) for item in dataset])
    assert set(bundle_images.unique().tolist()) == {-1.0, 1.0}
    for i, x in enumerate(bundle_images[:, 0]):
        # as seen: the command line reads a PNG rows first, the order of the bundle's IDX reader
        Image.fromarray(((x.numpy() + 1) / 2 * 255).astype(np.uint8)).save(held_out / f"test_{i:03d}.png")
    cli_images = load_image_folder(held_out, spatial_dims=2, spatial_size=(32, 32), intensity_range=(0, 255)).images
    assert torch.equal(cli_images * 2 - 1, bundle_images)  # the same data, bit for bit
    cli_json = tmp_path / "eval.json"
    # `monai-gvae evaluate` in this process (the subprocess path is tested in test_cli.py), same batch size
    assert main(["evaluate", "--checkpoint", str(out / "model.pt"), "--data", str(held_out), "--batch-size", "4",
                 "--intensity-range", "0", "255", "--out", str(cli_json), "--no-progress"]) == 0
    cli_report = json.loads(cli_json.read_text())

    assert bundle_report["num_images"] == cli_report["num_images"] == 6
    assert set(bundle_report["metrics"]) == set(default_metrics(load_gvae(out / "model.pt")))
    assert bundle_report["metrics"] == cli_report["metrics"]  # identical values, not close ones
    for key in ("definitions", "settings", "model_sha256"):
        assert bundle_report[key] == cli_report[key], key


def test_prior_latents_live_in_networks_and_do_not_depend_on_batching():
    import monai_gvae.bundle

    assert monai_gvae.bundle.sample_latents is sample_latents  # the bundle layer re-exports the networks function
    whole = sample_latents(LATENT, 4, 0, 5)
    assert torch.equal(whole, torch.cat([sample_latents(LATENT, 4, 0, 2), sample_latents(LATENT, 4, 2, 3)]))
    assert sample_latents(LATENT, 4, 0, 0).shape == (0, LATENT)
