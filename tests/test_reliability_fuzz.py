"""Property-based tests (hypothesis): over shapes, dtypes, channel counts, label encodings and metadata, the pack/unpack
transforms and the brain loader accept every valid input with the documented output, and reject every invalid one
with the documented ValueError/TypeError: never silent garbage, never a refusal of good data.

Each test decides independently of the code under test whether a generated input is valid, from the rules the
docstrings and docs/reliability.md state (``*_problems`` below): a valid input must give the documented output, an
invalid one must raise the exception type and message of one of its problems."""

from __future__ import annotations

import os
import re
import tempfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
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
    # the image channels: intensity_range mapped linearly to [-1, 1] (values within the tolerance kept, not clipped)
    low, high = intensity_range
    expected = (_values(image) - low) / (high - low) * 2.0 - 1.0
    assert np.allclose(out[:c].numpy(), expected, atol=1e-5)
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


def _values(x: np.ndarray) -> np.ndarray:
    """Array values as float64 (booleans as 0/1), for range checks independent of the dtype."""
    return np.asarray(x).astype(np.float64)


def pack_problems(image, label, num_classes, encoding, intensity_range) -> list[tuple[type, str]]:
    """What is wrong with a packing input, by the rules of ``pack_image_label``'s docstring and docs/reliability.md
    ("Corrupt input"): ``(exception type, message pattern)`` per problem; empty for a valid input."""
    problems: list[tuple[type, str]] = []
    image = np.asarray(image)
    if np.iscomplexobj(image):
        return [(TypeError, "image must be real-valued")]
    low, high = intensity_range
    range_ok = bool(np.isfinite(low) and np.isfinite(high) and high > low)
    if not range_ok:
        problems.append((ValueError, "intensity_range must be finite"))
    shape_ok = image.ndim >= 2 and image.size > 0
    if image.ndim < 2:
        problems.append((ValueError, "must be channel-first"))
    elif image.size == 0:
        problems.append((ValueError, "empty axis"))
    if shape_ok:
        values = _values(image)
        if not np.isfinite(values).all():
            problems.append((ValueError, "image contains NaN or Inf"))
        elif range_ok:
            margin = RANGE_TOLERANCE * (high - low)
            if values.min() < low - margin or values.max() > high + margin:
                problems.append((ValueError, "outside intensity_range"))
    if label is None:  # image-only packing: num_classes and the encoding are not used
        return problems
    label = np.asarray(label)
    if not shape_ok or label.shape != (1, *image.shape[1:]):
        problems.append((ValueError, "one-channel index map"))
    classes_ok = isinstance(num_classes, int) and not isinstance(num_classes, bool) and num_classes >= 2
    if not classes_ok:
        problems.append((ValueError, "num_classes must be an integer >= 2"))
    if encoding not in ("onehot", "foreground"):
        problems.append((ValueError, "label_channels must be 'onehot' or 'foreground'"))
    elif encoding == "foreground" and num_classes != 2:
        problems.append((ValueError, "needs num_classes=2"))
    values = _values(label)
    if label.size and np.issubdtype(label.dtype, np.floating) and not np.isfinite(values).all():
        problems.append((ValueError, "label contains NaN or Inf"))
    elif label.size and np.issubdtype(label.dtype, np.floating) and not np.array_equal(values, np.round(values)):
        problems.append((ValueError, "non-integer values"))
    elif label.size and classes_ok and (values.min() < 0 or values.max() >= num_classes):
        problems.append((ValueError, "class indices in"))
    return problems


def assert_documented_error(error: Exception, problems: list[tuple[type, str]]) -> None:
    """``error`` is the exception of one of the input's ``problems``: its type, and its message."""
    assert problems, f"a valid input was refused: {type(error).__name__}: {error}"
    assert any(isinstance(error, kind) and re.search(pattern, str(error)) for kind, pattern in problems), (
        f"{type(error).__name__}: {error!s} is none of the documented errors {problems}"
    )


# Regression examples: the two bugs the search found (docs/reliability.md, "Property-based tests"), pinned so that
# every run checks them whatever hypothesis draws.
BOOL_LABEL = (np.full((1, 2, 3), 0.5, np.float32), np.array([[[True, False, True], [False, False, True]]]), 2,
              "onehot", (0.0, 1.0), False)  # used to crash with NotImplementedError
BOOL_IMAGE_0_255 = (np.array([[[True, False], [False, True]]]), None, None, "onehot", (0.0, 255.0), False)
BOOL_IMAGE_10_11 = (np.array([[[True, False], [False, True]]]), None, None, "onehot", (10.0, 11.0), True)
# (a boolean image used to be packed far outside [-1, 1] for a range other than [0, 1]: now 0/1 in [0, 255] packs to
# -1 and -1 + 2/255, and 0/1 in [10, 11] is refused as out of range)


@FUZZ
@given(image_and_label())
@example(BOOL_LABEL)
@example(BOOL_IMAGE_0_255)
@example(BOOL_IMAGE_10_11)
def test_pack_image_label_valid_or_clear_error(case):
    image, label, num_classes, encoding, intensity_range, as_meta = case
    img_in = MetaTensor(torch.as_tensor(image)) if as_meta and image.dtype != np.complex64 else image
    problems = pack_problems(image, label, num_classes, encoding, intensity_range)
    try:
        out = PackImageLabel(num_classes, encoding, intensity_range)(img_in, label)
    except (ValueError, TypeError) as e:
        assert_documented_error(e, problems)
        return
    assert not problems, f"invalid input accepted: {problems}"
    _check_packed(out, image, label, num_classes, encoding, intensity_range)
    if isinstance(img_in, MetaTensor):  # "a MetaTensor keeps the image's metadata"
        assert isinstance(out, MetaTensor)


def test_pack_regressions_found_by_the_search():
    """The fixed bugs, by value: a boolean label packs like an integer one; a boolean image is 0/1 in its range."""
    image, label, num_classes, encoding, intensity_range, _ = BOOL_LABEL
    packed = PackImageLabel(num_classes, encoding, intensity_range)(image, label)
    assert torch.equal(packed, PackImageLabel(2)(image, label.astype(np.int64)))
    assert torch.equal(packed[1:].argmax(0), torch.as_tensor(label[0]).long())
    packed = PackImageLabel(None, intensity_range=(0.0, 255.0))(BOOL_IMAGE_0_255[0])
    assert torch.allclose(packed, torch.tensor([[[-1.0 + 2.0 / 255.0, -1.0], [-1.0, -1.0 + 2.0 / 255.0]]]))
    with pytest.raises(ValueError, match="outside intensity_range"):
        PackImageLabel(None, intensity_range=(10.0, 11.0))(BOOL_IMAGE_10_11[0])


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


def unpack_problems(sample: np.ndarray, image_channels, num_classes) -> list[tuple[type, str]]:
    """What is wrong with an unpacking input, by ``unpack_image_label``'s docstring; empty for a valid input."""
    if np.iscomplexobj(sample):
        return [(TypeError, "sample must be real-valued")]
    problems: list[tuple[type, str]] = []
    if sample.ndim < 4:
        return [(ValueError, "2 or 3 spatial dims")]
    c = sample.shape[1]
    channels_ok = isinstance(image_channels, int) and 1 <= image_channels <= c
    if not channels_ok:
        problems.append((ValueError, "image_channels must be in"))
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 2):
        problems.append((ValueError, r"num_classes must be an integer >= 2 or None"))
    if not np.isfinite(_values(sample)).all():
        problems.append((ValueError, "NaN or Inf"))
    if channels_ok and num_classes is not None:
        label_channels = c - image_channels
        if label_channels == 0:
            problems.append((ValueError, "no label channels"))
        elif label_channels == 1 and num_classes != 2:
            problems.append((ValueError, "1 label channel"))
        elif label_channels > 1 and label_channels != num_classes:
            problems.append((ValueError, "label channels but num_classes"))
    return problems


@FUZZ
@given(samples(), st.data())
def test_unpack_image_label_valid_or_clear_error(sample, data):
    channels = sample.shape[1] if sample.ndim > 1 else 1
    image_channels = data.draw(mostly(st.integers(1, channels), st.integers(-1, 5)), label="image_channels")
    label_channels = sample.shape[1] - image_channels if sample.ndim > 1 else 0
    fitting = None if label_channels <= 0 else (2 if label_channels == 1 else label_channels)
    num_classes = data.draw(mostly(st.sampled_from([None, fitting]), st.sampled_from([None, 1, 2, 3, 4])), label="num_classes")
    problems = unpack_problems(sample, image_channels, num_classes)
    try:
        image, label = unpack_image_label(torch.as_tensor(sample), image_channels, num_classes)
    except (ValueError, TypeError) as e:
        assert_documented_error(e, problems)
        return
    assert not problems, f"invalid input accepted: {problems}"
    n, c = sample.shape[:2]
    # the image channels mapped from [-1, 1] (clipped) to the default [0, 1]
    expected = (np.clip(_values(sample[:, :image_channels]), -1, 1) + 1) / 2
    assert image.dtype == torch.float32 and image.shape == expected.shape
    assert np.allclose(image.numpy(), expected, atol=1e-6)
    if c == image_channels:
        assert label is None
        return
    logits = _values(sample[:, image_channels:])
    # one label channel: foreground where it is above 0; several: the first channel of the largest value
    decoded = (logits > 0).astype(np.int64) if c - image_channels == 1 else logits.argmax(1)[:, None]
    assert label.dtype == torch.int64 and np.array_equal(label.numpy(), decoded)


@st.composite
def brain_arrays(draw):
    """The arrays of a brain ``.npz``: mostly well-formed slices, each part sometimes not."""
    shape = draw(mostly(hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=4),
                        hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=4)))
    image_dtype = draw(mostly(st.sampled_from([np.uint8, np.float32, np.float64, np.int16, np.float16]),
                              st.sampled_from([np.bool_, np.complex64, np.int64])))
    if image_dtype in (np.float32, np.float64, np.float16):  # any float dtype in [0, 1] is valid
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


def brain_problems(arrays: dict) -> list[tuple[type, str]]:
    """What is wrong with a brain ``.npz``'s arrays, by ``load_brain_slices``'s docstring and docs/reliability.md
    ("Corrupt input"); empty for a valid file."""
    image, label = arrays["image"], arrays["label"]
    problems: list[tuple[type, str]] = []
    for key, array in (("image", image), ("label", label)):
        if array.ndim != 3:
            problems.append((ValueError, f"'{key}' must have 3 dims"))
    if image.shape != label.shape:
        problems.append((ValueError, "differ"))
    if problems:
        return problems
    if image.size == 0:
        return [(ValueError, "empty arrays")]
    if image.dtype == np.bool_ or np.iscomplexobj(image):
        problems.append((ValueError, "'image' must be uint8"))
    elif np.issubdtype(image.dtype, np.floating):
        values = _values(image)
        if not np.isfinite(values).all():
            problems.append((ValueError, "NaN or Inf"))
        elif values.min() < 0 or values.max() > 1:
            problems.append((ValueError, r"must lie in \[0, 1\]"))
    elif image.min() < 0 or image.max() > 255:
        problems.append((ValueError, r"must lie in 0\.\.255"))
    if not (np.issubdtype(label.dtype, np.integer) or label.dtype == np.bool_):
        problems.append((ValueError, "integer class indices"))
    elif label.min() < 0:
        problems.append((ValueError, "negative class indices"))
    index = arrays.get("slice_index")
    if index is not None and (index.shape != image.shape[:1] or not np.issubdtype(index.dtype, np.integer)):
        problems.append((ValueError, "'slice_index' must hold"))
    return problems


@FUZZ
@given(brain_arrays())
def test_brain_loader_valid_or_clear_error(arrays):
    image, label = arrays["image"], arrays["label"]
    problems = brain_problems(arrays)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "brain.npz")
        np.savez(path, **arrays)
        try:
            items = load_brain_slices("all", data_file=path)
        except ValueError as e:
            assert path in str(e)  # the error names the file
            assert_documented_error(e, problems)
            return
    assert not problems, f"invalid file accepted: {problems}"
    assert len(items) == image.shape[0]
    for i, item in enumerate(items):
        assert item["image"].dtype == np.float32 and item["image"].shape == (1, *image.shape[1:])
        scale = 255.0 if np.issubdtype(image.dtype, np.integer) else 1.0
        assert np.allclose(item["image"][0], image[i] / scale, atol=1e-6)
        assert item["label"].dtype == np.int64 and np.array_equal(item["label"][0], label[i].astype(np.int64))
        expected_index = int(arrays["slice_index"][i]) if "slice_index" in arrays else i
        assert isinstance(item["slice_index"], int) and item["slice_index"] == expected_index
