"""Studies on 1-D signals (theory section 11): evaluation's known answers, training and evaluating a 1-D
checkpoint end to end, and the train.py / evaluate.py command lines on signal data."""
import json

import pytest
import torch

from ablate.data import load_dataset
from ablate.evaluation import EvalConfig, Subject, evaluate
from ablate.oracle import OracleConfig, build_oracle
from ablate.training import load_config, run
from conftest import write_definition

FAST = dict(seeds=4, calibration_seeds=3, steps=6, samplers=("ddim",), wandb_mode="disabled", progress=False)


@pytest.fixture(scope="module")
def pulses():
    return load_dataset("pulses", n=40, count=60, length=32)


@pytest.mark.parametrize("boundary", ["zeros", "circular"])
def test_a_network_that_is_the_1d_els_machine_calibrates_back_and_agrees_perfectly(pulses, tmp_path, boundary):
    network = build_oracle(OracleConfig(machine="els", patch_size=7, boundary=boundary), pulses.train)
    config = EvalConfig(machines=("els", "ideal"), boundary=boundary, k_max=11, **FAST)
    s = evaluate(Subject(network, pulses.train), config, tmp_path).summary
    assert s["calibration"]["els"]["candidates"] == [3, 5, 7, 9, 11]
    assert s["calibration"]["els"]["k"] == [7] * 6
    assert s["els"]["median_r2"] == pytest.approx(1.0, abs=1e-9) and s["ideal"]["median_r2"] < 0.99
    assert (tmp_path / "samples_ddim.png").is_file() and (tmp_path / "league.png").is_file()


def test_train_and_evaluate_a_1d_unet_from_the_command_lines(tmp_path, capsys):
    import evaluate as cli

    config = load_config(None, ["data.name=pulses", "data.count=80", "data.length=32", "model.name=unet1d",
                                "model.depth=1", "model.width=8", "batch_size=8", "epoch_images=32", "max_steps=16",
                                "sample_seeds=2", "sample_steps=2", "agreement_every=1", "progress=false",
                                "wandb.mode=disabled", f"out={tmp_path}", "name=tiny1d"])
    assert config.data.image_size is None and config.data.n is None  # the image preset's choices stay behind
    trained = run(config)
    assert (trained.run_dir / "samples" / "final.png").is_file()
    cli.main([str(trained.checkpoint), "--machines", "els,ls,ideal", "--seeds", "3", "--calibration-seeds", "2",
              "--steps", "4", "--samplers", "ddim", "--wandb", "disabled", "--quiet"])
    summary = json.loads(open(capsys.readouterr().out.strip().splitlines()[-1]).read())
    assert summary["network"]["receptive_field"] == 22  # unet1d, one stage (the gradient agrees: test_models_1d)
    assert summary["calibration"]["els"]["candidates"] == list(range(3, 22, 2))
    for machine in ("els", "ls", "ideal"):
        assert -1.0 <= summary[machine]["median_r"] <= 1.0
    from ablate.design.describe import describe_network, format_description

    d = describe_network(str(trained.checkpoint))
    assert d["probe"] is None and d["analytic"]["receptive_field"] == 22 and d["oracle"]["stride"] == 2
    assert len(d["oracle"]["k_per_step"]) == 20 and "signals 1x32" in format_description(d)


def test_signal_data_with_an_image_backbone_is_a_clear_error(tmp_path):
    config = load_config(None, ["data.name=pulses", "data.count=40", "model.name=resnet", f"out={tmp_path}",
                                "progress=false", "wandb.mode=disabled"])
    with pytest.raises(ValueError, match="backbone 'resnet' takes images but the data are signals .* resnet1d"):
        run(config)


def test_1d_ddim_follows_the_formula_and_circular_els_samples_shift_with_their_noise(pulses):
    """sample() on signals is the DDIM recursion of theory section 6 written out here, and with the circular
    1-D ELS machine (exactly shift-equivariant) shifting x_T shifts every step, so the sample shifts too."""
    import math

    from ablate.sampling import sample, seed_noise

    els = build_oracle(OracleConfig(machine="els", patch_size=5, boundary="circular", dtype="float64"), pulses.train)
    steps = 5
    got = sample(els, [3], (1, 32), steps=steps, dtype=torch.float64).samples
    x_T, _ = seed_noise([3], (1, 32), steps)
    ab = [math.cos(i / steps / 1.008 * math.pi / 2) ** 2 for i in range(steps, -1, -1)]  # t = 1 ... 0

    def ddim(x):
        for a, a_prev in zip(ab[:-1], ab[1:]):
            x0 = els.denoise(x, a)
            eps = (x - a ** 0.5 * x0) / (1 - a) ** 0.5
            x = a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps
        return x

    assert torch.allclose(got, ddim(x_T), atol=1e-10)
    assert torch.allclose(ddim(torch.roll(x_T, 7, 2)), torch.roll(got, 7, 2), atol=1e-10)


def test_an_oracle_sweep_runs_on_signals_and_scores_the_pulse_rule(in_tmp):
    """The sweep machinery on 1-D data: trials sample the 1-D ELS machine and score wrong pulse counts; with
    k = 1 at every noise level the machine cannot see a pulse at all, so (almost) every sample breaks the
    rule, while long patches keep it more often."""
    from ablate.sweep import load_definition
    from ablate.sweep.storage import counts
    from ablate.sweep.workers import run_sweep

    raw = dict(name="tiny1d", kind="oracle", data={"name": "pulses", "n": 60, "count": 80, "length": 32},
               fixed={"machine": "els", "boundary": "zeros"},
               space={"k_max": {"choice": [1, 31]}}, objectives={"artefact_rate": "minimize", "novelty": "maximize"},
               sampler={"name": "grid", "seed": 0}, trials=2, seeds=12, steps=8)
    path = write_definition(in_tmp, {**raw, "fixed": {**raw["fixed"], "k_min": 1}})
    study = run_sweep(load_definition(path), progress=False)
    assert counts(study)["complete"] == 2
    rates = {t.params["k_max"]: t.user_attrs["artefact_rate"] for t in study.trials}
    assert rates[1] >= 0.9 and rates[31] < rates[1]
    assert all(0 <= t.user_attrs["novelty"] for t in study.trials)


def test_a_tiny_1d_design_study_predicts_trains_and_compares(in_tmp):
    from ablate.design import run_design_study

    raw = dict(name="tiny_design_1d", kind="design",
               datasets={"pulses": {"name": "pulses", "count": 60, "n": 40, "length": 32}},
               architectures={"r1": {"name": "resnet1d", "depth": 1}, "u1": {"name": "unet1d", "depth": 1},
                              "r1c": {"name": "resnet1d", "depth": 1, "padding": "circular"}},
               fixed={"width": 8, "max_steps": 20, "calibration_seeds": 2, "calibration_k_max": 7, "measure_seeds": 6},
               objectives={"artefact_rate": "minimize", "novelty": "maximize"},
               sampler={"name": "grid", "seed": 0}, seeds=4, steps=4)
    (c,) = run_design_study(write_definition(in_tmp, raw), progress=False).comparisons
    assert [r["arch"] for r in c.rows] == ["r1", "u1", "r1c"]
    assert [r["stride"] for r in c.rows] == [1, 2, 1] and [r["boundary"] for r in c.rows] == ["zeros", "zeros", "circular"]
    for r in c.rows:
        for key in ("predicted_artefact_rate", "artefact_rate", "predicted_novelty", "novelty", "prediction_r2"):
            assert isinstance(r[key], float), key
        assert abs(r["artefact_rate"] * 6 - round(r["artefact_rate"] * 6)) < 1e-9  # wrong counts among 6 seeds
    (r1,) = (in_tmp / "runs/sweeps/tiny_design_1d-pulses/samples").glob("trial*-r1.pt")  # queued by cost, not order
    saved = torch.load(r1, weights_only=True)
    assert saved["predicted"].shape == saved["trained"].shape == (4, 1, 32)
    assert set(c.correlations) >= {"artefact_rate", "novelty"}


def test_a_users_network_on_signal_data_is_a_clear_error():
    from ablate.evaluation.pipeline import evaluate_source

    with pytest.raises(ValueError, match=r"data 'pulses' holds signals \[1, 32\]; users' own networks are evaluated "
                                         r"on images"):
        evaluate_source("standin_nets:tiny_cnn", ["net.prediction_type=epsilon", "net.time_input=sigma",
                                                  "data.name=pulses", "data.count=40", "data.length=32"],
                        EvalConfig(**FAST))
