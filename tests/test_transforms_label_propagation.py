"""monai_gvae.transforms.label_propagation: label maps carried to unlabelled images by registration."""

import subprocess
import sys

import pytest
import torch

from monai_gvae.transforms import (class_dice, fuse_label_maps, implausible_class_areas, propagate_label_map,
                                   register_label_map)


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
    with pytest.raises(ValueError, match="class indices"):
        register_label_map(image, image, label.float() * 0.5)  # a soft map, not classes


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
    # return_image: the same choice, with the chosen atlas's warped image (the other pair half of registered synthesis)
    label_again, fit_again, warped = propagate_label_map(image, atlases, return_image=True)
    assert torch.equal(label_again, label) and fit_again == fit
    assert torch.equal(warped, register_label_map(image, near, near_label)[1])
    with pytest.raises(ValueError, match="at least one labelled atlas"):
        propagate_label_map(image, [])


def test_fuse_label_maps_gives_the_registered_class_its_margin():
    # three pixels, three classes: the segmenter sure of class 0, unsure between 0 and 2, unsure between 1 and 0
    probabilities = torch.tensor([[0.9, 0.5, 0.35], [0.05, 0.1, 0.45], [0.05, 0.4, 0.2]])[:, None, :]  # (C, 1, 3)
    registered = torch.tensor([[[2, 2, 0]]])
    assert fuse_label_maps(probabilities, registered).tolist() == [[[0, 2, 0]]]  # margins 0.85, 0.1, 0.1 vs 0.5
    assert fuse_label_maps(probabilities, registered, atlas_weight=0.0).tolist() == [[[0, 0, 1]]]  # the argmax
    assert fuse_label_maps(probabilities, registered, atlas_weight=1.0).tolist() == [[[2, 2, 0]]]  # the registration
    # 3D: (C, D, H, W) and (1, D, H, W)
    probabilities_3d = torch.softmax(torch.randn(4, 3, 5, 6), 0)
    registered_3d = torch.randint(0, 4, (1, 3, 5, 6))
    fused = fuse_label_maps(probabilities_3d, registered_3d)
    assert fused.shape == (1, 3, 5, 6) and fused.dtype == torch.int64
    sure = probabilities_3d.amax(0, keepdim=True) - probabilities_3d.gather(0, registered_3d) >= 0.5
    assert torch.equal(fused[sure], probabilities_3d.argmax(0, keepdim=True)[sure])
    assert torch.equal(fused[~sure], registered_3d[~sure])


def test_fuse_label_maps_names_bad_inputs():
    probabilities = torch.softmax(torch.randn(3, 4, 4), 0)
    label = torch.zeros(1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="spatial shape"):
        fuse_label_maps(probabilities, label[:, :2])
    with pytest.raises(ValueError, match="a softmax, not logits"):
        fuse_label_maps(torch.randn(3, 4, 4) * 5, label)
    with pytest.raises(ValueError, match="NaN"):
        fuse_label_maps(torch.full((3, 4, 4), float("nan")), label)
    with pytest.raises(ValueError, match=r"classes outside \[0, 2\]"):
        fuse_label_maps(probabilities, label + 3)
    with pytest.raises(ValueError, match="integer class indices"):
        fuse_label_maps(probabilities, label.float() + 0.5)
    with pytest.raises(ValueError, match="atlas_weight"):
        fuse_label_maps(probabilities, label, atlas_weight=-0.1)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        fuse_label_maps(probabilities[0], label)


def disc_series(radii, size=48, label_value=1):
    """Label maps of a disc whose radius follows ``radii`` (one map per level)."""
    grid = torch.stack(torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")).float()
    distance = ((grid - size / 2) ** 2).sum(0).sqrt()
    return [(distance <= r).long()[None] * label_value for r in radii]


def test_implausible_class_areas_flags_a_map_that_lost_or_invented_a_structure():
    maps = disc_series([12, 12.5, 13, 13.5, 14, 14.5, 15])  # about 450-700 px, smooth along the axis
    levels = list(range(7))
    assert implausible_class_areas(maps, levels, 3) == [False] * 7
    lost = list(maps)
    lost[3] = torch.zeros_like(maps[3])  # the registration dropped the structure on one slice
    assert implausible_class_areas(lost, levels, 3) == [False, False, False, True, False, False, False]
    invented = list(maps)
    invented[5] = maps[5].clone()
    invented[5][0, :12, :12] = 2  # 144 px of a class no neighbour holds
    assert implausible_class_areas(invented, levels, 3) == [False] * 5 + [True, False]
    # neighbours are the maps within the window, of the same group only: alone in its group, a map is not judged
    assert implausible_class_areas(lost, [0, 1, 2, 30, 4, 5, 6], 3) == [False] * 7
    assert implausible_class_areas(lost, levels, 3, groups=list("aaabbbb"))[3]
    assert implausible_class_areas(lost, levels, 3, groups=list("aaabccc")) == [False] * 7
    # judged by at least 3 neighbours: the median of two is their mean, which the lost map would drag down
    assert implausible_class_areas(lost[2:5], [2, 3, 4], 3) == [False] * 3
    assert implausible_class_areas(lost[2:5], [2, 3, 4], 3, min_neighbours=2)[2]  # a healthy map flagged
    # a small structure's change below min_pixels is not judged; above it, it is
    small = disc_series([3, 3, 3, 3, 0, 3, 3])  # 29 px gone on level 4
    assert not any(implausible_class_areas(small, levels, 2))
    assert implausible_class_areas(small, levels, 2, min_pixels=10)[4]


def test_implausible_class_areas_names_bad_inputs():
    maps = disc_series([5, 5, 5])
    with pytest.raises(ValueError, match="at least one"):
        implausible_class_areas([], [], 2)
    with pytest.raises(ValueError, match="one length"):
        implausible_class_areas(maps, [0, 1], 2)
    with pytest.raises(ValueError, match="window"):
        implausible_class_areas(maps, [0, 1, 2], 2, window=0)
    with pytest.raises(ValueError, match="min_neighbours"):
        implausible_class_areas(maps, [0, 1, 2], 2, min_neighbours=0)
    with pytest.raises(ValueError, match="one shape"):
        implausible_class_areas(maps[:2] + disc_series([5], size=32), [0, 1, 2], 2)
    with pytest.raises(ValueError, match="outside"):
        implausible_class_areas(maps, [0, 1, 2], 1)


def test_the_package_imports_without_simpleitk_and_registration_names_it():
    # SimpleITK is imported when registration first runs: the engine and bundles run where it is not installed
    code = ("import sys; sys.modules['SimpleITK'] = None\n"
            "import monai_gvae.transforms as t, monai_gvae.engines, monai_gvae.benchmarks.fewlabels, torch\n"
            "x = torch.rand(1, 16, 16)\n"
            "try:\n"
            "    t.register_label_map(x, x, (x > 0.5).float())\n"
            "except Exception as e:\n"
            "    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("OptionalImportError") and "SimpleITK" in out.stdout
