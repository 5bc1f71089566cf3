"""monai_gvae.data.brain_build: the numerics behind the embedded brain arrays (area resampling, majority-vote
labels, AAL class merging); tests/test_data_brain.py rebuilds the shipped arrays from the templates."""

import numpy as np
import pytest

from monai_gvae.data.brain_build import (
    CLASS_GROUPS,
    area_resize,
    area_weights,
    check_class_groups,
    crop_pad,
    label_resize,
    merge_labels,
    radiological,
    square_window,
    write_arrays,
)


def test_area_weights_average_exact_overlaps():
    w = area_weights(3, 2)  # output cells [0, 1.5) and [1.5, 3)
    np.testing.assert_allclose(w, [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])
    np.testing.assert_allclose(area_weights(4, 2), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    np.testing.assert_allclose(area_resize(np.arange(16.0).reshape(4, 4), (2, 2), (0, 1)), [[2.5, 4.5], [10.5, 12.5]])


def test_label_resize_is_a_majority_vote_with_ties_to_the_lower_class():
    label = np.array([[1, 1, 2, 2], [1, 3, 2, 2], [0, 0, 3, 3], [0, 3, 3, 1]])
    assert label_resize(label, (2, 2), (0, 1)).tolist() == [[1, 2], [0, 3]]
    assert label_resize(np.array([[1, 2], [1, 2]]), (1, 1), (0, 1)).tolist() == [[1]]  # a tie: the lower class


def test_windows_crops_and_orientation():
    assert square_window(2, 6, 8) == (0, 8) and square_window(0, 3, 5) == (-1, 4)
    arr = np.arange(9).reshape(3, 3)
    assert crop_pad(arr, [(-1, 2), (1, 4)]).tolist() == [[0, 0, 0], [1, 2, 0], [4, 5, 0]]
    ras = np.array([[1, 2], [3, 4]])  # x (right->left in RAS) by y (posterior->anterior)
    assert radiological(ras).tolist() == [[4, 2], [3, 1]]  # anterior row first, the patient's right on the left


def test_aal_regions_are_merged_into_four_classes():
    atlas = np.array([1, 37, 95, 0, 200, 71])
    brain = np.array([True, True, True, True, True, False])
    assert merge_labels(atlas, brain).tolist() == [1, 2, 3, 0, 0, 0]  # outside the brain: background
    assert set(CLASS_GROUPS[1]) | set(CLASS_GROUPS[2]) | set(CLASS_GROUPS[3]) == set(range(1, 117))
    names = {i: "Precentral_L" for i in range(1, 117)}
    with pytest.raises(ValueError, match="not expected in class deep_grey_matter"):
        check_class_groups(names)
    with pytest.raises(ValueError, match="expected AAL indices"):
        check_class_groups({1: "x"})


def test_missing_templates_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="ch2bet.nii.gz.*mricron-data"):
        write_arrays(tmp_path, tmp_path / "out")
