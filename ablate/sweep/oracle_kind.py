"""The ``oracle`` trial kind: sample the fixed seeds from a score machine (no training) and score them, the
cheap design-before-training exploration.

Its knobs alias :class:`~ablate.oracle.OracleConfig` keys: ``k`` is one patch size, ``k_min``, ``k_max`` and
``shape`` the ``power`` schedule (``k_min .. k_max``, an inverted range meaning a constant ``k_min``), and every
registered theory's own knobs (``mask_threshold``, ...) are knobs too.
"""
from __future__ import annotations

import time
from typing import Any, Mapping

from ablate.config import apply_overrides, build_config
from ablate.oracle import OracleConfig, build_oracle
from ablate.oracle.registry import knob_names
from ablate.sampling import sample
from ablate.sweep.context import TrialContext
from ablate.sweep.kinds import TrialKind, overrides, register_trial_kind, trial_settings
from ablate.viz import save_grid

OBJECTIVES = ("coherence", "accuracy", "artefact_rate", "fid", "fidelity", "novelty", "memorisation_rate")
SPELLINGS = {"artifact_rate": "artefact_rate"}
# the default when no k is given: the power schedule 3 .. 11
DEFAULTS = {"machine": "els", "boundary": "zeros", "patch_size": {"kind": "power", "k_min": 3, "k_max": 11, "shape": 1.0}}


def knobs() -> dict[str, str]:
    out = {"machine": "oracle.machine", "boundary": "oracle.boundary", "k": "oracle.patch_size",
           "k_min": "oracle.patch_size.k_min", "k_max": "oracle.patch_size.k_max",
           "shape": "oracle.patch_size.shape", "stride": "oracle.stride", "shift_radius": "oracle.shift_radius",
           "position_bandwidth": "oracle.position_bandwidth", "conditional": "trial.conditional"}
    return {**out, **{name: f"oracle.{name}" for name in knob_names()}}  # every theory's own knobs


def build(definition, knobs: Mapping[str, Any]) -> dict[str, Any]:
    """``{"oracle": OracleConfig}`` of a trial with ``knobs``."""
    values = apply_overrides(DEFAULTS, overrides(KIND, knobs).get("oracle", []))
    patch = values["patch_size"]
    if isinstance(patch, dict) and patch["k_max"] < patch["k_min"]:
        patch["k_max"] = patch["k_min"]  # an inverted range means a constant k_min
    return {"oracle": build_config(OracleConfig, values, "oracle.")}


def check(definition, knobs: Mapping[str, Any], data_shape: tuple[int, ...]) -> None:
    build(definition, knobs)["oracle"].check_image_size(*data_shape[1:])


def run(ctx: TrialContext, knobs: dict[str, Any], tag: str, trial=None) -> dict[str, Any]:
    """Sample the fixed seeds from the oracle the knobs describe and score them."""
    conditional = bool(trial_settings(KIND, knobs).get("conditional", False))
    seeds, labels = ctx.seeds_and_labels(conditional)
    start = time.perf_counter()
    config = build(ctx.definition, knobs)["oracle"]
    oracle = build_oracle(config, ctx.data.train, ctx.data.train_labels if conditional else None)
    samples = sample(oracle, seeds, ctx.data.shape, steps=ctx.definition.steps, labels=labels).samples
    scores = ctx.suite.score(samples, labels)
    rows = [samples[i:i + 8] for i in range(0, len(samples), 8)]
    grid = save_grid(rows, [f"seeds {i}-{i + len(r) - 1}" for i, r in zip(range(0, len(samples), 8), rows)],
                     ctx.out_dir / "grids" / f"{tag}.png", title=f"{tag}: {knobs}")
    return {**scores, "seconds": time.perf_counter() - start, "grid": str(grid)}


KIND = TrialKind("oracle", run, OBJECTIVES, knobs(), build, check, spellings=SPELLINGS)


def register() -> None:
    """The ``ablate.trial_kinds`` entry point."""
    register_trial_kind(KIND)
