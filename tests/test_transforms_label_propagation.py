"""monai_gvae.transforms.label_propagation: label maps carried to unlabelled images by registration."""

import pytest
import torch

from monai_gvae.transforms import class_dice, propagate_label_map, register_label_map


def blobs(shape, centres, radius):
    """A smooth image (one Gaussian blob per centre, brighter for later ones) and the class map of the blobs."""
    grid = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in shape], indexing="ij"))
    image = torch.zeros(shape)
    label = torch.zeros(shape, dtype=torch.long)
    for c, centre in enumerate(centres, start=1):
        distance = ((grid - torch.tensor(centre, dtype=torch.float32).reshape(-1, *[1] * len(shape))) ** 2).sum(0)
        image += (0.3 + 0.2 * c) * torch.exp(-distance / (2 * radius ** 2))
        label[distance <= radius ** 2] = c
    return image[None], label[None]


def mean_dice(pred, truth, num_classes):
    return float(class_dice(pred[None], truth[None], num_classes).nanmean())


def test_register_label_map_carries_the_label_along_a_shift_2d():
    image, truth = blobs((48, 48), [(18, 20), (30, 30)], 6)
    atlas, atlas_label = blobs((48, 48), [(22, 16), (34, 26)], 6)  # the same anatomy, shifted by (4, -4)
    assert mean_dice(atlas_label, truth, 3) < 0.6  # unregistered, the label is off
    label, warped = register_label_map(image, atlas, atlas_label)
    assert label.shape == (1, 48, 48) and label.dtype == torch.int64 and warped.shape == (1, 48, 48)
    assert mean_dice(label, truth, 3) > 0.9
    assert (warped - image).abs().mean() < (atlas - image).abs().mean() / 3  # the image moved with it


def test_register_label_map_in_3d():
    image, truth = blobs((20, 20, 20), [(9, 9, 10), (11, 13, 9)], 3)
    atlas, atlas_label = blobs((20, 20, 20), [(11, 8, 11), (13, 12, 10)], 3)
    label, warped = register_label_map(image, atlas, atlas_label, demons_iterations=50)
    assert label.shape == (1, 20, 20, 20) and warped.shape == (1, 20, 20, 20)
    assert mean_dice(label, truth, 3) > max(0.8, mean_dice(atlas_label, truth, 3) + 0.2)


def test_register_label_map_names_bad_inputs():
    image, label = blobs((16, 16), [(8, 8)], 3)
    with pytest.raises(ValueError, match="one shape"):
        register_label_map(image, image[:, :8], label[:, :8])
    with pytest.raises(ValueError, match="NaN"):
        register_label_map(torch.full_like(image, float("nan")), image, label)
    with pytest.raises(ValueError, match="atlas_image must be channel-first with one channel"):
        register_label_map(image, image.repeat(2, 1, 1), label)


def test_propagate_label_map_keeps_the_best_fitting_atlas():
    image, truth = blobs((48, 48), [(18, 20), (30, 30)], 6)
    near, near_label = blobs((48, 48), [(21, 18), (33, 28)], 6)
    other, other_label = blobs((48, 48), [(24, 24)], 12)  # another anatomy: one large blob
    atlases = [{"image": other, "label": other_label * 2}, {"image": near, "label": near_label}]
    label, fit = propagate_label_map(image, atlases)
    assert torch.equal(label, register_label_map(image, near, near_label)[0])
    _, other_warped = register_label_map(image, other, other_label)
    assert -1 <= fit <= 1 and fit > float(torch.corrcoef(torch.stack([other_warped.flatten(), image.flatten()]))[0, 1])
    assert mean_dice(label, truth, 3) > 0.9
    with pytest.raises(ValueError, match="at least one labelled atlas"):
        propagate_label_map(image, [])
