"""The ``oracle`` trial kind: sample the fixed seeds from a score machine (no training) and score them, the
cheap design-before-training exploration.

Its knobs alias :class:`~ablate.oracle.OracleConfig` keys: ``k`` is one patch size, ``k_min``, ``k_max`` and
``shape`` the ``power`` schedule (``k_min .. k_max``, an inverted range meaning a constant ``k_min``), and every
registered theory's own knobs (``mask_threshold``, ...) are knobs too. On token data (theory section 12) the
machine is the discrete one over the data's vocabulary, ``smoothing`` is a knob, the seeds are unmasked
(:func:`~ablate.sampling.unmask`) and scored with the text metrics.
"""
from __future__ import annotations

import time
from typing import Any, Mapping

from ablate.config import apply_overrides, build_config
from ablate.data.tokens import TOKENS, TokenDataset, decode, vocab_size_of
from ablate.oracle import OracleConfig, build_oracle
from ablate.oracle.registry import knob_names
from ablate.sampling import sample, unmask
from ablate.sweep.context import TrialContext
from ablate.sweep.kinds import TrialKind, overrides, register_trial_kind, trial_settings
from ablate.viz import save_grid

OBJECTIVES = ("coherence", "accuracy", "artefact_rate", "fid", "fidelity", "novelty", "memorisation_rate",
              "validity", "creativity", "memorisation")  # the last three: token data (theory section 12)
SPELLINGS = {"artifact_rate": "artefact_rate"}
# the default when no k is given: the power schedule 3 .. 11
DEFAULTS = {"machine": "els", "boundary": "zeros", "patch_size": {"kind": "power", "k_min": 3, "k_max": 11, "shape": 1.0}}


def knobs() -> dict[str, str]:
    out = {"machine": "oracle.machine", "boundary": "oracle.boundary", "k": "oracle.patch_size",
           "k_min": "oracle.patch_size.k_min", "k_max": "oracle.patch_size.k_max",
           "shape": "oracle.patch_size.shape", "stride": "oracle.stride", "shift_radius": "oracle.shift_radius",
           "position_bandwidth": "oracle.position_bandwidth", "smoothing": "oracle.smoothing",
           "conditional": "trial.conditional"}
    return {**out, **{name: f"oracle.{name}" for name in knob_names()}}  # every theory's own knobs


def build(definition, knobs: Mapping[str, Any]) -> dict[str, Any]:
    """``{"oracle": OracleConfig}`` of a trial with ``knobs``."""
    values = apply_overrides(DEFAULTS, overrides(KIND, knobs).get("oracle", []))
    data = getattr(definition, "data", None)  # None: the knobs alone (no data to read a vocabulary from)
    if data is not None and data.name in TOKENS:  # the discrete machine over the data's vocabulary
        values["vocab_size"] = vocab_size_of(data.name, data.bracket_kinds, data.path, data.length)
    patch = values["patch_size"]
    if isinstance(patch, dict) and patch["k_max"] < patch["k_min"]:
        patch["k_max"] = patch["k_min"]  # an inverted range means a constant k_min
    return {"oracle": build_config(OracleConfig, values, "oracle.")}


def check(definition, knobs: Mapping[str, Any], data_shape: tuple[int, ...]) -> None:
    config = build(definition, knobs)["oracle"]
    config.check_image_size(*(data_shape if config.vocab_size is not None else data_shape[1:]))


def run(ctx: TrialContext, knobs: dict[str, Any], tag: str, trial=None) -> dict[str, Any]:
    """Sample the fixed seeds from the oracle the knobs describe and score them."""
    conditional = bool(trial_settings(KIND, knobs).get("conditional", False))
    seeds, labels = ctx.seeds_and_labels(conditional)
    start = time.perf_counter()
    config = build(ctx.definition, knobs)["oracle"]
    if isinstance(ctx.data, TokenDataset):  # a discrete machine over the token data (theory section 12)
        oracle = build_oracle(config, ctx.data.train)
        tokens = unmask(oracle, seeds, ctx.data.shape[0], ctx.definition.steps).tokens
        scores = ctx.suite.score(tokens)
        path = ctx.out_dir / "samples" / f"{tag}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{s}\t{t}\n" for s, t in zip(seeds, decode(tokens, ctx.data.vocab))))
        return {**scores, "seconds": time.perf_counter() - start, "samples_text": str(path)}
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
