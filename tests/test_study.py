"""Design before training: the mapping rule's known answers, Spearman with known rankings, the design
definition's validation, and a real (tiny) study end to end: predict, train, measure, compare, report, resume."""
import math

import pytest
import torch
from optuna.trial import TrialState

from ablate.data import is_hand, make_fingers
from ablate.metrics import HandCoherence
from ablate.study import MappingRule, compare, fit_mapping, predict_oracle, run_design_study, spearman
from ablate.study.mapping import step_alpha_bars
from ablate.sweep import parse_definition
from ablate.sweep.study import load_existing
from conftest import write_definition

CALIBRATED = [11, 11, 11, 9, 9, 9, 9, 7, 7, 5, 5, 5, 5, 5, 3, 3, 3, 3, 3, 3]  # the quick preset's ELS calibration


def test_rule_maps_padding_stages_and_receptive_field():
    rule = MappingRule(rf_fraction=0.65, shape=1.5)
    resnet = predict_oracle({"name": "resnet", "depth": 6}, (1, 16, 16), rule)
    assert resnet.geometry.receptive_field == 17 and resnet.oracle.boundary == "zeros" and resnet.oracle.stride == 1
    assert resnet.ks[0] == 11 and resnet.ks[-1] == 3  # nearest odd of 0.65 * 17 at high noise, k_low at low
    assert list(resnet.ks) == sorted(resnet.ks, reverse=True)  # k never grows as the noise falls
    circular = predict_oracle({"name": "resnet", "depth": 10, "padding": "circular"}, (1, 14, 14), rule)
    assert circular.oracle.boundary == "circular" and circular.ks[0] == 13  # 0.65 * 25 = 16.25 -> 17, capped at 13
    unet = predict_oracle({"name": "unet", "depth": 2}, (1, 16, 16), rule)
    assert unet.oracle.stride == 4 and unet.ks[0] == 31  # RF 50 -> 33, capped at 2 * 16 - 1
    attention = predict_oracle({"name": "unet", "depth": 1, "attention": True}, (1, 16, 16), rule)
    plain = predict_oracle({"name": "unet", "depth": 1}, (1, 16, 16), rule)
    assert attention.geometry.receptive_field is None and attention.mapped_receptive_field == 22  # its conv path
    assert attention.ks == plain.ks and attention.oracle == plain.oracle  # the plain UNet's machine
    global_ = predict_oracle({"name": "unet", "depth": 1, "attention": True}, (1, 16, 16),
                             MappingRule(0.65, 1.5, attention="global"))
    assert global_.mapped_receptive_field is None and global_.ks[0] == 31  # global: the largest allowed
    with pytest.raises(ValueError, match="attention_rule='both'; allowed: local, global"):
        MappingRule.from_knobs({"attention_rule": "both"})
    deeper = [predict_oracle({"name": "resnet", "depth": d}, (1, 32, 32), rule).ks[0] for d in (1, 2, 4, 6, 10)]
    assert deeper == sorted(deeper) and deeper[0] < deeper[-1]
    with pytest.raises(ValueError, match="divisible by"):
        predict_oracle({"name": "unet", "depth": 3}, (1, 20, 20), rule)
    with pytest.raises(ValueError, match="attention=true needs a UNet"):
        predict_oracle({"name": "resnet", "attention": True}, (1, 16, 16), rule)


def test_fit_recovers_the_rule_that_made_a_schedule():
    abs_ = step_alpha_bars(20)
    made = predict_oracle({"name": "resnet", "depth": 10}, (1, 32, 32), MappingRule(0.65, 2.0)).ks
    fitted = fit_mapping(made, abs_, receptive_field=25)
    again = predict_oracle({"name": "resnet", "depth": 10}, (1, 32, 32), fitted).ks
    assert again == made
    preset = fit_mapping(CALIBRATED, abs_, receptive_field=17)
    assert preset.rf_fraction == pytest.approx(11 / 17) and preset.shape == 1.5  # the shipped defaults
    with pytest.raises(ValueError, match="one k per noise level"):
        fit_mapping([3, 5], abs_, 17)


def test_spearman_known_rankings():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40])[0] == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [0.4, 0.3, 0.2, 0.1])[0] == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4])[0] == pytest.approx(0.8)
    assert math.isnan(spearman([1, 2, 3], [5, 5, 5])[0])  # a constant side has no ranking
    rows = [{"arch": a, "predicted_artefact_rate": p, "artefact_rate": m, "prediction_seconds": 1.0,
             "train_seconds": 20.0} for a, p, m in (("a", 0.1, 0.2), ("b", 0.3, 0.5), ("c", 0.2, 0.3))]
    c = compare("s", rows)
    assert c.correlations["artefact_rate"].rho == pytest.approx(1.0) and c.cost_ratio == pytest.approx(0.05)


def test_hand_coherence_known_answers():
    hands = make_fingers(20, size=32, fingers=5, seed=1)
    six = make_fingers(20, size=32, fingers=6, seed=2)
    noise = torch.rand(20, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    stray = hands.clone()
    stray[:, :, :4, :4] = 1.0  # a detached blob in the corner... unless the hand reaches it
    for images, expected in ((hands, 1.0), (six, 1.0), (noise, 0.0)):
        m = HandCoherence()
        m.update(images)
        assert m.compute()["coherence"] == expected
    blank = -torch.ones(1, 32, 32)
    assert not is_hand(blank)
    two = -torch.ones(1, 32, 32)
    two[0, 10:22, 2:14] = hands[0, 0, 10:22, 10:22]
    assert is_hand(hands[0]) and not is_hand(torch.cat([hands[0, :, :, :16], hands[0, :, :, :16]], dim=-1))


def test_design_definition_is_validated():
    base = dict(name="d", kind="design", datasets={"fingers": {"name": "fingers", "size": 28, "count": 40}},
                architectures={"r1": {"name": "resnet", "depth": 1}}, objectives={"artefact_rate": "minimize"},
                sampler={"name": "grid"})
    d = parse_definition(base)
    assert d.name == "d-fingers" and d.trials == 1 and d.space[0].choices == ("r1",)
    with pytest.raises(ValueError, match="needs 'architectures'"):
        parse_definition({**base, "architectures": None})
    with pytest.raises(ValueError, match="unknown design knob 'dept'"):
        parse_definition({**base, "architectures": {"r1": {"dept": 1}}})
    with pytest.raises(ValueError, match="no dataset 'mnist'"):
        parse_definition(base, dataset="mnist")
    with pytest.raises(ValueError, match="either 'data' or 'datasets'"):
        parse_definition({**base, "data": {"name": "digits"}})
    with pytest.raises(ValueError, match="measure_seeds=2 must be an integer >= seeds"):
        parse_definition({**base, "seeds": 4, "fixed": {"measure_seeds": 2}})
    with pytest.raises(ValueError, match=r"architectures.r1: attention_rule='wide'; allowed: local, global"):
        parse_definition({**base, "fixed": {"attention_rule": "wide"}})
    with pytest.raises(ValueError, match=r"architectures.r1: rf_fraction"):
        parse_definition({**base, "architectures": {"r1": {"name": "resnet", "rf_fraction": -1.0}}})
    two = {**base, "datasets": {**base["datasets"], "digits": {"name": "digits"}}}
    with pytest.raises(ValueError, match="names several datasets"):
        parse_definition(two)


def test_tiny_design_study_predicts_trains_compares_and_resumes(in_tmp):
    tmp_path = in_tmp
    raw = dict(name="tiny_design", kind="design",
               datasets={"fingers": {"name": "fingers", "size": 28, "count": 60, "n": 40}},
               architectures={"r1": {"name": "resnet", "depth": 1}, "r2": {"name": "resnet", "depth": 2},
                              "r1c": {"name": "resnet", "depth": 1, "padding": "circular"}},
               fixed={"width": 8, "max_steps": 20, "calibration_seeds": 2, "calibration_k_max": 5,
                      "measure_seeds": 6},
               objectives={"coherence": "maximize", "artefact_rate": "minimize"},
               sampler={"name": "grid", "seed": 0}, seeds=4, steps=4)
    path = write_definition(tmp_path, raw)
    result = run_design_study(path, progress=False)
    (c,) = result.comparisons
    assert [r["arch"] for r in c.rows] == ["r1", "r2", "r1c"]
    for r in c.rows:
        for key in ("predicted_coherence", "coherence", "predicted_artefact_rate", "artefact_rate", "els_r2",
                    "prediction_r2", "prediction_seconds", "train_seconds"):
            assert isinstance(r[key], float), key
        assert 0.0 <= r["artefact_rate"] <= 1.0 and 0.0 <= r["prediction_r2"] <= 1.0
    assert [r["boundary"] for r in c.rows] == ["zeros", "zeros", "circular"]
    expected, _ = spearman([r["predicted_artefact_rate"] for r in c.rows], [r["artefact_rate"] for r in c.rows])
    assert c.correlations["artefact_rate"].rho == expected or (math.isnan(expected)
                                                                and math.isnan(c.correlations["artefact_rate"].rho))
    assert c.prediction_seconds > 0 and c.train_seconds > 0
    for key in ("markdown", "html"):
        assert result.report[key].is_file()
    text = result.report["markdown"].read_text()
    assert "| r1c |" in text and "tiny_design-fingers-scatter.png" in text and "Spearman" in text
    assert (tmp_path / "runs/sweeps/tiny_design/tiny_design-fingers-samples.png").is_file()
    saved = torch.load(tmp_path / "runs/sweeps/tiny_design-fingers/samples/trial0000-r1.pt", weights_only=True)
    assert saved["predicted"].shape == saved["trained"].shape == (4, 1, 28, 28)  # the oracle's seeds
    assert all(r["measure_seeds"] == 6 and r["prediction_seeds"] == 4 for r in c.rows)
    assert "the trained network 6 (the first 4 the same)" in text
    # the rates are scored on all 6 seeds: a rate of 6 samples is a multiple of 1/6
    assert all(abs(r["coherence"] * 6 - round(r["coherence"] * 6)) < 1e-9 for r in c.rows)

    from ablate.sweep.definition import load_definition
    d = load_definition(path, "fingers")
    _, study = load_existing(d, f"sqlite:///{tmp_path}/runs/sweeps/tiny_design-fingers.db")
    before = [(t.number, t.datetime_complete) for t in study.get_trials()]
    assert len(before) == 3 and all(t.state == TrialState.COMPLETE for t in study.get_trials())
    again = run_design_study(path, progress=False)  # resumes: nothing left to train
    after = [(t.number, t.datetime_complete) for t in study.get_trials()]
    assert after == before and again.comparisons[0].rows == c.rows


def test_binomial_standard_error_of_a_rate():
    from ablate.study.report import _binomial_se
    assert _binomial_se(0.5, 100) == pytest.approx(0.05) and _binomial_se(0.9, 36) == pytest.approx(0.05)
    assert _binomial_se(0.0, 24) == 0.0 and _binomial_se(0.5, None) == 0.0
