"""What one trial does: turn knobs into a denoiser, draw the fixed seeds, score the samples.

``oracle`` trials build a score machine (no training): the cheap design-before-
training exploration. ``train`` trials train a backbone at the sweep's budget
(reporting validation loss to Optuna so hopeless trials can be pruned), then
score its samples and measure its agreement with the calibrated oracle.
"""
from __future__ import annotations

import dataclasses
import itertools
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ablate.data import ImageDataset, load_dataset
from ablate.metrics import MetricSuite, build_suite
from ablate.oracle import OracleConfig, PatchSchedule, build_oracle
from ablate.sampling import sample
from ablate.sweep.definition import ARCH, SweepDefinition
from ablate.sweep.kinds import register_trial_kind, trial_kind
from ablate.viz import save_grid


@dataclass
class TrialContext:
    """Per-process state shared by the trials of a sweep: the data and the metric suite (built once)."""

    definition: SweepDefinition
    out_dir: Path
    data: ImageDataset
    suite: MetricSuite

    @classmethod
    def build(cls, definition: SweepDefinition, out_dir: Path) -> "TrialContext":
        data = load_dataset(definition.data)
        return cls(definition, out_dir, data, build_suite(data, definition.data))

    def seeds_and_labels(self, conditional: bool, count: int | None = None) -> tuple[list[int], torch.Tensor | None]:
        """Seeds ``0 .. count - 1`` (the definition's ``seeds`` by default) and, if conditional, a label each."""
        seeds = list(range(self.definition.seeds if count is None else count))
        if conditional and self.data.num_classes is None:
            raise ValueError(f"conditional=True needs labels; dataset {self.data.name!r} has none")
        return seeds, (torch.tensor(seeds) % self.data.num_classes if conditional else None)


def oracle_config(knobs: dict[str, Any]) -> OracleConfig:
    """Knobs -> OracleConfig: a fixed ``k`` or the power schedule ``k_min .. k_max`` with ``shape``."""
    if "k" in knobs:
        patch: int | PatchSchedule = int(knobs["k"])
    else:
        k_min = int(knobs.get("k_min", 3))
        k_max = max(int(knobs.get("k_max", 11)), k_min)  # an inverted range means a constant k_min
        patch = PatchSchedule("power", k_min=k_min, k_max=k_max, shape=float(knobs.get("shape", 1.0)))
    knob = {name: knobs[name] for name in ("shift_radius", "position_bandwidth") if knobs.get(name) is not None}
    for name in ("mask_threshold", "temperature", "smoothing_std"):  # the rival theories' knobs
        if knobs.get(name) is not None:
            knob[name] = float(knobs[name])
    for name in ("num_noise", "noise_seed"):
        if knobs.get(name) is not None:
            knob[name] = int(knobs[name])
    if int(knobs.get("stride", 1)) > 1:
        knob["stride"] = int(knobs["stride"])
    return OracleConfig(machine=knobs.get("machine", "els"), boundary=knobs.get("boundary", "zeros"),
                        patch_size=patch, **knob)


def run_oracle_trial(ctx: TrialContext, knobs: dict[str, Any], tag: str, trial=None) -> dict[str, Any]:
    """Sample the fixed seeds from the oracle the knobs describe and score them."""
    conditional = bool(knobs.get("conditional", False))
    seeds, labels = ctx.seeds_and_labels(conditional)
    start = time.perf_counter()
    oracle = build_oracle(oracle_config(knobs), ctx.data.train, ctx.data.train_labels if conditional else None)
    samples = sample(oracle, seeds, ctx.data.shape, steps=ctx.definition.steps, labels=labels).samples
    scores = ctx.suite.score(samples, labels)
    rows = [samples[i:i + 8] for i in range(0, len(samples), 8)]
    grid = save_grid(rows, [f"seeds {i}-{i + len(r) - 1}" for i, r in zip(range(0, len(samples), 8), rows)],
                     ctx.out_dir / "grids" / f"{tag}.png", title=f"{tag}: {knobs}")
    return {**scores, "seconds": time.perf_counter() - start, "grid": str(grid)}


def merged_knobs(definition: SweepDefinition, suggested: dict[str, Any]) -> dict[str, Any]:
    """The knobs of a trial with the ``suggested`` values: the fixed ones, an ``arch``'s own, then these."""
    return {**definition.fixed, **definition.architectures.get(suggested.get(ARCH), {}), **suggested}


def trial_tag(number: int, knobs: dict[str, Any]) -> str:
    """A trial's name (its run folder, W&B run, samples): ``trial0007`` or, with an architecture, ``trial0007-unet_2``."""
    return f"trial{number:04d}" + (f"-{knobs[ARCH]}" if ARCH in knobs else "")


def attempt_checkpoints(out_dir: Path, trial, knobs: dict[str, Any]) -> list[Path]:
    """The checkpoint folders of a trial's run and of its earlier attempts' runs (Optuna's ``retry_history``,
    kept by the heartbeat's retry), newest attempt first. ``trial``: a ``FrozenTrial``. A retry that continues
    an earlier attempt trains in that attempt's folder, so its own may not exist."""
    import optuna
    from optuna.storages import RetryFailedTrialCallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # retry_history: stable in use
        history = RetryFailedTrialCallback.retry_history(trial)
    return [Path(out_dir) / "runs" / trial_tag(n, knobs) / "checkpoints" for n in [trial.number, *reversed(history)]]


def interrupted_checkpoint(ctx: "TrialContext", knobs: dict[str, Any], trial) -> tuple[Path, int] | None:
    """Where an earlier attempt of this trial stopped training (checkpoint, step), or None.

    A worker killed mid-training (a session that ends, a machine that goes away) leaves its trial running in
    the study; the heartbeat marks it stale and queues a copy (Optuna's ``retry_history`` lists the earlier
    attempts' numbers). That copy continues the latest attempt's run from its newest checkpoint that reads
    (``final.ckpt``, ``last.ckpt``, then ``step*.ckpt``, newest first: one cut short by the kill is skipped)
    instead of training from scratch; the resumed run draws the numbers the uninterrupted one would."""
    from ablate.training.checkpoint import read_checkpoint

    if trial is None:
        return None
    frozen = next((t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number), None)
    for folder in attempt_checkpoints(ctx.out_dir, frozen, knobs)[1:] if frozen is not None else []:
        found = [folder / "final.ckpt", folder / "last.ckpt", *sorted(folder.glob("step*.ckpt"), reverse=True)]
        best, best_step = None, -1
        for path in (p for p in found if p.is_file()):
            try:
                step = int(read_checkpoint(path).get("global_step", 0))
            except ValueError:
                continue  # unreadable (cut short by the kill): an older one will do
            if step > best_step:
                best, best_step = path, step
        if best is not None:
            return best, best_step
    return None


def training_step_seconds(definition: SweepDefinition, knobs: dict[str, Any], image_shape: tuple[int, ...],
                          reps: int = 3) -> float:
    """The median seconds of one optimiser step of the trial's backbone (its real loss and AdamW, at the sweep's
    batch size) on random data of shape ``image_shape``, after one warm-up step: times ``max_steps``, what the
    trial's training will roughly cost on this machine."""
    from ablate.models import build_backbone
    from ablate.training.module import DiffusionModule

    config = train_config(definition, Path("."), knobs, "cost")
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


def train_config(definition: SweepDefinition, out_dir: Path, knobs: dict[str, Any], tag: str):
    """The :class:`~ablate.training.TrainConfig` of a trial: the quick preset with the knobs' architecture,
    optimiser and budget, on the sweep's data, with no W&B run of its own (the trial has one)."""
    from ablate.models import backbone_config
    from ablate.training import TrainConfig, WandbConfig

    d = TrainConfig()
    return dataclasses.replace(
        d, data=definition.data, model=backbone_config(knobs), conditional=bool(knobs.get("conditional", False)),
        optim=dataclasses.replace(d.optim, lr=float(knobs.get("lr", d.optim.lr)),
                                  ema_decay=knobs.get("ema_decay", d.optim.ema_decay)),
        max_steps=int(knobs.get("max_steps", d.max_steps)), batch_size=int(knobs.get("batch_size", d.batch_size)),
        noise_schedule=knobs.get("noise_schedule", d.noise_schedule), out=str(out_dir / "runs"), name=tag,
        progress=False, wandb=WandbConfig(mode="disabled"), sample_every=10**6, agreement_every=None)


def space_corners(definition: SweepDefinition) -> list[dict[str, Any]]:
    """Every combination of each searched knob's extremes (a range's ends, every choice), each with the fixed
    knobs and, for an ``arch``, that architecture's knobs: the knob sets a trial can meet at its limits."""
    values = []
    for p in definition.space:
        if p.kind == "choice":
            values.append(list(p.choices))
        elif p.kind == "int":
            grid = p.grid()
            values.append(sorted({grid[0], grid[-1]}))
        else:
            values.append([p.low, p.high])
    out = []
    for combo in itertools.product(*values):
        out.append(merged_knobs(definition, dict(zip((p.name for p in definition.space), combo))))
    return out


def check_trial_knobs(definition: SweepDefinition, knobs: dict[str, Any], image_shape: tuple[int, ...]) -> None:
    """Build what a trial with ``knobs`` builds, on images ``[C, H, W]`` (or signals ``[C, L]``), without running
    it: the oracle config (and that its patch sizes fit the data, as the oracle checks) or the training config
    (and that the backbone fits the data). Raises the same ``ValueError`` the trial would."""
    spatial = image_shape[1:]  # (H, W), or (L,) for signals
    if definition.kind == "oracle":
        oracle_config(knobs).check_image_size(*spatial)
        return
    config = train_config(definition, Path("."), knobs, "check")
    config.model.check_image_size(*spatial)
    check = trial_kind(definition.kind).check
    if check is not None:
        check(knobs)


def validate_space(definition: SweepDefinition, image_shape: tuple[int, ...]) -> int:
    """Check every corner of the search space before any trial is queued (:func:`space_corners`); the error
    names the knob set and says what is wrong and allowed. Returns how many knob sets were checked."""
    corners = space_corners(definition)
    for knobs in corners:
        try:
            check_trial_knobs(definition, knobs, image_shape)
        except (TypeError, ValueError) as err:
            shown = ", ".join(f"{k}={v}" for k, v in knobs.items())
            raise ValueError(f"{definition.path or definition.name}: trials with {shown} would fail: {err}") from err
    return len(corners)


MEASURED = (("els", "els"), ("ls", "ls"), ("ideal", "is"), ("es", "es"))  # machine -> the figures' prefix


def train_and_measure(ctx: TrialContext, knobs: dict[str, Any], tag: str, trial=None, eval_config=None,
                      device: str = "cpu", seeds: int | None = None) -> dict[str, Any]:
    """Train the backbone the knobs describe, draw the sweep's fixed seeds (or ``seeds`` of them) from it and
    score them, then
    measure its agreement with the calibrated oracle (``eval_config``). With ``trial`` (an Optuna trial of
    a pruned sweep), validation loss is reported after each validation by optuna-integration's Lightning
    pruning callback, which stops hopeless trials. A retried trial (its worker was killed) continues the earlier
    attempt's training (:func:`interrupted_checkpoint`); ``train_seconds`` counts every attempt's training up
    to the checkpoint it continued. Returns the figures and ``samples`` ``[S, C, H, W]``."""
    from ablate.evaluation import EvalConfig, checkpoint_subject, evaluate_checkpoint
    from ablate.training import run

    config = train_config(ctx.definition, ctx.out_dir, knobs, tag)
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
    figures = {f"{short}_{key}": agreement[m][f"median_{key}"] for m, short in MEASURED for key in ("r2", "r")
               if m in agreement}
    for m, short in MEASURED:  # per-step agreement on the network's trajectory (where the sweep asked for it)
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


register_trial_kind("oracle", run_oracle_trial)
register_trial_kind("train", run_train_trial, trains=True)
