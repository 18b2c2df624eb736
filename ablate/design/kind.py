"""One architecture of the design-before-training study: predict, then train and measure.

1. **Predict** (no training): the mapping rule (:mod:`ablate.design.mapping`) turns the
   architecture into an ELS machine; it samples the study's fixed seeds and the metric
   suite scores them (``predicted_*``). This phase is timed (``prediction_seconds``).
2. **Train and measure**: the same architecture is trained at the sweep's budget, sampled
   from the same seeds (and, with ``measure_seeds``, more: sampling a trained network is
   cheap, and a rate from 24 samples has a standard error near 0.1) and scored with the
   same suite; its agreement with a *calibrated*
   oracle is measured as in ``evaluate.py`` (:func:`ablate.sweep.train_kind.train_and_measure`).
3. **Compare, per architecture**: ``prediction_r2`` (median over seeds of the r^2 between
   the predicted and the trained sample from the same seed) and, where the dataset has an
   artefact map, ``artefact_map_iou`` (do the predicted artefacts sit where the trained
   network's are?). Samples of both are saved for the report.

On token data (theory section 12) the same trial predicts the architecture's discrete machine (nothing fitted)
and compares texts seed by seed: :func:`ablate.design.text.run_text_design_trial`; its study and report are
:mod:`ablate.design.text_study`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import torch

from ablate.config import apply_overrides, build_config, to_dict
from ablate.design.mapping import MappingRule, is_attention, predict_oracle
from ablate.design.text import PREDICTED_TEXT, run_text_design_trial
from ablate.evaluation import EvalConfig
from ablate.metrics import FingerDetector, artefact_locations, conditional_artefact_rate, pairwise_agreement
from ablate.models import Geometry, describe
from ablate.oracle import OracleConfig, build_oracle
from ablate.sampling import sample
from ablate.sweep import train_kind
from ablate.sweep.context import TrialContext
from ablate.sweep.kinds import TrialKind, overrides, register_trial_kind, trial_settings
from ablate.viz import save_grid

PREDICTED = ("coherence", "artefact_rate", "fidelity", "novelty", "memorisation_rate")
# a design trial reports the trained network's figures (as a train trial) and the oracle's, prefixed
OBJECTIVES = train_kind.OBJECTIVES + tuple(
    f"predicted_{m}" for m in dict.fromkeys(PREDICTED + PREDICTED_TEXT)) + (
    "prediction_r2", "prediction_seconds", "artefact_map_iou", "prediction_agreement", "prediction_gain")
SPELLINGS = {**train_kind.SPELLINGS, "predicted_artifact_rate": "predicted_artefact_rate"}
# the architecture and its training (the train kind's knobs), the mapping rule's constants, the verification's
# calibration settings, and how many seeds the trained network is scored on (``measure_seeds``, at least
# ``seeds``: the first ``seeds`` are the oracle's, compared seed by seed; the rest only sharpen the rates)
KNOBS = {**train_kind.KNOBS, "rf_fraction": "rule.rf_fraction", "shape": "rule.shape", "k_low": "rule.k_low",
         "attention_rule": "rule.attention", "attention_rf_fraction": "rule.attention_rf_fraction",
         "attention_shape": "rule.attention_shape", "attention_weight": "rule.attention_weight",
         "calibration_seeds": "eval.calibration_seeds",
         "calibration_k_max": "eval.k_max", "calibration_stride": "eval.stride",
         "measure_seeds": "trial.measure_seeds", "role": "trial.role"}
ROLES = ("fit", "held_out")


def build(definition, knobs: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train": TrainConfig, "rule": MappingRule, "eval": EvalConfig}`` of a design trial: the verification
    calibrates ELS (stride-aware, candidates up to the receptive field unless ``calibration_k_max``) with ES and
    IS as references and per-step agreement, on at least 2 of the study's seeds."""
    sections = overrides(KIND, knobs)
    rule = build_config(MappingRule, apply_overrides({}, sections.get("rule", [])), "rule.")
    base = EvalConfig(machines=("els", "es", "ideal"), seeds=max(2, definition.seeds), calibration_seeds=4,
                      stride="auto", steps=definition.steps, samplers=("ddim",), per_step=True,
                      wandb_mode="disabled", progress=False)
    evaluation = build_config(EvalConfig, apply_overrides(to_dict(base), sections.get("eval", [])), "eval.")
    train = train_kind.train_config(definition, knobs, kind=KIND)
    if train.conditional:
        raise ValueError("the design study compares unconditional samples; remove conditional=true")
    settings = trial_settings(KIND, knobs)
    m = settings.get("measure_seeds", definition.seeds)
    if not isinstance(m, int) or isinstance(m, bool) or m < definition.seeds:
        raise ValueError(f"measure_seeds={m!r} must be an integer >= seeds ({definition.seeds}): the trained network "
                         "is scored on at least the oracle's seeds")
    if settings.get("role", "held_out") not in ROLES:
        raise ValueError(f"role={settings['role']!r}; allowed: {', '.join(ROLES)}")
    return {"train": train, "rule": rule, "eval": evaluation}


def check(definition, knobs: Mapping[str, Any], data_shape: tuple[int, ...]) -> None:
    build(definition, knobs)
    train_kind.check(definition, knobs, data_shape)  # the model fits the data (tokens or images)
    if len(data_shape) == 1 and definition.fit:
        raise ValueError(f"fit={list(definition.fit)}: a token architecture's machine has no constant to fit "
                         "(theory section 12: the window its receptive field covers); drop fit")


def command(definition) -> str:
    where = definition.path or "<definition>"
    named = definition.path is not None and Path(definition.path).name != "design_before_training.yaml"
    return ("python -m ablate.design design-before-training" + (f" --definition {where}" if named else "")
            + (f" --dataset {definition.dataset}" if definition.dataset else ""))


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def predict(ctx: TrialContext, knobs: dict[str, Any], device: str) -> tuple[dict[str, Any], torch.Tensor]:
    """The oracle's prediction for an architecture: its figures (``predicted_*``, the rule's geometry and
    schedule, ``prediction_seconds``) and its samples ``[S, C, H, W]`` from the study's seeds."""
    start = time.perf_counter()
    configs = build(ctx.definition, knobs)
    prediction = predict_oracle(configs["train"].model, ctx.data.shape, configs["rule"], ctx.definition.steps)
    seeds, _ = ctx.seeds_and_labels(False)
    oracle = build_oracle(prediction.oracle, ctx.data.train.to(device))
    samples = sample(oracle, seeds, ctx.data.shape, steps=ctx.definition.steps, device=device).samples.cpu()
    scores = ctx.suite.score(samples)
    figures = {f"predicted_{m}": scores[m] for m in PREDICTED if m in scores}
    return {**geometry_figures(prediction.geometry, ctx), **figures, **prediction.describe(),
            "prediction_seconds": time.perf_counter() - start, "prediction_seeds": len(seeds)}, samples


def artefact_figures(ctx: TrialContext, predicted: torch.Tensor, trained: torch.Tensor,
                     trained_all: torch.Tensor) -> dict[str, Any]:
    """Where the artefacts are, seed by seed (:func:`~ablate.metrics.artefact_locations`: hit rate and map
    IoU against mismatched seeds, which is chance), and on ``fingers`` the wrong-count rate among samples that
    are hands at all, predicted and trained (``trained_all``: every measured seed)."""
    detector = ctx.suite.detector
    loc = artefact_locations(detector.maps(predicted), detector.maps(trained))
    out = {"artefact_map_iou": loc.iou, "artefact_map_iou_chance": loc.chance_iou, "artefact_hit_rate": loc.hit_rate,
           "artefact_hit_rate_chance": loc.chance_hit_rate, "artefact_seeds": loc.seeds}
    if isinstance(detector, FingerDetector):
        out["predicted_conditional_artefact_rate"], out["predicted_hands"] = conditional_artefact_rate(
            predicted, detector.fingers)
        out["conditional_artefact_rate"], out["hands"] = conditional_artefact_rate(trained_all, detector.fingers)
    return out


def geometry_figures(geometry: Geometry, ctx: TrialContext) -> dict[str, Any]:
    """What a fit row needs to refit the rule: the architecture's geometry and the largest patch its machine
    allows on the study's images."""
    allowed = OracleConfig(machine="els", boundary=geometry.padding).max_patch_size(*ctx.data.shape[1:])
    return {"receptive_field": geometry.receptive_field, "local_receptive_field": geometry.local_receptive_field,
            "stride": geometry.stride, "boundary": geometry.padding, "attention": is_attention(geometry),
            "allowed_k": allowed}


def run_design_trial(ctx: TrialContext, knobs: dict[str, Any], tag: str, trial=None,
                     device: str | None = None) -> dict[str, Any]:
    """One architecture: predicted by the rule (skipped for the fit set, ``role: fit``, whose calibrations
    fit the rule), trained, and measured against the calibrated ELS (stride-aware, candidates up to the
    receptive field unless ``calibration_k_max``), with ES and IS as references and per-step agreement."""
    device = device or default_device()
    configs = build(ctx.definition, knobs)
    settings = trial_settings(KIND, knobs)
    role = str(settings.get("role", "held_out"))
    measure_seeds = int(settings.get("measure_seeds", ctx.definition.seeds))  # >= seeds (checked by build)
    if configs["train"].model.tokens:  # theory section 12: the discrete machine, compared as texts
        return {**run_text_design_trial(ctx, configs["train"].model, tag, lambda seeds: train_kind.train_and_measure(
            ctx, knobs, tag, trial, configs["eval"], device, seeds=seeds, kind=KIND), measure_seeds),
            "role": role, "device": device}
    if role == "fit":
        predicted_figures, predicted = geometry_figures(describe(configs["train"].model), ctx), None
    else:
        predicted_figures, predicted = predict(ctx, knobs, device)
    measured = train_kind.train_and_measure(ctx, knobs, tag, trial, configs["eval"], device, seeds=measure_seeds,
                                            kind=KIND)
    trained_all = measured.pop("samples")
    common = {**measured, **predicted_figures, "role": role, "agreement_grid": measured["grid"], "device": device,
              "measure_seeds": measure_seeds}
    if predicted is None:
        return common
    trained = trained_all[:len(predicted)]  # the oracle's seeds; the rest only sharpened the rates
    r2 = pairwise_agreement(predicted, trained)["r2"]
    out = Path(ctx.out_dir)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    torch.save({"predicted": predicted, "trained": trained}, out / "samples" / f"{tag}.pt")
    n = min(12, len(trained))
    grid = save_grid([predicted[:n], trained[:n]], ["oracle (predicted)", "trained network"],
                     out / "grids" / f"{tag}.png", title=f"{tag}: same seeds, before and after training")
    return {**common, "prediction_r2": float(r2.median()), **artefact_figures(ctx, predicted, trained, trained_all),
            "grid": str(grid)}


KIND = TrialKind("design", run_design_trial, OBJECTIVES, KNOBS, build, check, cost=train_kind.cost,
                 command=command, architectures="required", fit=True, spellings=SPELLINGS)


def register() -> None:
    """Make ``kind: design`` known to the sweep machinery (the ``ablate.trial_kinds`` entry point calls this)."""
    register_trial_kind(KIND)
