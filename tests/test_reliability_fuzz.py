"""Property-based tests (hypothesis): over shapes, dtypes, channel counts, label encodings and metadata, the pack/unpack
transforms and the brain loader give a valid output or a clear ValueError/TypeError, never silent garbage."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from monai.data import MetaTensor

from monai_gvae.data import load_brain_slices
from monai_gvae.transforms import (
    PackImageLabel,
    PackImageLabeld,
    unpack_image_label,
)
from monai_gvae.transforms.utils import RANGE_TOLERANCE

FUZZ = settings(max_examples=int(os.environ.get("GVAE_FUZZ_EXAMPLES", "40")), deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

def mostly(valid, invalid):
    """Valid values about nine times in ten (so that whole inputs are valid often enough to check the outputs);
    hypothesis shrinks towards the valid branch."""
    return st.integers(0, 9).flatmap(lambda i: valid if i < 9 else invalid)


@st.composite
def in_range(draw, dtype, shape, low, high):
    """An array of ``dtype`` whose values lie in [low, high] (integers rounded, booleans thresholded)."""
    u = draw(hnp.arrays(np.float64, shape, elements=st.floats(0, 1)))
    values = low + u * (high - low)
    if dtype == np.bool_:
        return u > 0.5
    if np.issubdtype(dtype, np.integer):
        return np.clip(np.round(values), np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)
    return values.astype(dtype)


@st.composite
def image_and_label(draw):
    """An image (C, *spatial), a label and packing options: mostly well-formed, each part sometimes not (dtype, range,
    shape, values, options)."""
    spatial = tuple(draw(mostly(st.lists(st.integers(1, 5), min_size=1, max_size=3),
                                st.lists(st.integers(0, 3), min_size=0, max_size=3))))
    channels = draw(mostly(st.integers(1, 3), st.just(0)))
    shape = (channels, *spatial)
    intensity_range = draw(mostly(st.sampled_from([(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0), (10.0, 11.0)]),
                                  st.sampled_from([(0.0, 0.0), (1.0, 0.0), (0.0, float("inf")), (float("nan"), 1.0)])))
    dtype = draw(mostly(st.sampled_from([np.float32, np.float64, np.float16, np.uint8, np.int16, np.bool_]),
                        st.sampled_from([np.complex64, np.int64, np.float32])))
    low, high = intensity_range
    if np.isfinite(low) and np.isfinite(high) and high > low and draw(st.integers(0, 4)):
        low_t = max(low, float(np.iinfo(dtype).min)) if np.issubdtype(dtype, np.integer) else low
        high_t = min(high, float(np.iinfo(dtype).max)) if np.issubdtype(dtype, np.integer) else high
        image = draw(in_range(dtype, shape, low_t, max(high_t, low_t)))
    else:
        image = draw(hnp.arrays(dtype, shape))  # anything, NaN and out-of-range values included
    num_classes = draw(mostly(st.integers(2, 5), st.sampled_from([None, 0, 1, 2.5])))
    encoding = "onehot"
    if num_classes == 2 and draw(st.booleans()):
        encoding = "foreground"
    encoding = draw(mostly(st.just(encoding), st.sampled_from(["hot", "foreground"])))
    label = None
    if draw(mostly(st.just(True), st.just(False))):
        label_shape = draw(mostly(st.just((1, *spatial)), st.sampled_from([(2, *spatial), spatial, (1, *spatial, 1)])))
        label_dtype = draw(st.sampled_from([np.int64, np.uint8, np.float32, np.int8] + ([np.bool_] if num_classes == 2 else [])))
        top = int(num_classes) - 1 if isinstance(num_classes, int) and num_classes >= 2 else 1
        label = draw(mostly(in_range(label_dtype, label_shape, 0, top), hnp.arrays(label_dtype, label_shape)))
    as_meta = draw(st.booleans())
    return image, label, num_classes, encoding, intensity_range, as_meta


def _check_packed(out, image, label, num_classes, encoding, intensity_range):
    """What a valid packed output must satisfy."""
    image = np.asarray(image)
    c = image.shape[0]
    n_label = 0 if label is None else (num_classes if encoding == "onehot" else 1)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert tuple(out.shape) == (c + n_label, *image.shape[1:])
    assert torch.isfinite(out).all()
    tol = 2.0 * RANGE_TOLERANCE + 1e-3
    assert out[:c].min() >= -1 - tol and out[:c].max() <= 1 + tol
    if label is not None:
        channels = out[c:]
        assert set(torch.unique(channels).tolist()) <= {-1.0, 1.0}
        index = torch.as_tensor(np.asarray(label)).long()
        if encoding == "onehot":
            assert torch.equal((channels > 0).sum(0), torch.ones_like(channels[0], dtype=torch.long))
            decoded = channels.argmax(0, keepdim=True)
        else:
            decoded = (channels > 0).long()
        assert torch.equal(decoded, index)  # the label survives packing exactly
        if out.ndim < 3:  # unpacking wants the models' 2 or 3 spatial dimensions
            with pytest.raises(ValueError, match="spatial dims"):
                unpack_image_label(out[None], c, num_classes, intensity_range)
            return
        img, lab = unpack_image_label(out[None], c, num_classes, intensity_range)
        assert torch.equal(lab[0], index)
        expected = torch.as_tensor(image.astype(np.float64)).clamp(*intensity_range).float()
        assert torch.allclose(img[0], expected, atol=1e-4 * (intensity_range[1] - intensity_range[0]) + 1e-3)


@FUZZ
@given(image_and_label())
def test_pack_image_label_valid_or_clear_error(case):
    image, label, num_classes, encoding, intensity_range, as_meta = case
    img_in = MetaTensor(torch.as_tensor(image)) if as_meta and image.dtype != np.complex64 else image
    try:
        out = PackImageLabel(num_classes, encoding, intensity_range)(img_in, label)
    except (ValueError, TypeError) as e:
        assert str(e)  # a message, not a bare exception
        return
    _check_packed(out, image, label, num_classes, encoding, intensity_range)


@FUZZ
@given(
    st.dictionaries(st.sampled_from(["meta", "name", "spacing", "image_meta_dict", "id"]),
                    st.one_of(st.integers(), st.text(max_size=5), st.lists(st.floats(allow_nan=False), max_size=3), st.none())),
    st.integers(0, 3), st.sampled_from([(4, 4), (3, 5, 2)]), st.booleans(), st.sampled_from(["image", "packed"]),
)
def test_pack_image_labeld_keeps_metadata_and_other_keys(extra, classes_minus_one, spatial, with_affine, output_key):
    num_classes = classes_minus_one + 1
    affine = torch.diag(torch.tensor([2.0, 3.0, 4.0, 1.0]))
    image = MetaTensor(torch.rand(1, *spatial), affine=affine) if with_affine else torch.rand(1, *spatial)
    label = torch.randint(0, num_classes, (1, *spatial))
    item = {**extra, "image": image, "label": label}
    transform = PackImageLabeld(num_classes=num_classes, output_key=output_key, spatial_dims=len(spatial))
    try:
        out = transform(item)
    except ValueError as e:
        assert num_classes < 2 and "num_classes" in str(e)
        return
    assert num_classes >= 2
    assert out[output_key].shape == (1 + num_classes, *spatial)
    for key, value in extra.items():
        assert out[key] is value  # other entries untouched
    assert out["label"] is label and item["image"] is image  # the input dict is not modified
    if with_affine:
        assert isinstance(out[output_key], MetaTensor) and torch.equal(out[output_key].affine, affine.double())
    with pytest.raises(KeyError, match="label"):
        PackImageLabeld(num_classes=2)({"image": image})


@st.composite
def samples(draw):
    """Generated batches (N, C, *spatial): mostly float in about [-1, 1], sometimes NaN/Inf, complex, or too few
    dimensions."""
    shape = draw(mostly(hnp.array_shapes(min_dims=4, max_dims=5, min_side=1, max_side=4),
                        hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)))
    dtype = draw(mostly(st.sampled_from([np.float32, np.float64, np.float16]), st.sampled_from([np.int64, np.complex64])))
    if dtype == np.int64:
        return draw(hnp.arrays(dtype, shape, elements=st.integers(-3, 3)))
    sample = draw(hnp.arrays(dtype, shape, elements=st.floats(-1.5, 1.5, width=16)))
    if draw(mostly(st.just(False), st.just(True))):  # a diverged model: some NaN/Inf
        flat = sample.reshape(-1)
        flat[draw(st.integers(0, flat.size - 1))] = draw(st.sampled_from([float("nan"), float("inf")]))
    return sample


@FUZZ
@given(samples(), st.data())
def test_unpack_image_label_valid_or_clear_error(sample, data):
    channels = sample.shape[1] if sample.ndim > 1 else 1
    image_channels = data.draw(mostly(st.integers(1, channels), st.integers(-1, 5)), label="image_channels")
    label_channels = sample.shape[1] - image_channels if sample.ndim > 1 else 0
    fitting = None if label_channels <= 0 else (2 if label_channels == 1 else label_channels)
    num_classes = data.draw(mostly(st.sampled_from([None, fitting]), st.sampled_from([None, 1, 2, 3, 4])), label="num_classes")
    try:
        image, label = unpack_image_label(torch.as_tensor(sample), image_channels, num_classes)
    except (ValueError, TypeError) as e:
        assert str(e)
        return
    n, c = sample.shape[:2]
    assert sample.ndim >= 4 and 1 <= image_channels <= c and np.isfinite(sample).all()
    assert image.shape == (n, image_channels, *sample.shape[2:]) and image.min() >= 0 and image.max() <= 1
    if label is None:
        assert c == image_channels and num_classes is None
    else:
        assert label.dtype == torch.int64 and label.shape == (n, 1, *sample.shape[2:])
        classes = 2 if c - image_channels == 1 else c - image_channels
        assert num_classes in (None, classes) and label.min() >= 0 and label.max() < classes


@st.composite
def brain_arrays(draw):
    """The arrays of a brain ``.npz``: mostly well-formed slices, each part sometimes not."""
    shape = draw(mostly(hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=4),
                        hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=4)))
    image_dtype = draw(mostly(st.sampled_from([np.uint8, np.float32, np.float64, np.int16]),
                              st.sampled_from([np.bool_, np.complex64, np.int64, np.float16])))
    if image_dtype in (np.float32, np.float64):
        image = draw(mostly(in_range(image_dtype, shape, 0.0, 1.0), hnp.arrays(image_dtype, shape)))
    elif image_dtype == np.int16:
        image = draw(mostly(in_range(image_dtype, shape, 0, 255), hnp.arrays(image_dtype, shape)))
    else:
        image = draw(hnp.arrays(image_dtype, shape))
    label_shape = draw(mostly(st.just(shape), hnp.array_shapes(min_dims=1, max_dims=4, max_side=4)))
    label_dtype = draw(mostly(st.sampled_from([np.uint8, np.int64]), st.sampled_from([np.float32, np.int8, np.bool_])))
    label = draw(mostly(in_range(label_dtype, label_shape, 0, 3), hnp.arrays(label_dtype, label_shape)))
    arrays = {"image": image, "label": label}
    n = shape[0] if shape else 0
    extra = draw(mostly(st.sampled_from([None, "match"]), st.sampled_from(["short", "float"])))
    if extra == "match":
        arrays["slice_index"] = np.arange(n) * 2 + 10
    elif extra == "short":
        arrays["slice_index"] = np.arange(max(n - 1, 0))
    elif extra == "float":
        arrays["slice_index"] = np.linspace(0, 1, n)
    return arrays


@FUZZ
@given(brain_arrays())
def test_brain_loader_valid_or_clear_error(arrays):
    image, label = arrays["image"], arrays["label"]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "brain.npz")
        np.savez(path, **arrays)
        try:
            items = load_brain_slices("all", data_file=path)
        except ValueError as e:
            assert path in str(e)
            return
    assert image.ndim == 3 and image.shape == label.shape and image.size > 0 and len(items) == image.shape[0]
    for i, item in enumerate(items):
        assert item["image"].dtype == np.float32 and item["image"].shape == (1, *image.shape[1:])
        assert np.isfinite(item["image"]).all() and item["image"].min() >= 0 and item["image"].max() <= 1
        scale = 255.0 if np.issubdtype(image.dtype, np.integer) else 1.0
        assert np.allclose(item["image"][0], image[i] / scale, atol=1e-6)
        assert item["label"].dtype == np.int64 and item["label"].min() >= 0
        assert np.array_equal(item["label"][0], label[i].astype(np.int64))
        assert isinstance(item["slice_index"], int)
