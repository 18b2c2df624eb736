"""The ``train`` trial kind: train a backbone at the sweep's budget (reporting validation loss to Optuna so
hopeless trials can be pruned), then score its samples and measure its agreement with the calibrated oracle.

Its knobs alias :class:`~ablate.training.TrainConfig` keys (``depth`` is ``train.model.depth``, ``lr`` is
``train.optim.lr``, ...); a trial's config is the quick preset with those overrides, on the sweep's data, with
no W&B run of its own (the trial has one). :func:`train_and_measure` is shared with the design kind.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from ablate.config import apply_overrides, build_config, to_dict
from ablate.evaluation import EvalConfig, checkpoint_subject, evaluate_checkpoint
from ablate.models import build_backbone
from ablate.oracle import theory
from ablate.sampling import sample
from ablate.sweep.context import TrialContext, interrupted_checkpoint
from ablate.sweep.kinds import TrialKind, overrides, register_trial_kind, trial_kind
from ablate.training import TrainConfig, run
from ablate.training.module import DiffusionModule

OBJECTIVES = ("coherence", "accuracy", "artefact_rate", "fid", "fidelity", "novelty", "memorisation_rate",
              "els_r2", "is_r2", "ls_r2", "val_loss", "train_seconds")
SPELLINGS = {"artifact_rate": "artefact_rate"}
KNOBS = {"name": "train.model.name", "depth": "train.model.depth", "width": "train.model.width",
         "padding": "train.model.padding", "norm": "train.model.norm", "attention": "train.model.attention",
         "options": "train.model.options", "lr": "train.optim.lr", "ema_decay": "train.optim.ema_decay",
         "max_steps": "train.max_steps", "batch_size": "train.batch_size", "noise_schedule": "train.noise_schedule",
         "conditional": "train.conditional"}
MEASURED = ("els", "ls", "ideal", "es")  # the machines whose agreement a trial reports (as their figure prefix)


def train_config(definition, knobs: Mapping[str, Any], out_dir: Path = Path("."), tag: str = "check",
                 kind: TrialKind | None = None) -> TrainConfig:
    """The :class:`~ablate.training.TrainConfig` of a trial: the quick preset with the knobs' overrides, on the
    sweep's data, with no W&B run of its own (the trial has one). ``kind``: whose aliases read the knobs
    (default: the definition's kind; the design kind's include these)."""
    base = to_dict(TrainConfig())
    base.update(data=to_dict(definition.data), out=str(Path(out_dir) / "runs"), name=tag, progress=False,
                sample_every=10**6, agreement_every=None)
    base["wandb"]["mode"] = "disabled"
    values = apply_overrides(base, overrides(kind or trial_kind(definition.kind), knobs).get("train", []))
    return build_config(TrainConfig, values)


def build(definition, knobs: Mapping[str, Any]) -> dict[str, Any]:
    return {"train": train_config(definition, knobs)}


def check(definition, knobs: Mapping[str, Any], data_shape: tuple[int, ...]) -> None:
    train_config(definition, knobs).model.check_image_size(*data_shape[1:])


def cost(definition, knobs: Mapping[str, Any], data_shape: tuple[int, ...]) -> float:
    """The trial's training seconds, roughly: :func:`training_step_seconds` times ``max_steps``."""
    config = train_config(definition, knobs)
    return training_step_seconds(config, data_shape) * config.max_steps


def training_step_seconds(config: TrainConfig, image_shape: tuple[int, ...], reps: int = 3) -> float:
    """The median seconds of one optimiser step of ``config``'s backbone (its real loss and AdamW, at the sweep's
    batch size) on random data of shape ``image_shape``, after one warm-up step: times ``max_steps``, what the
    trial's training will roughly cost on this machine."""
    module = DiffusionModule(build_backbone(config.model, image_shape[0]), config, {})
    optimiser = torch.optim.AdamW(module.backbone.parameters(), lr=config.optim.lr)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand((config.batch_size, *image_shape), generator=g) * 2 - 1
    times = []
    for _ in range(reps + 1):
        start = time.perf_counter()
        loss = module.diffusion_loss(x0, None, g)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def train_and_measure(ctx: TrialContext, knobs: dict[str, Any], tag: str, trial=None, eval_config=None,
                      device: str = "cpu", seeds: int | None = None, kind: TrialKind | None = None) -> dict[str, Any]:
    """Train the backbone the knobs describe, draw the sweep's fixed seeds (or ``seeds`` of them) from it and
    score them, then
    measure its agreement with the calibrated oracle (``eval_config``). With ``trial`` (an Optuna trial of
    a pruned sweep), validation loss is reported after each validation by optuna-integration's Lightning
    pruning callback, which stops hopeless trials. A retried trial (its worker was killed) continues the earlier
    attempt's training (:func:`interrupted_checkpoint`); ``train_seconds`` counts every attempt's training up
    to the checkpoint it continued. Returns the figures and ``samples`` ``[S, C, H, W]``."""
    config = train_config(ctx.definition, knobs, ctx.out_dir, tag, kind)
    callbacks = []
    if trial is not None and ctx.definition.prune:
        from optuna_integration import PyTorchLightningPruningCallback
        callbacks.append(PyTorchLightningPruningCallback(trial, monitor="val/loss"))
    resume, resumed_step = interrupted_checkpoint(ctx, knobs, trial) or (None, 0)
    if resume is not None:
        print(f"{tag}: continuing the interrupted training at step {resumed_step}: {resume}", flush=True)
    result = run(config, resume=resume, callbacks=callbacks)
    subject = checkpoint_subject(result.checkpoint, ctx.data, device)  # loaded once: sampled and evaluated
    seeds, labels = ctx.seeds_and_labels(config.conditional, seeds)
    samples = sample(subject.network, seeds, ctx.data.shape, steps=ctx.definition.steps, labels=labels,
                     schedule=config.noise_schedule, device=device).samples.cpu()
    scores = ctx.suite.score(samples, labels)
    eval_config = eval_config or EvalConfig(machines=("els", "ls", "ideal"), seeds=max(2, ctx.definition.seeds),
                                            samplers=("ddim",), per_step=False, wandb_mode="disabled", progress=False)
    agreement = evaluate_checkpoint(result.checkpoint, eval_config, subject=subject).summary
    measured = [(m, theory(m).figure_prefix) for m in MEASURED]
    figures = {f"{short}_{key}": agreement[m][f"median_{key}"] for m, short in measured for key in ("r2", "r")
               if m in agreement}
    for m, short in measured:  # per-step agreement on the network's trajectory (where the sweep asked for it)
        if agreement.get(m, {}).get("per_step_median_r2"):
            figures[f"{short}_r2_by_step"] = " ".join(f"{v:.3f}" for v in agreement[m]["per_step_median_r2"])
    cal = agreement["calibration"]["els"]
    return {**scores, **figures, "val_loss": result.val_loss, "train_seconds": result.total_seconds,
            "seconds": result.total_seconds, "resumed_from_step": resumed_step, "grid": agreement["figures"]["grid"],
            "checkpoint": str(result.checkpoint),
            "els_k": " ".join(map(str, cal["k"])), "els_alpha_bar": " ".join(f"{a:.6g}" for a in cal["alpha_bar"]),
            "els_candidates": " ".join(map(str, cal["candidates"])), "samples": samples}


def run_train_trial(ctx: TrialContext, knobs: dict[str, Any], tag: str, trial=None) -> dict[str, Any]:
    """Train the backbone the knobs describe, then score its samples and its agreement with the oracle."""
    result = train_and_measure(ctx, knobs, tag, trial)
    del result["samples"]
    return result


KIND = TrialKind("train", run_train_trial, OBJECTIVES, KNOBS, build, check, cost=cost, architectures="optional",
                 prunable=True, spellings=SPELLINGS)


def register() -> None:
    """The ``ablate.trial_kinds`` entry point."""
    register_trial_kind(KIND)
