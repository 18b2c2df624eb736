"""The design study's free baselines and per-seed figures, against hand computations and known answers."""
import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from ablate.design.baselines import (axis_correlations, baselines, free_prediction, level_error, partial_spearman,
                                     regression)
from ablate.design.compare import compare
from ablate.design.export import report_data
from ablate.design.plots import axis_plot
from ablate.design.seeds import flag_agreement, kappa, mapping_gain, pooled_locations
from ablate.sweep import parse_definition


def row(arch, rf, params=1000, depth=2, stride=1, n=200, role="held_out", **figures):
    return {"arch": arch, "trial": 0, "role": role, "local_receptive_field": rf, "parameters": params, "depth": depth,
            "stride": stride, "n": n, "prediction_seeds": 48, "measure_seeds": 200, **figures}


def test_partial_spearman_is_the_partial_correlation_of_ranks():
    p, m, c = [3, 1, 4, 1.5, 5, 9, 2.6], [2, 7, 1, 8, 2.8, 1.8, 2.9], [10, 30, 20, 50, 40, 70, 60]
    r = lambda a, b: spearmanr(a, b).statistic  # noqa: E731
    hand = (r(p, m) - r(p, c) * r(m, c)) / math.sqrt((1 - r(p, c) ** 2) * (1 - r(m, c) ** 2))
    assert partial_spearman(p, m, c) == pytest.approx(hand, abs=1e-12)
    assert partial_spearman(p, p, c) == pytest.approx(1.0)  # a perfect ranking stays perfect given anything
    assert math.isnan(partial_spearman(c, m, c))  # the control ranks the prediction perfectly: nothing left


def test_free_descriptors_rank_in_their_fixed_direction():
    rows = [row("a", 9), row("b", 25)]
    assert free_prediction(rows, "receptive_field", "coherence") == [9, 25]  # wider: more coherent
    assert free_prediction(rows, "receptive_field", "artefact_rate") == [-9, -25]  # wider: fewer artefacts
    assert free_prediction([row("a", 9, n=20), row("b", 9, n=400)], "n", "memorisation_rate") == [-20, -400]


def test_the_descriptor_regression_recovers_a_linear_law_from_the_fit_set_alone():
    law = lambda rf: 0.1 + 0.2 * math.log(rf)  # noqa: E731
    fit = [row(f"f{rf}", rf, role="fit", coherence=law(rf)) for rf in (5, 9, 17)]
    held = [row("h1", 13), row("h2", 33)]
    assert regression(fit, held, "coherence", ridge=1e-12) == pytest.approx([law(13), min(law(33), 1.0)], abs=1e-6)
    shrunk = regression(fit, held, "coherence", ridge=10.0)  # the penalty pulls toward the fit set's mean
    mean = np.mean([law(rf) for rf in (5, 9, 17)])
    assert abs(shrunk[1] - mean) < abs(law(33) - mean)


def test_level_error_has_known_values():
    err = level_error([0.1, 0.2, 0.3], [0.2, 0.4, 0.3], "novelty")
    assert err.mae == pytest.approx(0.1) and err.bias == pytest.approx(0.1) and err.n == 3
    assert err.low <= err.mae <= err.high
    exact = level_error([0.5, 0.5], [0.5, 0.5], "coherence", [48, 48], [200, 200])
    assert exact.mae == 0 and exact.high > 0  # seed noise alone leaves an error


def test_baselines_name_the_best_free_ranking_and_the_oracles_partial_rho():
    fit = [row(f"f{i}", rf, role="fit", coherence=c, predicted_coherence=c - 0.1)
           for i, (rf, c) in enumerate([(9, 0.3), (17, 0.5), (25, 0.7)])]
    # held out: the receptive field ranks coherence exactly; the oracle gets one pair wrong
    held = [row(f"h{i}", rf, params=1000 + 7 * (i % 2), coherence=c, predicted_coherence=p)
            for i, (rf, c, p) in enumerate([(5, 0.2, 0.1), (11, 0.4, 0.35), (13, 0.45, 0.3), (21, 0.6, 0.5),
                                            (31, 0.8, 0.7)])]
    b = baselines(fit, held)
    assert b.free["coherence"]["receptive_field"].rho == pytest.approx(1.0)
    assert b.best["coherence"][0] in ("receptive_field", "regression") and b.best["coherence"][1].rho == pytest.approx(1)
    assert math.isnan(b.free["coherence"]["depth"].rho)  # constant: no ranking
    assert b.levels["coherence"].bias == pytest.approx(np.mean([0.1, 0.05, 0.15, 0.1, 0.1]))
    assert b.corrected["coherence"].mae < b.levels["coherence"].mae  # the fit set's bias (+0.1) removed
    c = compare("s", fit + held)
    assert c.baselines is not None and c.correlations["coherence"].rho == pytest.approx(0.9)


def test_the_data_size_axis_ranks_each_architecture_along_n(tmp_path):
    rows = [row("u", 102, n=n, novelty=v, predicted_novelty=p, memorisation_rate=m, predicted_memorisation_rate=q)
            for n, v, p, m, q in [(20, 0.9, 1.0, 0.9, 0.8), (100, 1.2, 1.1, 0.5, 0.6), (400, 1.4, 1.5, 0.1, 0.2)]]
    rows += [row("r", 25, n=200, novelty=1.3, predicted_novelty=1.3)]  # one size only: not an axis
    axis = axis_correlations(rows)
    assert list(axis) == ["u"]
    assert axis["u"]["novelty"]["oracle"].rho == pytest.approx(1.0) and axis["u"]["novelty"]["n"].rho == pytest.approx(1)
    assert axis["u"]["memorisation_rate"]["n"].rho == pytest.approx(1.0)  # more data, less memorised
    c = compare("s", rows)
    assert list(c.axis) == ["u"] and axis_plot(c, tmp_path / "axis.png").stat().st_size > 1000


def test_cohens_kappa_known_values():
    a, b = np.array([1, 1, 0, 0], bool), np.array([1, 0, 0, 0], bool)
    assert kappa(a, b) == pytest.approx(0.5)  # observed 3/4, chance 1/2
    assert kappa(a, a) == pytest.approx(1.0) and kappa(a, ~a) == pytest.approx(-1.0)
    assert math.isnan(kappa(np.zeros(4, bool), np.zeros(4, bool)))


def test_flag_agreement_is_far_above_permuted_seeds_only_when_the_seeds_match():
    rng = np.random.default_rng(0)
    flags = rng.random(60) < 0.4
    same = flag_agreement([(flags, flags)])
    assert same.kappa == pytest.approx(1.0) and same.above_chance and same.p_value < 0.01
    assert abs(same.chance) < 0.1  # shuffled seeds share nothing
    unrelated = flag_agreement([(flags, rng.random(60) < 0.4)])
    assert not unrelated.above_chance and unrelated.low < 0 < unrelated.high + 0.3


def test_pooled_locations_and_the_mapping_gain_known_answers():
    maps = torch.zeros(6, 12, 12, dtype=torch.bool)
    for s in range(6):
        maps[s, 2 * s, 2 * s] = True  # each seed's artefact at its own place, two pixels from the next
    loc = pooled_locations([(maps, maps)])
    assert loc.hit_rate == 1 and loc.iou == 1 and loc.seeds == 6 and loc.hit_chance == 0 and loc.iou_chance == 0
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 1, 6, 6, generator=g), torch.randn(5, 1, 6, 6, generator=g)
    gains = mapping_gain({"A": {"predicted": a, "trained": a}, "B": {"predicted": b, "trained": b}})
    assert gains["A"].own == pytest.approx(1.0) and gains["A"].beats == 1 and gains["A"].of == 1
    assert gains["B"].others < 0.5


def test_report_json_follows_the_schema_and_writes_no_nan():
    fit = [row("f", 17, role="fit", coherence=0.6, predicted_coherence=0.5, novelty=1.3, predicted_novelty=1.2)]
    held = [row(f"h{i}", rf, coherence=c, predicted_coherence=c, novelty=1.0, predicted_novelty=float("nan"))
            for i, (rf, c) in enumerate([(9, 0.2), (13, 0.4), (25, 0.7)])]
    c = compare("study-mnist5k", fit + held)
    data = report_data([c])
    text = json.dumps(data, allow_nan=False)  # NaN became null
    rows = json.loads(text)["datasets"]["study-mnist5k"]["rows"]
    assert [r["role"] for r in rows] == ["fit", "held_out", "held_out", "held_out"]
    assert set(rows[1]) >= {"architecture", "role", "n", "receptive_field", "parameters", "predicted", "trained",
                            "seeds"}
    assert rows[1]["predicted"]["novelty"] is None and rows[1]["seeds"] == {"predicted": 48, "trained": 200}
    assert rows[1]["receptive_field"] == 9 and rows[1]["trained"]["coherence"] == 0.2


def test_joins_is_validated():
    base = dict(name="more", kind="design", datasets={"a": {"name": "digits", "n": 20}},
                architectures={"r": {"name": "resnet", "depth": 1}}, objectives={"coherence": "maximize"},
                sampler={"name": "grid"})
    with pytest.raises(ValueError, match="no fit set of its own"):
        parse_definition({**base, "architectures": {"r": {"name": "resnet"}, "s": {"name": "resnet", "depth": 2}},
                          "fit": ["r"], "joins": {"definition": "x.yaml", "datasets": {"a": "a"}}}, dataset="a")
    with pytest.raises(ValueError, match="must map each dataset"):
        parse_definition({**base, "joins": {"definition": "x.yaml", "datasets": {"b": "a"}}}, dataset="a")
    with pytest.raises(ValueError, match=r"joins must be \{definition"):
        parse_definition({**base, "joins": "x.yaml"}, dataset="a")
    d = parse_definition({**base, "joins": {"definition": "x.yaml", "datasets": {"a": "mnist5k"}}}, dataset="a")
    assert d.joins == ("x.yaml", "mnist5k")
