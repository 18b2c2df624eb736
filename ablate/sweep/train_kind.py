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
              "els_r2", "is_r2", "ls_r2", "val_loss", "train_seconds",
              # token models (theory section 12): text metrics and per-seed token agreement with each machine
              "validity", "creativity", "memorisation", "els_zeros_agreement", "els_circular_agreement",
              "ls_zeros_agreement", "ls_circular_agreement", "ideal_agreement", "unigram_agreement",
              "bigram_agreement")
SPELLINGS = {"artifact_rate": "artefact_rate"}
KNOBS = {"name": "train.model.name", "depth": "train.model.depth", "width": "train.model.width",
         "padding": "train.model.padding", "norm": "train.model.norm", "attention": "train.model.attention",
         "options": "train.model.options", "lr": "train.optim.lr", "ema_decay": "train.optim.ema_decay",
         "max_steps": "train.max_steps", "batch_size": "train.batch_size", "noise_schedule": "train.noise_schedule",
         "conditional": "train.conditional", "window": "train.model.window"}
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
    model = train_config(definition, knobs).model
    if model.tokens != (len(data_shape) == 1):
        raise ValueError(f"model {model.name!r} does not fit the data (one item: {list(data_shape)}); token sequences "
                         "take token_resnet or token_transformer, images and signals the others")
    if not model.tokens:
        model.check_image_size(*data_shape[1:])


def cost(definition, knobs: Mapping[str, Any], data_shape: tuple[int, ...]) -> float:
    """The trial's training seconds, roughly: :func:`training_step_seconds` times ``max_steps``."""
    config = train_config(definition, knobs)
    return training_step_seconds(config, data_shape) * config.max_steps


def training_step_seconds(config: TrainConfig, image_shape: tuple[int, ...], reps: int = 3) -> float:
    """The median seconds of one optimiser step of ``config``'s backbone (its real loss and AdamW, at the sweep's
    batch size) on random data of shape ``image_shape``, after one warm-up step: times ``max_steps``, what the
    trial's training will roughly cost on this machine."""
    g = torch.Generator().manual_seed(0)
    if config.model.tokens:  # a vocabulary of 32 stands for any: the cost hardly depends on it
        module = DiffusionModule(build_backbone(config.model, 32, None, image_shape[0]), config, {"vocab_size": 32})
        x0 = torch.randint(0, 32, (config.batch_size, *image_shape), generator=g)
    else:
        module = DiffusionModule(build_backbone(config.model, image_shape[0]), config, {})
        x0 = torch.rand((config.batch_size, *image_shape), generator=g) * 2 - 1
    optimiser = torch.optim.AdamW(module.backbone.parameters(), lr=config.optim.lr)
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
    if config.model.tokens:
        return measure_tokens(ctx, result, eval_config, seeds, resumed_step)
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


def measure_tokens(ctx: TrialContext, result, eval_config, seeds: int | None, resumed_step: int) -> dict[str, Any]:
    """A token model's figures: its text metrics on the sweep's seeds and its per-seed token agreement with every
    machine of the text league (:func:`ablate.evaluation.text.evaluate_tokens`, on ``eval_config``'s seeds)."""
    from ablate.evaluation.text import evaluate_tokens
    from ablate.sampling import unmask
    from ablate.training.checkpoint import load_checkpoint

    model = load_checkpoint(result.checkpoint)
    count = ctx.definition.seeds if seeds is None else seeds
    samples = unmask(model.denoiser(), list(range(count)), ctx.data.shape[0], ctx.definition.steps).tokens
    scores = ctx.suite.score(samples)
    eval_config = eval_config or EvalConfig(seeds=max(2, ctx.definition.seeds), steps=ctx.definition.steps,
                                            wandb_mode="disabled", progress=False)
    league = evaluate_tokens(result.checkpoint, eval_config, model=model, data=ctx.data).summary
    figures = {f"{m}_agreement": v["agreement"] for m, v in league["machines"].items()}
    figures |= {f"{m}_agreement_low": v["agreement_ci95"][0] for m, v in league["machines"].items()}
    figures |= {f"{m}_mean_tv": v["mean_tv"] for m, v in league["machines"].items()}
    figures |= {f"{m}_k": " ".join(map(str, c["k"])) for m, c in league["calibration"].items()}
    return {**scores, **figures, "chance_agreement": league["chance_agreement"], "val_loss": result.val_loss,
            "train_seconds": result.total_seconds, "seconds": result.total_seconds, "resumed_from_step": resumed_step,
            "checkpoint": str(result.checkpoint), "receptive_field": model.backbone.receptive_field(),
            "samples_html": league["figures"]["samples"], "samples": samples}


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
