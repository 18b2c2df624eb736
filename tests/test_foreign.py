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
    images = torch.linspace(0, 255, 144).round().reshape(4, 1, 6, 6).to(torch.uint8)
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


def train_outside_ablate(folder, steps=300):
    """A tiny UNet2DModel trained the way diffusers' examples train one (DDPMScheduler.add_noise, epsilon MSE),
    saved as a DDPMPipeline folder: a network ablate has never seen."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    images = load_dataset("digits", n=200).train
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(16, 32), layers_per_block=1,
                       down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, norm_num_groups=8,
                       add_attention=False)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    opt = torch.optim.AdamW(unet.parameters(), lr=2e-3)
    losses = []
    for step in range(steps):
        x0 = images[torch.randint(0, len(images), (32,))]
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (32,))
        loss = torch.nn.functional.mse_loss(unet(scheduler.add_noise(x0, noise, t), t).sample, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(folder)
    return np.mean(losses[:20]), np.mean(losses[-20:])


def test_unet_trained_outside_ablate_loads_from_its_pipeline_folder_and_evaluates(tmp_path, capsys):
    import json

    import evaluate

    first, last = train_outside_ablate(tmp_path / "pipe")
    assert last < 0.7 * first  # it learned something
    net = load_denoiser(tmp_path / "pipe")
    assert net.kind == "diffusers" and net.description["prediction_type"] == "epsilon"
    assert net.description["schedule"]["beta_schedule"] == "squaredcos_cap_v2" and net.image_shape == (1, 8, 8)
    evaluate.main([str(tmp_path / "pipe"), "data.name=digits", "data.n=200", "--machines", "els,ideal", "--seeds", "4",
                   "--calibration-seeds", "2", "--steps", "6", "--samplers", "ddim,euler,dpm++", "--wandb", "disabled",
                   "--quiet", "--out", str(tmp_path / "eval")])
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert last_line == str(tmp_path / "eval" / "agreement.json")
    s = json.loads(open(last_line).read())
    assert s["network"]["kind"] == "diffusers" and s["network"]["probe"]["stride"] == 2
    assert s["network"]["probe"]["global_mixing"] and s["network"]["probe"]["receptive_field"] is None
    assert set(s["samplers"]) == {"euler", "dpm++"} and s["headline_sampler"] == "ddim"
    for figures in [s, *s["samplers"].values()]:
        assert -1 <= figures["els"]["median_r"] <= 1 and figures["els"]["median_r2"] == pytest.approx(
            np.median(np.square(figures["els"]["per_seed"]["r"])), abs=0.3)
    assert (tmp_path / "eval" / "samples_ddim.png").is_file() and (tmp_path / "eval" / "samples_euler.png").is_file()


@pytest.mark.parametrize("channels, argv, message", [
    (3, ["data.name=digits"], "takes 3-channel images but data 'digits' has 1"),
    (1, [], "did not come from ablate: name the data it was trained on"),
    (1, ["data.name=digits", "data.image_size=6"], "built for 8x8 images"),
    (1, ["data.name=digits", "--samplers", "ddim,eular"], "unknown sampler 'eular'"),
    (1, ["data.name=digits", "net.prediction_type=x0"], "net.prediction_type='x0' is not allowed"),
    (1, ["data.name=digits", "model.depth=3"], "takes data.<key>=value"),
])
def test_evaluate_cli_refuses_bad_input_clearly(tmp_path, channels, argv, message):
    import evaluate
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    unet = UNet2DModel(sample_size=8, in_channels=channels, out_channels=channels, block_out_channels=(8, 8), layers_per_block=1,
                       down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, norm_num_groups=4)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(tmp_path / "pipe")
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([str(tmp_path / "pipe"), *argv, "--quiet", "--wandb", "disabled"])
    assert message in str(exit_info.value)


TINY = ["data.name=digits", "data.n=40", "data.image_size=null", "batch_size=8", "epoch_images=32", "sample_seeds=2", "sample_steps=3",
        "progress=false", "wandb.mode=disabled", "max_steps=6", "agreement_every=null"]


@pytest.mark.parametrize("model", [
    ["model.name=diffusers_unet", "model.block_out_channels=[8,16]", "model.norm_num_groups=4", "model.layers_per_block=1"],
    ["model.name=module", "model.factory=standin_nets:tiny_cnn", "model.time_input=log_snr", "model.kwargs={width: 4}"],
])
def test_train_py_trains_a_diffusers_unet_and_any_module_with_ablates_stack(tmp_path, model, capsys):
    import train

    from ablate.training import load_checkpoint

    train.main([*TINY, *model, f"out={tmp_path}", "name=run"])
    ckpt = capsys.readouterr().out.strip().splitlines()[-1]
    trained = load_checkpoint(ckpt)  # rebuilt from the checkpoint's own config, options included
    assert trained.config.model.name == model[0].split("=")[1]
    net = load_denoiser(ckpt)
    assert net.kind == "ablate"
    out = sample(net.denoiser, [0, 1], (1, 8, 8), steps=3).samples
    assert out.shape == (2, 1, 8, 8) and torch.isfinite(out).all()
    g = trained.backbone.geometry()
    if model[0].endswith("module"):
        assert (g.receptive_field, g.stride, g.global_mixing) == (7, 1, False)  # three 3x3 convs
    else:
        assert g.stride == 2 and g.global_mixing and g.receptive_field is None  # GroupNorm


@pytest.mark.parametrize("items, message", [
    (["model.name=diffusers_unet", "model.block_out_channel=[8,16]"], "did you mean model.block_out_channels"),
    (["model.name=diffusers_unet", "model.block_out_channels=[8,12]"], "not all divisible by norm_num_groups=32"),
    (["model.name=diffusers_unet", "model.in_channels=3"], "set by ablate from the data"),
    (["model.name=module", "model.time_input=sigma"], "needs model.factory=package.module:factory"),
    (["model.name=module", "model.factory=standin_nets:tiny_cnn", "model.time_input=steps"], "model.time_input='steps'"),
    (["model.name=resnet", "model.block_out_channels=[8]"], "unknown config key 'model.block_out_channels'"),
])
def test_foreign_backbone_settings_are_checked_where_they_enter(items, message):
    from ablate.training import load_config

    with pytest.raises(ValueError, match=message):
        load_config(None, items)


def test_describe_prints_the_probe_and_the_predicted_machine(tmp_path, capsys):
    import train

    from ablate.design.__main__ import main as study

    train.main([*TINY, "model.name=unet", "model.depth=1", "model.width=8", f"out={tmp_path}", "name=u"])
    ckpt = capsys.readouterr().out.strip().splitlines()[-1]
    study(["describe", ckpt, "--json"])
    import json

    d = json.loads(capsys.readouterr().out)
    assert d["probe"]["receptive_field"] == d["analytic"]["receptive_field"] == 22
    assert d["probe"]["stride"] == d["oracle"]["stride"] == 2 and d["oracle"]["boundary"] == "zeros"
    assert d["oracle"]["k_per_step"][0] == 15 and d["oracle"]["k_per_step"][-1] == 3  # odd nearest 0.65 x 22, at high noise
    study(["describe", "standin_nets:tiny_cnn", "net.prediction_type=epsilon", "net.time_input=sigma",
           "data.name=digits"])
    text = capsys.readouterr().out
    assert "receptive field            7 px" in text and "equivariance stride        1" in text


def test_design_sweep_lists_diffusers_and_module_architectures():
    from ablate.sweep.definition import parse_definition

    raw = {"name": "d", "kind": "design", "data": {"name": "digits", "n": 40},
           "architectures": {"resnet": {"name": "resnet", "depth": 1},
                             "hf": {"name": "diffusers_unet", "options": {"block_out_channels": [8, 16],
                                                                          "norm_num_groups": 4}},
                             "mine": {"name": "module", "options": {"factory": "standin_nets:tiny_cnn"}}},
           "objectives": {"coherence": "maximize"}, "sampler": {"name": "grid"}, "seeds": 4, "steps": 4}
    d = parse_definition(raw, where="test")
    assert set(d.architectures) == {"resnet", "hf", "mine"}
    from ablate.design.mapping import MappingRule, predict_oracle

    p = predict_oracle(d.architectures["mine"], (1, 8, 8), MappingRule(), 4)
    assert p.geometry.receptive_field == 7 and p.oracle.stride == 1
    raw["architectures"]["bad"] = {"name": "diffusers_unet", "options": {"block_out_channels": [8, 12]}}
    with pytest.raises(ValueError, match="architectures.bad: block_out_channels"):
        parse_definition(raw, where="test")


@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v_prediction"])
def test_evaluating_the_machine_as_a_foreign_network_gives_r2_one_and_calibrates_back(tmp_path, prediction):
    from ablate.evaluation import EvalConfig, evaluate_source

    config = EvalConfig(machines=("els", "ideal"), seeds=3, calibration_seeds=2, steps=5,
                        samplers=("euler", "ddim", "dpm++", "heun"), wandb_mode="disabled", progress=False)
    with pytest.warns(UserWarning, match="could not probe"):  # the stand-in only takes 8x8 images
        s = evaluate_source("standin_nets:unet", [f"net.prediction_type={prediction}", "net.time_input=discrete",
                                                  "net.beta_schedule=linear", f"net.kwargs.prediction_type={prediction}",
                                                  "data.name=digits", "data.n=30"], config, tmp_path).summary
    assert s["calibration"]["els"]["k"] == [5] * 5  # the machine inside has k = 5
    for figures in [s, *s["samplers"].values()]:
        assert figures["els"]["median_r2"] == pytest.approx(1.0, abs=1e-6)
        assert figures["els"]["median_r2_ci95"][0] > 1 - 1e-6
    assert len(s["samplers"]["heun"]["els"]["per_step_median_r2"]) == 9  # Heun calls the network 2 T - 1 times


def test_torchscript_files_load_with_a_declaration(tmp_path):
    from standin_nets import tiny_cnn

    scripted = torch.jit.script(tiny_cnn(1, 4))
    scripted.save(str(tmp_path / "net.pt"))
    with pytest.raises(ValueError, match="declare what it predicts"):
        load_denoiser(tmp_path / "net.pt")
    net = load_denoiser(tmp_path / "net.pt", NetworkSpec(prediction_type="sample", time_input="log_snr"))
    assert net.kind == "torchscript"
    x = torch.randn(2, 1, 8, 8)
    ab = torch.tensor([0.3, 0.7], dtype=torch.float64)
    want = scripted(x, torch.log(ab / (1 - ab)).float()).clamp(-1, 1)
    assert torch.allclose(net.denoiser.denoise(x, ab), want, atol=1e-6)  # sample prediction: x0_hat itself
    assert probe_network(net.module, net.raw, 1).receptive_field == 7


def test_scheduler_config_with_an_unknown_prediction_type(tmp_path):
    import json

    from diffusers import DDPMScheduler, UNet2DModel

    unet = UNet2DModel(in_channels=1, out_channels=1, sample_size=8, block_out_channels=(8, 8), layers_per_block=1,
                       down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, norm_num_groups=4)
    unet.save_pretrained(tmp_path / "m")
    DDPMScheduler().save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "scheduler_config.json").read_text())
    assert load_denoiser(tmp_path / "m").description["prediction_type"] == config["prediction_type"] == "epsilon"
    config["prediction_type"] = "flow"
    (tmp_path / "m" / "scheduler_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="prediction_type 'flow' is not supported; allowed: epsilon, sample"):
        load_denoiser(tmp_path / "m")
