"""Design before training: the mapping rule's known answers, Spearman with known rankings, the design
definition's validation, and a real (tiny) study end to end: predict, train, measure, compare, report, resume."""
import json
import math
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState

from ablate.data import is_hand, make_fingers
from ablate.metrics import HandCoherence
from ablate.design import FitMember, MappingRule, compare, fit_rule, predict_oracle, run_design_study, spearman
from ablate.design.attention import repredict_study
from ablate.design.compare import bootstrap_rho
from ablate.design.mapping import member_error, step_alpha_bars
from ablate.design.rule_file import fit_rule_file, load_rule
from ablate.sweep import parse_definition
from ablate.sweep.definition import load_definition
from ablate.sweep.storage import default_storage, load_existing
from ablate.sweep.workers import status_lines
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
    with pytest.raises(ValueError, match="attention_rule='both'; allowed: local, global, fitted"):
        MappingRule.from_knobs({"attention_rule": "both"})
    # the attention term: attention networks (and only they) get their local machine mixed with the global one
    mixed_rule = MappingRule(0.65, 1.5, attention_weight=0.3)
    mixed = predict_oracle({"name": "unet", "depth": 1, "attention": True}, (1, 16, 16), mixed_rule)
    assert mixed.oracle.machine == "els_mixture" and mixed.oracle.knob("global_weight") == 0.3
    assert mixed.ks == plain.ks and mixed.oracle.stride == plain.oracle.stride == 2
    assert predict_oracle({"name": "unet", "depth": 1}, (1, 16, 16), mixed_rule).oracle == plain.oracle
    assert "attention_weight" not in rule.knobs() and MappingRule.from_knobs(mixed_rule.knobs()) == mixed_rule
    with pytest.raises(ValueError, match="attention_weight=1.5 is out of range"):
        MappingRule(attention_weight=1.5)
    with pytest.raises(ValueError, match="already global"):
        MappingRule(attention="global", attention_weight=0.5)
    deeper = [predict_oracle({"name": "resnet", "depth": d}, (1, 32, 32), rule).ks[0] for d in (1, 2, 4, 6, 10)]
    assert deeper == sorted(deeper) and deeper[0] < deeper[-1]
    with pytest.raises(ValueError, match="divisible by"):
        predict_oracle({"name": "unet", "depth": 3}, (1, 20, 20), rule)
    with pytest.raises(ValueError, match="attention=true needs a UNet"):
        predict_oracle({"name": "resnet", "attention": True}, (1, 16, 16), rule)


def made_by(rule: MappingRule, knobs: dict, size: int = 32) -> FitMember:
    """A fit member whose calibration *is* the rule's schedule for the architecture ``knobs``."""
    p = predict_oracle(knobs, (1, size, size), rule)
    allowed = 2 * size - 1 if p.oracle.boundary == "zeros" else size - 1 + size % 2
    return FitMember(str(knobs), p.ks, tuple(step_alpha_bars(20)), p.mapped_receptive_field,
                     p.geometry.receptive_field is None, allowed)


def test_fit_recovers_the_rule_that_made_the_schedules_of_a_fit_set():
    truth = MappingRule(0.65, 2.0, attention="fitted", attention_rf_fraction=1.2, attention_shape=0.8)
    fit_set = [{"name": "resnet", "depth": 10}, {"name": "resnet", "depth": 6}, {"name": "unet", "depth": 1},
               {"name": "unet", "depth": 1, "attention": True}]
    members = [made_by(truth, k) for k in fit_set]
    fitted = fit_rule(members)
    assert fitted.attention == "fitted"
    assert all(member_error(m, fitted) == 0 for m in members)  # every calibration reproduced exactly
    for knobs in fit_set + [{"name": "resnet", "depth": 4}, {"name": "unet", "depth": 2, "attention": True}]:
        assert predict_oracle(knobs, (1, 32, 32), fitted).ks == predict_oracle(knobs, (1, 32, 32), truth).ks
    # the attention constants come from the attention members only: without them the rule stays local
    assert fit_rule(members[:3]).attention == "local" and fit_rule(members[:3]).rf_fraction == fitted.rf_fraction
    preset = fit_rule([FitMember("quick", tuple(CALIBRATED), tuple(step_alpha_bars(20)), 17)])
    assert preset.k_top(17, 99) == 11 and preset.shape == 1.5  # the shipped defaults' schedule
    assert member_error(FitMember("quick", tuple(CALIBRATED), tuple(step_alpha_bars(20)), 17), preset) == \
        pytest.approx(0.6325, abs=1e-4)
    with pytest.raises(ValueError, match="one calibrated k per noise level"):
        FitMember("bad", (3, 5), tuple(step_alpha_bars(20)), 17)
    with pytest.raises(ValueError, match="no network without attention"):
        fit_rule(members[3:])
    with pytest.raises(ValueError, match="needs attention_rf_fraction and attention_shape"):
        MappingRule(attention="fitted")
    with pytest.raises(ValueError, match="apply to attention_rule='fitted' only"):
        MappingRule(attention_shape=1.0)


def test_rule_file_round_trips_with_its_fit_set_and_commit(tmp_path):
    truth = MappingRule(0.7, 1.2, attention="fitted", attention_rf_fraction=1.5, attention_shape=0.5)
    members = [made_by(truth, {"name": "resnet", "depth": 6}), made_by(truth, {"name": "unet", "depth": 1,
                                                                               "attention": True})]
    written = fit_rule_file(members, {members[0].name: "calibration.json"})
    path = written.save(tmp_path / "rule.yaml")
    back = load_rule(path)
    assert back.rule == written.rule and back.fit_set == written.fit_set and back.commit == written.commit
    assert back.commit is None or len(back.commit.split("+")[0]) == 40  # the git commit that fitted it
    assert back.sources == {members[0].name: "calibration.json"}
    assert [m["rms_error"] for m in back.to_dict()["fit_set"]] == [0.0, 0.0]
    # the rule file drives the prediction exactly as the constants would
    knobs = {"name": "unet", "depth": 2, "attention": True}
    assert predict_oracle(knobs, (1, 32, 32), back.rule).ks == predict_oracle(knobs, (1, 32, 32), truth).ks
    for text, match in (("[1, 2]", "must be a mapping with a 'rule' key"),
                        ("rule: {rf_fraction: 0.5}\nextra: 1", r"unknown keys \['extra'\]"),
                        ("rule: {rf_fraction: 0.5, size: 3}", r"unknown rule constants \['size'\]"),
                        ("rule: {rf_fraction: -1}", "rf_fraction"),
                        ("rule: {rf_fraction: 0.5}\nfit_set: [{name: a, ks: [3], alpha_bars: [0.5, 0.6], "
                         "receptive_field: 5}]", "one calibrated k per noise level")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ValueError, match=match):
            load_rule(bad)
    with pytest.raises(ValueError, match="cannot read rule file"):
        load_rule(tmp_path / "missing.yaml")


def test_a_refit_keeps_the_rule_files_provenance_and_never_overwrites_a_different_rule(tmp_path):
    import dataclasses

    from ablate.design.rule_file import save_or_keep

    truth = MappingRule(0.7, 1.2)
    members = [made_by(truth, {"name": "resnet", "depth": 6}), made_by(truth, {"name": "unet", "depth": 1})]
    first = dataclasses.replace(fit_rule_file(members), commit="a" * 40, fitted="2026-01-01T00:00:00+00:00")
    path = tmp_path / "rule.yaml"
    kept, written = save_or_keep(first, path)
    assert written and load_rule(path).commit == "a" * 40
    again = dataclasses.replace(fit_rule_file(members), commit="b" * 40, fitted="2026-02-02T00:00:00+00:00")
    kept, written = save_or_keep(again, path)  # the same fit on a resumed run: the first provenance stays
    assert not written and kept.commit == "a" * 40 and load_rule(path).fitted == "2026-01-01T00:00:00+00:00"
    other = dataclasses.replace(fit_rule_file(members[:1]), commit="c" * 40)  # another fit set, another rule
    kept, written = save_or_keep(other, path)
    assert written and load_rule(path).commit == "c" * 40 and [m.name for m in kept.fit_set] == [members[0].name]
    aside = list(tmp_path.glob("rule.replaced-*.yaml"))
    assert len(aside) == 1 and load_rule(aside[0]).commit == "a" * 40  # the earlier rule is not lost


def test_held_out_rows_are_the_headline_and_carry_a_bootstrap_interval():
    rows = [{"arch": f"a{i}", "role": "held_out", "predicted_artefact_rate": p, "artefact_rate": m,
             "prediction_seeds": 48, "measure_seeds": 200, "prediction_seconds": 1.0, "train_seconds": 20.0}
            for i, (p, m) in enumerate([(0.1, 0.15), (0.3, 0.4), (0.2, 0.3), (0.5, 0.6), (0.4, 0.5)])]
    fit = [{"arch": f"f{i}", "role": "fit", "predicted_artefact_rate": p, "artefact_rate": m, "prediction_seeds": 48,
            "measure_seeds": 200} for i, (p, m) in enumerate([(0.1, 0.5), (0.5, 0.1), (0.3, 0.3)])]
    c = compare("s", fit + rows)
    assert c.headline == "held-out" and c.correlations["artefact_rate"].rho == pytest.approx(1.0)
    assert c.correlations["artefact_rate"].n == 5
    assert c.by_role["fit"]["artefact_rate"].rho == pytest.approx(-1.0)  # in-sample rows kept apart
    assert c.by_role["all"]["artefact_rate"].n == 8
    corr = c.correlations["artefact_rate"]
    assert -1 <= corr.low <= corr.rho and corr.high == pytest.approx(1.0) and corr.low < 1  # seeds resampled
    # without seed counts and with well separated values, resampling architectures alone keeps the ranking:
    # every draw with two distinct values has rho = 1
    assert bootstrap_rho([1, 2, 3, 4, 5], [10, 20, 30, 40, 50]) == (1.0, 1.0)
    low, high = bootstrap_rho([1, 2, 3, 4, 5, 6], [1, 3, 2, 5, 4, 6])
    assert low < spearman([1, 2, 3, 4, 5, 6], [1, 3, 2, 5, 4, 6])[0] < high == 1.0
    assert all(math.isnan(v) for v in bootstrap_rho([1, 2], [1, 2]))
    assert compare("s", rows).headline == "all"  # no fit set: every row counts
    from ablate.design.report import verdict

    early = compare("s", fit + rows[:2])  # a study read while its held-out grid runs: 2 rows, no ranking yet
    line = next(x for x in verdict(early) if x.startswith("- **artefact_rate**"))
    assert "2 architectures with both figures" in line and line.endswith("not decided yet")
    line = next(x for x in verdict(c) if x.startswith("- **artefact_rate**"))
    assert "1.00" in line and ": meets; a perfect predictor at these seed counts reaches median" in line


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
    split = {**base, "architectures": {"r1": {"name": "resnet", "depth": 1}, "r2": {"name": "resnet", "depth": 2},
                                       "u1": {"name": "unet", "depth": 1}}, "fit": ["r1", "u1"]}
    d = parse_definition(split)
    assert d.fit == ("r1", "u1")
    with pytest.raises(ValueError, match=r"fit names \['r9'\], which are not in architectures"):
        parse_definition({**split, "fit": ["r1", "r9"]})
    with pytest.raises(ValueError, match="every architecture is in the fit set; hold at least one out"):
        parse_definition({**split, "fit": ["r1", "r2", "u1"]})
    with pytest.raises(ValueError, match="fit must list architecture names"):
        parse_definition({**split, "fit": "r1"})
    # a subset is a definition of its own that reads back from its file (workers load it from there)
    held = d.subset(["r2"], "", {"rf_fraction": 0.5})
    assert held.name == "d-fingers" and held.fit == () and held.fixed["rf_fraction"] == 0.5
    assert held.space[-1].choices == ("r2",) and held.trials == 1
    assert parse_definition(held.to_raw()) == held


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
    (r1,) = (tmp_path / "runs/sweeps/tiny_design-fingers/samples").glob("trial*-r1.pt")  # queued by cost, not order
    saved = torch.load(r1, weights_only=True)
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


def test_tiny_design_study_fits_the_rule_on_its_fit_set_and_predicts_the_held_out_grid(in_tmp):
    tmp_path = in_tmp
    raw = dict(name="tiny_split", kind="design",
               datasets={"fingers": {"name": "fingers", "size": 28, "count": 60, "n": 40}},
               architectures={"r1": {"name": "resnet", "depth": 1}, "ua": {"name": "unet", "depth": 1, "attention": True},
                              "r2": {"name": "resnet", "depth": 2}, "r1c": {"name": "resnet", "depth": 1,
                                                                            "padding": "circular"},
                              "u1": {"name": "unet", "depth": 1}},
               fit=["r1", "ua"],
               fixed={"width": 8, "max_steps": 20, "calibration_seeds": 2, "measure_seeds": 6},
               objectives={"coherence": "maximize", "artefact_rate": "minimize"},
               sampler={"name": "grid", "seed": 0}, seeds=4, steps=4)
    path = write_definition(tmp_path, raw)
    result = run_design_study(path, progress=False)
    (c,) = result.comparisons
    folder = tmp_path / "runs/sweeps/tiny_split"
    rule_file = load_rule(folder / "rule-fingers.yaml")
    assert [m.name for m in rule_file.fit_set] == ["r1", "ua"] and rule_file.rule.attention == "fitted"
    assert [m.attention for m in rule_file.fit_set] == [False, True]
    assert c.rule["rule"] == rule_file.rule.knobs() and c.rule["commit"] == rule_file.commit
    roles = {r["arch"]: r["role"] for r in c.rows}
    assert roles == {"r1": "fit", "ua": "fit", "r2": "held_out", "r1c": "held_out", "u1": "held_out"}
    by_arch = {r["arch"]: r for r in c.rows}
    for name, r in by_arch.items():
        # every row, fit or held out, is predicted with the fitted rule's schedule
        expect = predict_oracle(raw["architectures"][name], (1, 28, 28), rule_file.rule, steps=4)
        assert r["k_schedule"] == " ".join(map(str, expect.ks)), name
        assert isinstance(r["predicted_artefact_rate"], float) and isinstance(r["artefact_rate"], float)
    # the fit rows' calibrations are what the rule was fitted on
    assert tuple(int(k) for k in by_arch["r1"]["els_k"].split()) == rule_file.fit_set[0].ks
    for name in ("r2", "r1c", "u1"):
        r = by_arch[name]
        for key in ("artefact_map_iou_chance", "artefact_hit_rate_chance", "conditional_artefact_rate", "es_r2",
                    "els_r"):
            assert key in r, (name, key)
    assert by_arch["u1"]["stride"] == 2 and "stride2" in " ".join(p.name for p in (tmp_path / "runs/sweeps").rglob(
        "*calibration-els-zeros-stride2-*"))  # the UNet is calibrated with its stride
    assert c.headline == "held-out" and c.correlations["artefact_rate"].n == 3 and c.by_role["all"]["artefact_rate"].n == 5
    text = result.report["markdown"].read_text()
    assert "### held-out architectures" in text and "### fit (in-sample) architectures" in text
    assert "rule-fingers.yaml" in text and "mismatched seeds" in text
    assert (folder / "tiny_split-fingers-per-step.png").is_file()  # which noise levels ELS explains, per network
    # --report-only redraws from the two studies and the rule file; --rule re-scores with a given file and
    # (same constants) trains nothing new
    again = run_design_study(path, progress=False, report_only=True)
    assert [r["arch"] for r in again.comparisons[0].rows] == [r["arch"] for r in c.rows]
    rescored = run_design_study(path, progress=False, rule=folder / "rule-fingers.yaml")
    held = [r for r in rescored.comparisons[0].rows]
    assert [r["arch"] for r in held] == ["r2", "r1c", "u1"]
    assert [r["train_seconds"] for r in held] == [by_arch[r["arch"]]["train_seconds"] for r in held]
    # a second grid chosen later joins the study: predicted with its rule, trained, and shown in its report
    more = dict(raw, name="tiny_more", datasets={"fingers_n20": {"name": "fingers", "size": 28, "count": 60, "n": 20}},
                architectures={"r2": {"name": "resnet", "depth": 2}}, joins={"definition": path.name,
                                                                              "datasets": {"fingers_n20": "fingers"}})
    del more["fit"]
    more_path = write_definition(tmp_path, more)
    joined = run_design_study(more_path, progress=False)
    more_def = load_definition(more_path, "fingers_n20")
    assert "1 complete" in status_lines(more_def, default_storage(more_def))[0]  # its study, under the joined rule
    rows = joined.comparisons[0].rows
    assert [(r["arch"], r["grid"], r["n"]) for r in rows if r["grid"] == "tiny_more"] == [("r2", "tiny_more", 20)]
    new = next(r for r in rows if r["grid"] == "tiny_more")
    expect = predict_oracle(raw["architectures"]["r2"], (1, 28, 28), rule_file.rule, steps=4)
    assert new["k_schedule"] == " ".join(map(str, expect.ks)) and new["role"] == "held_out"
    assert {r["label"] for r in rows if r["arch"] == "r2"} == {"r2 n=40", "r2 n=20"}  # one name, two sizes
    data = json.loads((folder / "report.json").read_text())["datasets"]["fingers"]
    assert [(r["architecture"], r["n"], r["grid"]) for r in data["rows"]][-1] == ("r2", 20, "tiny_more")
    assert {"coherence", "artefact_rate", "novelty", "memorisation"} <= set(data["rows"][0]["trained"])
    assert data["rows"][0]["parameters"] > 0 and data["rows"][2]["receptive_field"] == 9  # resnet depth 2
    assert "free" in data["summary"] and "levels" in data["summary"] and data["summary"]["per_seed"]["flags"]
    assert "against the free descriptors" in joined.report["markdown"].read_text()
    # the attention term fitted on the fit set's attention network alone, then every row it changes re-predicted
    # without training: at w = 0 the mixture is the rule's ELS, so the same seeds give the same figures again
    same = repredict_study(path, "fingers", progress=False, weights=(0.0,))
    assert same.fit.weight == 0.0 and same.fit.rows == ("ua",)
    assert load_rule(folder / "rule-fingers-attention.yaml").rule.attention_weight == 0.0
    redone = [r for r in same.after.rows if r.get("repredicted")]
    assert [r["arch"] for r in redone] == ["ua"]  # the only attention network; held-out and joined rows kept
    for key in ("predicted_coherence", "predicted_artefact_rate", "predicted_novelty"):
        assert redone[0][key] == pytest.approx(redone[0][f"before_{key}"], abs=1e-9)
    (folder / "repredicted-fingers.json").unlink()
    (folder / "rule-fingers-attention.yaml").unlink()
    fitted = repredict_study(path, "fingers", progress=False, weights=(0.0, 1.0))
    ua = by_arch["ua"]
    losses = [sum(abs(e["rows"]["ua"][m] - ua[m]) for m in ("coherence", "artefact_rate")) for e in fitted.fit.table]
    assert [e["weight"] for e in fitted.fit.table] == [0.0, 1.0]
    assert fitted.fit.weight == (0.0, 1.0)[min(range(2), key=lambda i: (round(losses[i], 9), i))]
    assert "attention_weight` fitted on the fit set's attention networks (ua)" in fitted.report.read_text()


def test_running_one_dataset_keeps_the_others_results_in_the_shared_report(in_tmp, capsys):
    """One report for the whole file: a run (or --report-only) of one dataset redraws it with every dataset that
    has results, in the file's order, and says which it left out because they were never run."""
    raw = dict(name="two_sets", kind="design",
               datasets={"fingers": {"name": "fingers", "size": 28, "count": 40, "n": 30},
                         "fingers_b": {"name": "fingers", "size": 28, "count": 40, "n": 30, "split_seed": 1}},
               architectures={"r1": {"name": "resnet", "depth": 1}, "r2": {"name": "resnet", "depth": 2}},
               fixed={"width": 8, "max_steps": 10, "calibration_seeds": 2, "calibration_k_max": 3,
                      "measure_seeds": 4},
               objectives={"coherence": "maximize", "artefact_rate": "minimize"},
               sampler={"name": "grid", "seed": 0}, seeds=4, steps=3)
    path = write_definition(in_tmp, raw)
    first = run_design_study(path, ["fingers_b"], progress=True)
    assert [c.study for c in first.comparisons] == ["two_sets-fingers_b"]
    assert "report: fingers left out" in capsys.readouterr().out  # never run: nothing to show, and it says so
    text = first.report["markdown"].read_text()
    assert "two_sets-fingers_b" in text and "two_sets-fingers-scatter" not in text
    second = run_design_study(path, ["fingers"], progress=False)
    assert [c.study for c in second.comparisons] == ["two_sets-fingers"]  # only the asked dataset is returned
    text = second.report["markdown"].read_text()
    assert text.index("two_sets-fingers-scatter") < text.index("two_sets-fingers_b-scatter")  # the file's order
    only = run_design_study(path, ["fingers_b"], progress=False, report_only=True)
    assert only.report["markdown"].read_text() == text  # unchanged by a one-dataset --report-only


def test_binomial_standard_error_of_a_rate():
    from ablate.design.plots import binomial_se
    assert binomial_se(0.5, 100) == pytest.approx(0.05) and binomial_se(0.9, 36) == pytest.approx(0.05)
    assert binomial_se(0.0, 24) == 0.0 and binomial_se(0.5, None) == 0.0


def test_report_only_on_an_unfinished_fit_set_names_what_is_missing_and_fits_no_rule(in_tmp):
    """Between sessions the fit study may hold one finished architecture of two: the rule is fitted on the whole
    fit set or not at all, so looking at the study says what is missing and how to resume, and writes no rule."""
    from ablate.design.study import part, study_dir
    from ablate.sweep.definition import load_definition
    from ablate.sweep.storage import default_storage
    from ablate.sweep.workers import run_sweep

    raw = dict(name="tiny_unfinished", kind="design",
               datasets={"fingers": {"name": "fingers", "size": 28, "count": 60, "n": 40}},
               architectures={"r1": {"name": "resnet", "depth": 1}, "r2": {"name": "resnet", "depth": 2},
                              "r1c": {"name": "resnet", "depth": 1, "padding": "circular"}},
               fit=["r1", "r2"], fixed={"width": 8, "max_steps": 20, "calibration_seeds": 2, "calibration_k_max": 5,
                                        "measure_seeds": 4},
               objectives={"coherence": "maximize", "artefact_rate": "minimize"},
               sampler={"name": "grid", "seed": 0}, seeds=4, steps=4)
    path = write_definition(in_tmp, raw)
    d = load_definition(path, "fingers")
    fit_def = part(d, d.fit, "-fit", {"role": "fit"}, study_dir(path), report_only=False)
    study = run_sweep(fit_def, default_storage(d), trials=1, progress=False)  # one of the two fit trials
    assert [t.params["arch"] for t in study.get_trials() if t.state == TrialState.COMPLETE] == ["r1"]
    with pytest.raises(ValueError, match=r"tiny_unfinished-fingers-fit: the rule is fitted on the whole fit set "
                                         r"\(r1, r2\), and r2 \(not started\) has no completed trial yet; the study "
                                         r"is still running or was stopped: resume it with python -m ablate.design "
                                         r"design-before-training --definition .*tiny_unfinished.yaml --dataset fingers"):
        run_design_study(path, progress=False, report_only=True)
    assert not (study_dir(path) / "rule-fingers.yaml").exists()
    from ablate.sweep.storage import create_study, open_storage
    from ablate.sweep.workers import status_lines

    create_study(fit_def, open_storage(default_storage(d)), trials=2)  # queue r2 (nothing runs it)
    lines = status_lines(d, default_storage(d))  # the fit part, though no held-out study exists yet
    assert lines[0].startswith("tiny_unfinished-fingers-fit (sqlite:///") and "1 complete" in lines[0]
    assert any(line.startswith("  trial 0 arch=r1: complete in ") for line in lines)
    assert "  trial 1 arch=r2: queued" in lines  # queued with its knobs, not yet run


def test_an_architecture_under_the_agreement_bar_gets_a_measured_explanation():
    from ablate.design.report import agreement_explanation

    ab = "0.01 0.1 0.5 0.9"
    assert agreement_explanation({"arch": "a", "els_r": 0.9, "els_r2_by_step": "0.1 0.9 0.9 0.9",
                                  "els_alpha_bar": ab}) is None  # at the bar: nothing to explain
    row = {"arch": "deep", "els_r": 0.6, "els_alpha_bar": ab, "els_candidates": "3 5 7 15",
           "els_r2_by_step": "0.20 0.70 0.90 0.95", "es_r2_by_step": "0.10 0.85 0.91 0.50",
           "is_r2_by_step": "0.70 0.10 0.10 0.10"}
    text = agreement_explanation(row)
    assert "under 0.64 at 1 of 4 steps (alpha_bar 0.01: 0.20) and 0.70-0.95 at the others" in text
    # ES beats ELS by more than the margin at step 2 only (0.91 against 0.90 is within it); IS at step 1
    assert "ES explains it better at 1 step (alpha_bar 0.1: r² 0.85 against ELS 0.70)" in text
    assert "candidates up to k = 15" in text and "IS explains it better at 1 step (alpha_bar 0.01: r² 0.70" in text
    noisy = {**row, "is_r2_by_step": "0.40 0.10 0.10 0.10"}  # better than ELS at step 1 but explaining nothing
    assert "IS explains" not in agreement_explanation(noisy)
    smooth = {**row, "els_r2_by_step": "0.80 0.90 0.95 0.99", "es_r2_by_step": "0 0 0 0", "is_r2_by_step": "0 0 0 0"}
    text = agreement_explanation(smooth)
    assert "ELS explains every noise level (r² 0.80-0.99)" in text
    assert "because the per-step differences compound" in text
    alone = {**row, "es_r2_by_step": "0 0 0 0", "is_r2_by_step": "0 0 0 0"}
    assert "neither ES nor IS explains it better at any step, so the final samples part where ELS fails" in \
        agreement_explanation(alone)
    assert "no per-step figures" in agreement_explanation({"arch": "x", "els_r": 0.5})


def test_the_seed_noise_ceiling_of_a_rank_correlation_has_known_answers():
    """A perfect predictor of well-separated rates ranks them exactly; of equal rates, at random."""
    from ablate.design.compare import ceiling_rho

    apart = [0.1, 0.3, 0.5, 0.7, 0.9]
    median, at_bar = ceiling_rho(apart, [10**6] * 5, [10**6] * 5)
    assert median == 1.0 and at_bar == 1.0
    tied = [0.5] * 8
    median, at_bar = ceiling_rho(tied, [48] * 8, [200] * 8)
    assert abs(median) < 0.1 and at_bar < 0.05  # rho of two independent rankings of 8: P(rho >= 0.8) ~ 0.01
    # few seeds blur near rates: the same spread of 0.04 is ranked well at 10^5 seeds, poorly at 48
    near = [0.78, 0.79, 0.80, 0.81, 0.82]
    assert ceiling_rho(near, [10**5] * 5, [10**5] * 5)[0] > 0.95 > 0.5 > ceiling_rho(near, [48] * 5, [200] * 5)[0]
    assert all(math.isnan(v) for v in ceiling_rho([0.1, 0.9], [48, 48], [200, 200]))  # fewer than 3 rates


def test_the_committed_design_report_regenerates_byte_identical(tmp_path, monkeypatch):
    """The committed studies (Optuna databases, rule files, samples) redraw the committed report exactly: what
    the README quotes is what the code computes from them. Run on a copy, as the README's --report-only."""
    import shutil

    from ablate.design.__main__ import main as design
    from ablate.paths import ENV

    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / "studies", tmp_path / "studies")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV, "studies")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    design(["design-before-training", "--definition", str(root / "sweeps" / "design_before_training.yaml"),
            "--report-only"])
    for name in ("report.md", "report.html"):
        made = (tmp_path / "studies" / "sweeps" / "design_before_training" / name).read_bytes()
        assert made == (root / "studies" / "sweeps" / "design_before_training" / name).read_bytes(), name
