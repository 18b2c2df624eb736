"""Backbones: exact equivariance, receptive fields that match the gradient, the denoiser's algebra."""
import pytest
import torch

from ablate.models import BackboneConfig, NetworkDenoiser, build_backbone, describe
from ablate.sampling import sample

AB = torch.tensor([0.3, 0.8], dtype=torch.float64)


def net(**kw):
    torch.manual_seed(0)
    return build_backbone(BackboneConfig(**kw), channels=1).double()


def measured_receptive_field(model, size, positions):
    """Largest side of the input region whose gradient w.r.t. one output pixel is nonzero."""
    best = 0
    for i, j in positions:
        x = torch.randn(1, 1, size, size, dtype=torch.float64, requires_grad=True)
        model(x, torch.tensor([0.5], dtype=torch.float64))[0, 0, i, j].backward()
        g = x.grad[0].abs().sum(0)
        rows, cols = torch.nonzero(g.sum(1)).flatten(), torch.nonzero(g.sum(0)).flatten()
        best = max(best, int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1))
    return best


@pytest.mark.parametrize("cfg", [dict(name="resnet", depth=2), dict(name="resnet", depth=5),
                                 dict(name="unet", depth=1), dict(name="unet", depth=2)],
                         ids=lambda d: f"{d['name']}{d['depth']}")
def test_reported_receptive_field_matches_the_gradient(cfg):
    model = net(width=4, **cfg)
    stride = 2 ** cfg["depth"] if cfg["name"] == "unet" else 1
    centre = 64
    positions = [(centre + a, centre + a) for a in range(stride)]  # every phase of the stride
    assert model.receptive_field() == measured_receptive_field(model, 128, positions)


def test_attention_unet_is_global():
    model = net(name="unet_attn", depth=1, width=4)
    assert model.receptive_field() is None
    assert measured_receptive_field(model, 32, [(16, 16)]) == 32
    assert describe(BackboneConfig(name="unet_attn", depth=1, width=4)).receptive_field is None


def test_geometry_maps_architecture_to_oracle_knobs():
    g = describe(BackboneConfig(name="unet", depth=3, width=4, padding="circular"))
    assert (g.stride, g.padding) == (8, "circular")
    assert describe(BackboneConfig(name="resnet", depth=6)).receptive_field == 17


def test_circular_resnet_is_exactly_equivariant_to_every_shift():
    model = net(name="resnet", depth=3, width=8, padding="circular")
    x = torch.randn(2, 1, 9, 7, dtype=torch.float64)
    y = model(x, AB)
    for shift in [(1, 0), (0, 3), (4, 5)]:
        shifted = model(torch.roll(x, shift, (2, 3)), AB)
        assert torch.allclose(shifted, torch.roll(y, shift, (2, 3)), atol=1e-12, rtol=0)


def test_zero_padding_breaks_equivariance():
    model = net(name="resnet", depth=3, width=8, padding="zeros")
    x = torch.randn(2, 1, 9, 7, dtype=torch.float64)
    assert not torch.allclose(model(torch.roll(x, 1, 2), AB), torch.roll(model(x, AB), 1, 2), atol=1e-3)


@pytest.mark.parametrize("name", ["unet", "unet_attn"])
def test_circular_unet_is_equivariant_to_multiples_of_its_stride_only(name):
    model = net(name=name, depth=2, width=8, padding="circular")
    x = torch.randn(2, 1, 16, 12, dtype=torch.float64)
    y = model(x, AB)
    by_stride = model(torch.roll(x, (4, 8), (2, 3)), AB)
    assert torch.allclose(by_stride, torch.roll(y, (4, 8), (2, 3)), atol=1e-12, rtol=0)
    by_one = model(torch.roll(x, (1, 0), (2, 3)), AB)
    assert (by_one - torch.roll(y, (1, 0), (2, 3))).abs().max() > 1e-3


class TrueNoise(torch.nn.Module):
    """Predicts the exact noise of x_t around a known clean image: the denoiser must return that image."""

    def __init__(self, x0):
        super().__init__()
        self.x0 = x0
        self.p = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x_t, alpha_bar, labels=None):
        ab = alpha_bar.view(-1, 1, 1, 1)
        return (x_t - ab.sqrt() * self.x0) / (1 - ab).sqrt()


def test_denoiser_turns_the_true_noise_into_the_clean_image():
    x0 = torch.rand(3, 1, 5, 5, dtype=torch.float64) * 2 - 1
    x_t = torch.randn(3, 1, 5, 5, dtype=torch.float64)
    out = NetworkDenoiser(TrueNoise(x0).double()).denoise(x_t, torch.tensor([0.1, 0.5, 0.99], dtype=torch.float64))
    assert torch.allclose(out, x0, atol=1e-10)
    big = NetworkDenoiser(TrueNoise(3 * x0).double()).denoise(x_t, 0.5)  # clipped to the data range
    assert big.abs().max() <= 1.0 and not NetworkDenoiser(TrueNoise(3 * x0).double(), clip=False).denoise(
        x_t, 0.5).abs().max() <= 1.0


def test_ddim_with_a_network_is_deterministic_for_a_seed():
    denoiser = NetworkDenoiser(build_backbone(BackboneConfig(name="unet", depth=1, width=8), channels=1))
    a = sample(denoiser, [7, 8], (1, 8, 8), steps=5).samples
    b = sample(denoiser, [7, 8], (1, 8, 8), steps=5).samples
    c = sample(denoiser, [7, 9], (1, 8, 8), steps=5).samples
    assert torch.equal(a, b) and torch.equal(a[0], c[0]) and not torch.allclose(a[1], c[1])


@pytest.mark.parametrize("kw, message", [
    (dict(name="transformer"), "backbone='transformer' is not allowed"),
    (dict(padding="reflect"), "padding='reflect' is not allowed"),
    (dict(name="unet", depth=2, width=12, norm="group", groups=8), "not divisible by groups=8"),
    (dict(name="unet_attn", depth=1, width=6, heads=4), "not divisible by heads=4"),
    (dict(name="unet", depth=2, stage_widths=(8, 16)), "3 stages"),
    (dict(depth=-1), "too small"),
])
def test_bad_backbone_configs_name_the_problem(kw, message):
    with pytest.raises(ValueError, match=message):
        BackboneConfig(**kw)


def test_unet_needs_image_sides_divisible_by_its_stride():
    with pytest.raises(ValueError, match="divisible by 2\\*\\*3 = 8; got 14x14"):
        BackboneConfig(name="unet", depth=3).check_image_size(14, 14)
    BackboneConfig(name="unet", depth=1).check_image_size(14, 14)
