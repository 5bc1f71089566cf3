"""Model I/O in one module (monai_gvae.networks.io) and the helpers moved to the lowest layer that needs them."""

from __future__ import annotations

import copy
import hashlib
import os

import numpy as np
import pytest
import torch
from monai.transforms import Resize
from PIL import Image

from monai_gvae.data import brain_holdout_mask
from monai_gvae.data.utils import holdout_mask, resize_tensor, split_indices
from monai_gvae.data.writers import SYNTHETIC_DESCRIPTION, synthetic_png_info
from monai_gvae.networks import (
    BUNDLE_MODEL_FILE,
    GVAE,
    bundle_model_path,
    load_gvae,
    model_checksum,
    resolve_gvae,
)
from monai_gvae.networks import io


def tiny_gvae() -> GVAE:
    return GVAE(spatial_dims=2, in_channels=1, image_size=16, latent_size=4, architecture="conv", base_channels=4,
                max_channels=8)


def test_bundle_model_path_and_loading(tmp_path):
    assert BUNDLE_MODEL_FILE == os.path.join("models", "model.pt")
    with pytest.raises(FileNotFoundError, match=r"no trained model in bundle .*models/model\.pt does not exist"):
        bundle_model_path(tmp_path)
    model = tiny_gvae()
    (tmp_path / "models").mkdir()
    torch.save({"gvae": model.state_dict()}, tmp_path / "models" / "model.pt")
    path = bundle_model_path(tmp_path)
    assert path == os.path.join(str(tmp_path), "models", "model.pt")
    loaded = load_gvae(path)
    assert loaded.source == path and not loaded.training
    # a loaded model's identity is its file's sha256; the bundle folder resolves to the same model
    assert model_checksum(loaded) == hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert model_checksum(resolve_gvae(str(tmp_path))) == model_checksum(loaded)
    assert io.load_gvae is load_gvae  # one implementation, importable from monai_gvae.networks


def test_model_checksum_of_in_memory_models():
    torch.manual_seed(0)
    model = tiny_gvae()
    same = copy.deepcopy(model)
    assert model_checksum(model) == model_checksum(same) and len(model_checksum(model)) == 64
    with torch.no_grad():
        same.encoder.trunk.body[0].conv.weight[0, 0, 0, 0] += 1.0
    assert model_checksum(model) != model_checksum(same)
    # resolve_gvae keeps the caller's model: same device -> shared, and it carries its identity
    assert resolve_gvae(model) is model
    with pytest.raises(TypeError, match="GVAE"):
        resolve_gvae(torch.nn.Linear(2, 2))


def test_holdout_mask_is_the_rule_of_every_split():
    for n, fraction in ((8, 0.25), (61, 0.25), (10, 0.0), (7, 0.5)):
        assert np.array_equal(holdout_mask(n, fraction), brain_holdout_mask(n, fraction))
        test = split_indices(n, "test", fraction)
        assert np.array_equal(np.flatnonzero(holdout_mask(n, fraction)), test)
    with pytest.raises(ValueError, match="holdout_fraction must be in"):
        holdout_mask(4, 1.0)


@pytest.mark.parametrize("dims", [2, 3])
def test_resize_tensor_equals_monai_resize(dims):
    torch.manual_seed(0)
    x = torch.rand(2, *(12,) * dims)
    label = torch.randint(0, 4, (1, *(12,) * dims))
    linear = "bilinear" if dims == 2 else "trilinear"
    for size, mode in (((8,) * dims, "area"), ((20,) * dims, linear), ((7,) * dims, "nearest")):
        expected = Resize(spatial_size=size, mode=mode)(x).as_tensor()
        assert torch.equal(resize_tensor(x, size, mode), expected), mode
    out = resize_tensor(label, (20,) * dims, "nearest")
    assert out.dtype == torch.int64 and set(out.unique().tolist()) <= {0, 1, 2, 3}


def test_synthetic_png_info_marks_files(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path, pnginfo=synthetic_png_info({"Kind": "image", "Comment": None}))
    text = Image.open(path).text
    assert text["Synthetic"] == "YES" and text["Kind"] == "image" and "Comment" not in text
    assert text["Description"].startswith(SYNTHETIC_DESCRIPTION.split("{")[0])
    assert list(text)[:3] == ["Synthetic", "Description", "Software"]
