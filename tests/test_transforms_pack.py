import pytest
import torch

from monai_gvae.transforms import PackImageLabel, PackImageLabeld, pack_image_label, unpack_image_label, unpack_to_host


def test_pack_unpack_roundtrip_onehot():
    image = torch.rand(1, 8, 8)
    label = torch.randint(0, 4, (1, 8, 8))
    packed = PackImageLabel(num_classes=4)(image, label)
    assert packed.shape == (5, 8, 8)
    assert packed.min() >= -1 and packed.max() <= 1
    assert torch.equal(((packed[1:] + 1) / 2).sum(0), torch.ones(8, 8))  # one-hot channels
    img, lab = unpack_image_label(packed[None], image_channels=1, num_classes=4)
    assert torch.allclose(img[0], image, atol=1e-6)
    assert torch.equal(lab[0], label)


def test_pack_foreground_and_intensity_range():
    image = torch.tensor([[[0.0, 100.0], [50.0, 25.0]]])
    label = torch.tensor([[[0, 1], [1, 0]]])
    packed = pack_image_label(image, label, 2, label_channels="foreground", intensity_range=(0, 100))
    assert torch.allclose(packed[0], torch.tensor([[-1.0, 1.0], [0.0, -0.5]]))
    img, lab = unpack_image_label(packed[None], 1, 2, intensity_range=(0, 100))
    assert torch.allclose(img[0], image) and torch.equal(lab[0], label)


def test_pack_errors():
    with pytest.raises(ValueError, match="NaN"):
        pack_image_label(torch.full((1, 4, 4), float("nan")), None, None)
    with pytest.raises(ValueError, match="class indices"):
        pack_image_label(torch.rand(1, 4, 4), torch.full((1, 4, 4), 5), 4)
    with pytest.raises(ValueError, match="spatial shape"):
        pack_image_label(torch.rand(1, 4, 4), torch.zeros(1, 4, 5), 4)
    with pytest.raises(KeyError, match="label"):
        PackImageLabeld(num_classes=2)({"image": torch.rand(1, 4, 4)})
    d = PackImageLabeld(num_classes=2, output_key="gvae_input")({"image": torch.rand(1, 4, 4), "label": torch.zeros(1, 4, 4)})
    assert d["gvae_input"].shape == (3, 4, 4) and d["image"].shape == (1, 4, 4)


def test_unpack_label_is_the_channel_argmax():
    """The label decoding (argmax along a contiguous copy, for speed) equals torch's argmax over channels,
    ties included (first maximum)."""
    torch.manual_seed(0)
    sample = torch.rand(3, 5, 8, 8) * 2 - 1
    sample[:, 1:, :2] = -1.0
    sample[:, 2:4, :2] = 0.5  # ties between label channels 1 and 2
    _, label = unpack_image_label(sample, 1, 4)
    assert torch.equal(label, sample[:, 1:].argmax(dim=1, keepdim=True))
    assert (label[:, :, :2] == 1).all()


def test_unpack_to_host_matches_unpack_and_takes_half_precision():
    """generate and GVAESamplePool unpack where the samples are and copy the result: the same values as
    unpack_image_label, float32 images and int64 labels also from bfloat16 (autocast) samples."""
    torch.manual_seed(0)
    sample = torch.rand(2, 5, 8, 8) * 2 - 1
    image, label = unpack_to_host(sample.bfloat16(), 1, 4, (0.0, 255.0))
    ref_image, ref_label = unpack_image_label(sample.bfloat16().float(), 1, 4, (0.0, 255.0))
    assert image.dtype == torch.float32 and label.dtype == torch.int64 and image.device.type == "cpu"
    assert torch.equal(image, ref_image) and torch.equal(label, ref_label)
    assert unpack_to_host(sample[:, :1], 1)[1] is None  # image-only samples
    with pytest.raises(ValueError, match="NaN or Inf"):
        unpack_to_host(torch.full((1, 5, 8, 8), float("nan")), 1, 4)
