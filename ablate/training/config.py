"""Typed, frozen configuration of a training run; YAML files plus ``key=value`` overrides.

The defaults are the **quick CPU preset**: ``python train.py`` with no
argument trains it (about 2.5 minutes on 2 cores; see the README for figures).
Paper-scale GPU presets are YAML files in ``configs/`` that override them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

from ablate import tracking
from ablate.config import apply_overrides, build_config, check_choice, check_float, check_int, merge, to_dict
from ablate.data import DataConfig
from ablate.models import BackboneConfig
from ablate.sampling import NOISE_SCHEDULES



@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up, then a constant or cosine-decaying learning rate; optional EMA
    of the weights (``ema_decay``; the EMA weights are the ones sampled from)."""

    lr: float = 2e-3
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    warmup_steps: int = 200
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    grad_clip: float | None = 1.0
    ema_decay: float | None = 0.999

    def __post_init__(self) -> None:
        check_float("optim.lr", self.lr, low=0.0, low_open=True)
        check_float("optim.weight_decay", self.weight_decay, low=0.0)
        check_float("optim.beta1", self.beta1, low=0.0, high=1.0, high_open=True)
        check_float("optim.beta2", self.beta2, low=0.0, high=1.0, high_open=True)
        check_int("optim.warmup_steps", self.warmup_steps, low=0)
        check_choice("optim.lr_schedule", self.lr_schedule, ("constant", "cosine"))
        if self.grad_clip is not None:
            check_float("optim.grad_clip", self.grad_clip, low=0.0, low_open=True)
        if self.ema_decay is not None:
            check_float("optim.ema_decay", self.ema_decay, low=0.0, high=1.0, high_open=True)


@dataclass(frozen=True)
class WandbConfig:
    """mode ``auto``: online when an API key is configured (``WANDB_API_KEY`` or ``wandb login``),
    else offline (no network wait, no prompt); ``disabled`` logs to CSV only."""

    mode: Literal["auto", "offline", "online", "disabled"] = "auto"
    project: str = "ablate"
    group: str | None = None

    def __post_init__(self) -> None:
        check_choice("wandb.mode", self.mode, tracking.MODES)


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Step/epoch counts: ``max_steps`` optimiser steps of ``batch_size``
    images; an epoch is ``epoch_images`` images (default: the training set, at least 50
    batches, so that small sets give epochs of a useful size); checkpoints and sample grids
    every ``checkpoint_every`` / ``sample_every`` epochs and at the end; the latest
    ``keep_checkpoints`` periodic checkpoints are kept (-1: all), plus ``last`` and ``final``; every
    ``agreement_every`` epochs (None: never) the median r2 of the network's samples against an ELS
    machine and the IS machine is logged (``agreement/els_r2``, ``agreement/ideal_r2``)."""

    data: DataConfig = field(default_factory=lambda: DataConfig(name="mnist5k", n=200, image_size=14))
    model: BackboneConfig = field(default_factory=lambda: BackboneConfig(name="resnet", depth=6, width=32))
    optim: OptimConfig = field(default_factory=OptimConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    noise_schedule: Literal["cosine", "linear"] = "cosine"
    t_min: float = 1e-3
    conditional: bool = False
    label_dropout: float = 0.1
    batch_size: int = 64
    max_steps: int = 6000
    max_minutes: float | None = None
    epoch_images: int | None = None
    val_every: int = 10
    checkpoint_every: int = 10
    keep_checkpoints: int = 5
    sample_every: int = 10
    sample_seeds: int = 16
    agreement_every: int | None = 20
    sample_steps: int = 20
    seed: int = 0
    accelerator: str = "auto"
    devices: int = 1
    precision: Literal["32-true", "64-true", "bf16-mixed", "16-mixed"] = "32-true"
    out: str | None = None  # None: <runs root>/train (--runs / ABLATE_RUNS, default runs/train)
    name: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        check_choice("noise_schedule", self.noise_schedule, tuple(NOISE_SCHEDULES))
        check_float("t_min", self.t_min, low=0.0, high=0.5, low_open=True)
        check_float("label_dropout", self.label_dropout, low=0.0, high=1.0, high_open=True)
        check_int("batch_size", self.batch_size, low=1)
        check_int("max_steps", self.max_steps, low=1)
        if self.max_minutes is not None:
            check_float("max_minutes", self.max_minutes, low=0.0, low_open=True)
        if self.epoch_images is not None:
            check_int("epoch_images", self.epoch_images, low=1)
        for name in ("val_every", "checkpoint_every", "sample_every"):
            check_int(name, getattr(self, name), low=1)
        if self.keep_checkpoints != -1:
            check_int("keep_checkpoints (-1 keeps all)", self.keep_checkpoints, low=1)
        check_int("sample_seeds", self.sample_seeds, low=1)
        if self.agreement_every is not None:
            check_int("agreement_every", self.agreement_every, low=1)
        check_int("sample_steps", self.sample_steps, low=1)
        check_int("seed", self.seed, low=0)
        check_int("devices", self.devices, low=1)
        check_choice("accelerator", self.accelerator, ("auto", "cpu", "gpu", "cuda", "mps"))
        check_choice("precision", self.precision, ("32-true", "64-true", "bf16-mixed", "16-mixed"))
        if self.conditional and self.data.name in ("fingers", "folder", "pulses"):
            raise ValueError(f"conditional=True needs a labelled dataset; {self.data.name!r} has no labels")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


IMAGE_PRESET_KEYS = ("image_size", "n")  # the quick preset's data choices that belong to its image set


def load_config(path: str | Path | None = None, overrides: Iterable[str] = (),
                base: Mapping[str, Any] | None = None) -> TrainConfig:
    """``base`` (default: the quick preset, every key), updated by the YAML file at ``path`` (if any), then by
    ``key.sub=value`` overrides. Both change only the keys they name, at any depth: ``data.n=50`` keeps the
    preset's ``data.image_size`` (``data.image_size=null`` clears it; a signal dataset, ``data.name=pulses``,
    clears the preset's ``image_size`` and ``n`` unless the user sets them). Unknown keys are errors that name
    the nearest valid key.

    Why not OmegaConf, which does the same merge: its structured configs cannot type ``Literal`` choices or
    ``int | PatchSchedule`` unions, which these frozen dataclasses use; their validation (``__post_init__``,
    with what is allowed) and the nearest-key errors of :func:`~ablate.config.build_config` stay one path."""
    import yaml

    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ValueError(f"cannot read training config {str(path)!r}: {err}") from err
        if not isinstance(values, dict):
            raise ValueError(f"{path}: a training config must be a mapping of keys, got {type(values).__name__}")
    start = dict(base) if base is not None else to_dict(TrainConfig())
    merged = apply_overrides(merge(start, values), overrides)
    named = apply_overrides(values, overrides).get("data") or {}  # what the user set, not the preset
    from ablate.data import SIGNALS, TOKENS

    if merged.get("data", {}).get("name") in SIGNALS + TOKENS:
        for key in IMAGE_PRESET_KEYS:  # the image preset's choices mean nothing to signals
            if key not in named:
                merged["data"][key] = None
    return build_config(TrainConfig, merged)
