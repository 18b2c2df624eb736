"""The 1-D backbones (theory section 11): shapes, receptive field and stride as reported against what the
gradient and exact shifts measure, and bad input."""
import pytest
import torch

from ablate.models import BackboneConfig, build_backbone, describe


def measured_receptive_field(net, channels=1, length=96):
    """The widest span of input samples any output sample's gradient touches, over a run of outputs in the
    middle (every phase of a UNet's pooling), float64."""
    net = net.double()
    ab = torch.full((1,), 0.5, dtype=torch.float64)
    widest = 0
    for o in range(length // 2 - 8, length // 2 + 8):
        x = torch.randn(1, channels, length, dtype=torch.float64, requires_grad=True)
        net(x, ab)[0, :, o].sum().backward()
        touched = torch.nonzero(x.grad[0].abs().amax(0) > 0).flatten()
        widest = max(widest, int(touched.max() - touched.min()) + 1)
    return widest


@pytest.mark.parametrize("config", [
    BackboneConfig(name="resnet1d", depth=0, width=8), BackboneConfig(name="resnet1d", depth=4, width=8),
    BackboneConfig(name="unet1d", depth=1, width=8), BackboneConfig(name="unet1d", depth=2, width=8),
], ids=lambda c: f"{c.name}-{c.depth}")
def test_1d_backbones_report_the_receptive_field_the_gradient_measures(config):
    torch.manual_seed(0)
    net = build_backbone(config, channels=2)
    out = net(torch.randn(3, 2, 32), torch.rand(3))
    assert out.shape == (3, 2, 32)
    geometry = describe(config)
    assert geometry.receptive_field == measured_receptive_field(build_backbone(config, channels=2), channels=2)
    assert geometry.stride == (1 if config.name == "resnet1d" else 2 ** config.depth)


@pytest.mark.parametrize("name, depth", [("resnet1d", 3), ("unet1d", 2), ("unet_attn1d", 1)])
def test_circular_1d_backbones_commute_with_shifts_by_their_stride_and_not_less(name, depth):
    torch.manual_seed(1)
    config = BackboneConfig(name=name, depth=depth, width=8, padding="circular")
    net = build_backbone(config, channels=1).double().eval()
    x, ab = torch.randn(2, 1, 32, dtype=torch.float64), torch.tensor([0.3, 0.8], dtype=torch.float64)
    stride = describe(config).stride
    for s in (stride, 3 * stride):
        assert torch.allclose(net(torch.roll(x, s, 2), ab), torch.roll(net(x, ab), s, 2), atol=1e-12)
    if stride > 1:  # a shift the pooling does not commute with
        assert not torch.allclose(net(torch.roll(x, 1, 2), ab), torch.roll(net(x, ab), 1, 2), atol=1e-6)


def test_attention_1d_unet_is_global_and_its_local_path_is_reported():
    g = describe(BackboneConfig(name="unet_attn1d", depth=1, width=8))
    assert g.receptive_field is None and g.local_receptive_field == describe(
        BackboneConfig(name="unet1d", depth=1, width=8)).receptive_field


def test_1d_backbones_refuse_data_of_the_wrong_kind_and_size():
    with pytest.raises(ValueError, match=r"unet1d with depth 2 needs signal length divisible by 2\*\*2 = 4; got 30"):
        BackboneConfig(name="unet1d", depth=2).check_image_size(30)
    with pytest.raises(ValueError, match="backbone 'resnet1d' takes signals but the data are images"):
        BackboneConfig(name="resnet1d").check_image_size(14, 14)
    with pytest.raises(ValueError, match="backbone 'resnet' takes images but the data are signals .* resnet1d"):
        BackboneConfig(name="resnet").check_image_size(64)
    with pytest.raises(ValueError, match="backbone='resnet3d' is not allowed"):
        BackboneConfig(name="resnet3d")
