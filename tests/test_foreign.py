"""Any network under any scheduler: diffusers' DDIM equals ablate's, a network that *is* the ELS machine
agrees perfectly through the adapter under every scheduler and prediction type, the probes measure the
analytic geometry, and bad input is refused clearly."""
import numpy as np
import pytest
import torch

from ablate.data import load_dataset
from ablate.metrics import pairwise_agreement
from ablate.models import BackboneConfig, NetworkSpec, TimeMap, build_backbone, describe, load_denoiser, probe_network
from ablate.oracle import OracleConfig, build_oracle
from ablate.sampling import SCHEDULERS, DiscreteSchedule, build_scheduler, sample, seed_noise
from standin_nets import LINEAR, digits_oracle

ALL = ("ddim", "ddpm") + tuple(SCHEDULERS)


@pytest.fixture(scope="module")
def oracle():
    return digits_oracle()


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_ablate_ddim_is_diffusers_ddim_step_by_step(oracle, spacing):
    from diffusers import DDIMScheduler

    schedule = DiscreteSchedule({"num_train_timesteps": 1000, "beta_schedule": "linear", "timestep_spacing": spacing})
    ours = sample(oracle, [1, 2], (1, 8, 8), steps=10, sampler="ddim", schedule=schedule, keep_trajectory=True)
    s = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", timestep_spacing=spacing, clip_sample=False,
                      prediction_type="epsilon")
    s.set_timesteps(10)
    x = seed_noise([1, 2], (1, 8, 8), 10)[0].float()
    theirs = [x]
    for t in s.timesteps:
        ab = float(s.alphas_cumprod[t])
        eps = (x - ab ** 0.5 * oracle.denoise(x, torch.full((2,), ab, dtype=torch.float64))) / (1 - ab) ** 0.5
        x = s.step(eps, t, x).prev_sample
        theirs.append(x)
    assert torch.allclose(ours.alpha_bars, s.alphas_cumprod[s.timesteps].double())
    assert (torch.stack(theirs) - ours.xs).abs().max() < 1e-5


@pytest.mark.parametrize("name", ALL)
def test_every_sampler_is_reproducible_and_reaches_a_constant_denoisers_image(oracle, name):
    a = sample(oracle, [3, 4], (1, 8, 8), steps=8, sampler=name, schedule=LINEAR)
    b = sample(oracle, [3, 4], (1, 8, 8), steps=8, sampler=name, schedule=LINEAR)
    assert torch.equal(a.samples, b.samples)
    image = torch.rand(1, 1, 8, 8) * 2 - 1

    class Constant:
        def denoise(self, x, ab, labels=None):
            return image.expand_as(x)

    out = sample(Constant(), [3, 4], (1, 8, 8), steps=8, sampler=name, schedule="cosine").samples
    assert (out - image).abs().max() < 1e-4  # every solver integrates a constant x0_hat exactly


def test_unknown_sampler_names_the_choices():
    with pytest.raises(ValueError, match="did you mean 'euler'.*choose one of ddim, ddpm"):
        sample(digits_oracle(), [0], (1, 8, 8), steps=2, sampler="eulr")


def test_discrete_time_map_recovers_the_timesteps_diffusers_euler_passes():
    tm = TimeMap("discrete", LINEAR)
    ac = LINEAR.alphas_cumprod
    assert torch.allclose(tm(ac[[0, 17, 500, 999]]), torch.tensor([0.0, 17.0, 500.0, 999.0], dtype=torch.float64),
                          atol=1e-9)
    euler = build_scheduler("euler", LINEAR, 13)  # float timesteps between the integers
    sigmas = euler.sigmas[:-1].double()
    assert (tm(1 / (1 + sigmas ** 2)) - euler.timesteps.double()).abs().max() < 2e-3
    assert tm(torch.tensor([0.99999999], dtype=torch.float64)) == 0  # clamped to the grid
    ab = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    assert torch.all(torch.diff(tm(ab)) < 0)  # less noise, earlier timestep


@pytest.mark.parametrize("time_input", ["continuous", "sigma", "log_snr", "alpha_bar"])
def test_continuous_time_maps_invert_their_definitions(time_input):
    from standin_nets import OracleModule

    ab = torch.tensor([0.02, 0.3, 0.9], dtype=torch.float64)
    time = TimeMap(time_input, "cosine")(ab)
    if time_input == "alpha_bar":
        assert torch.equal(time, ab)
    else:
        assert torch.allclose(OracleModule.alpha_bar(OracleModule.__new__(OracleModule).__class__.__new__(OracleModule)
                                                     if False else _stub(time_input), time), ab)


def _stub(time_input):
    from standin_nets import OracleModule

    m = OracleModule.__new__(OracleModule)
    m.time_input = time_input
    return m


@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("factory", ["unet", "module"])
def test_network_that_is_the_els_machine_agrees_perfectly_under_every_scheduler(oracle, prediction, factory):
    if factory == "unet":  # diffusers' calling convention, discrete timesteps of a declared linear schedule
        spec = NetworkSpec(prediction_type=prediction, time_input="discrete", beta_schedule="linear",
                           kwargs={"prediction_type": prediction})
    else:
        spec = NetworkSpec(prediction_type=prediction, time_input="sigma", beta_schedule="linear",
                           kwargs={"prediction_type": prediction, "time_input": "sigma"})
    net = load_denoiser(f"standin_nets:{factory}", spec)
    assert net.kind == "module" and isinstance(net.schedule, DiscreteSchedule)
    for name in ALL:
        a = sample(net.denoiser, [5, 6, 7], (1, 8, 8), steps=6, sampler=name, schedule=net.schedule).samples
        b = sample(oracle, [5, 6, 7], (1, 8, 8), steps=6, sampler=name, schedule=net.schedule).samples
        r2 = pairwise_agreement(a, b)["r2"]
        assert r2.min() > 1 - 1e-6, (name, r2)


@pytest.mark.parametrize("cfg", [BackboneConfig(name="resnet", depth=1, width=8),
                                 BackboneConfig(name="resnet", depth=4, width=8, padding="circular"),
                                 BackboneConfig(name="unet", depth=1, width=8),
                                 BackboneConfig(name="unet", depth=2, width=8, padding="circular"),
                                 BackboneConfig(name="unet_attn", depth=1, width=8)])
def test_probes_equal_the_analytic_receptive_field_and_stride(cfg):
    net = build_backbone(cfg, 1)
    got = probe_network(net, lambda x, ab, labels=None: net(x, ab.to(x.dtype), labels), 1, cfg.padding, cfg.stride)
    want = describe(cfg)
    assert (got.receptive_field, got.local_receptive_field, got.stride) == \
        (want.receptive_field, want.local_receptive_field, cfg.stride)
    assert got.global_mixing == (cfg.name == "unet_attn")


def test_probe_of_a_diffusers_unet_without_attention():
    from diffusers import UNet2DModel

    unet = UNet2DModel(in_channels=1, out_channels=1, block_out_channels=(8, 8, 8), layers_per_block=1,
                       down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3,
                       norm_num_groups=4, add_attention=False)
    spec = NetworkSpec(prediction_type="epsilon", time_input="discrete", beta_schedule="linear")
    from ablate.models.foreign import ForeignDenoiser

    d = ForeignDenoiser(unet, "epsilon", TimeMap("discrete", spec.discrete_schedule()))
    got = probe_network(unet, d.raw, 1, "zeros", 4)
    assert got.stride == 4  # 2 ** (levels - 1): the last block does not down-sample
    assert got.global_mixing and got.receptive_field is None  # GroupNorm's statistics span the image
    assert got.local_receptive_field is not None and got.local_receptive_field > 20
    assert any(m.startswith("GroupNorm") for m in got.global_modules)


def test_oracle_refuses_images_outside_minus_one_one():
    images = torch.randint(0, 256, (4, 1, 6, 6), dtype=torch.uint8)
    with pytest.raises(ValueError, match="float images scaled to"):
        build_oracle(OracleConfig(), images)
    with pytest.raises(ValueError, match=r"lie in \[0, 255\].*x / 127.5 - 1"):
        build_oracle(OracleConfig(), images.float())


@pytest.mark.parametrize("source, spec, message", [
    ("standin_nets:wrong_shape", NetworkSpec(prediction_type="epsilon", time_input="sigma"), "output has shape"),
    ("standin_nets:not_a_module", NetworkSpec(prediction_type="epsilon", time_input="sigma"), "not a torch.nn.Module"),
    ("no_such_package.nets:build", NetworkSpec(prediction_type="epsilon", time_input="sigma"), "cannot import"),
    ("standin_nets:module", NetworkSpec(), "declare what it predicts and how it takes time"),
    ("standin_nets:nothing", NetworkSpec(prediction_type="epsilon", time_input="sigma"), "no callable 'nothing'"),
    ("does/not/exist.ckpt", NetworkSpec(), "cannot find network"),
])
def test_bad_networks_are_clear_errors(source, spec, message):
    with pytest.raises(ValueError, match=message):
        net = load_denoiser(source, spec)
        net.denoiser.denoise(torch.zeros(1, 1, 8, 8), 0.5)


def test_bad_declarations_name_what_is_allowed():
    with pytest.raises(ValueError, match="net.prediction_type='x0'.*'epsilon', 'sample', 'v_prediction'"):
        NetworkSpec(prediction_type="x0")
    with pytest.raises(ValueError, match="net.time_input='steps'.*'discrete'"):
        NetworkSpec(time_input="steps")


def test_folders_that_are_not_diffusers_models(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a diffusers model"):
        load_denoiser(tmp_path / "empty")
    from diffusers import UNet2DModel

    unet = UNet2DModel(in_channels=1, out_channels=1, sample_size=8, block_out_channels=(8, 8), layers_per_block=1,
                       down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, norm_num_groups=4)
    unet.save_pretrained(tmp_path / "bare")
    with pytest.raises(ValueError, match="no scheduler config.*net.time_input=discrete net.beta_schedule"):
        load_denoiser(tmp_path / "bare")
    net = load_denoiser(tmp_path / "bare", NetworkSpec(time_input="discrete", beta_schedule="linear"))
    assert net.kind == "diffusers" and net.image_shape == (1, 8, 8) and net.padding == "zeros"
    unet.save_pretrained(tmp_path / "pickled", safe_serialization=False)
    with pytest.raises(ValueError, match="only safetensors"):
        load_denoiser(tmp_path / "pickled", NetworkSpec(time_input="discrete", beta_schedule="linear"))
