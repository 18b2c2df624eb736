"""``run(config) -> TrainResult``: the whole training job as one library function (``train.py`` and
sweep trials call it).

Run directory ``<out>/<name>/``: ``config.yaml`` (resolved), ``train.log`` (one clean line per finished
run or resumption), ``checkpoints/``
(every ``checkpoint_every`` epochs, ``last.ckpt``, and ``final.ckpt``),
``metrics.csv``, ``samples/*.png``, ``wandb/`` (the W&B run, offline by default).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import lightning.pytorch as pl
import yaml
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from ablate import tracking
from ablate.data import ImageDataModule, load_dataset
from ablate.models import build_backbone
from ablate.data.tokens import TokenDataset
from ablate.training.callbacks import OracleAgreement, SampleGrid, TextSamples
from ablate.training.checkpoint import config_of, read_checkpoint, resume_differences
from ablate.training.config import TrainConfig
from ablate.training.module import DiffusionModule

MIN_EPOCH_BATCHES = 50


@dataclass(frozen=True)
class TrainResult:
    """What a run produced. ``final_loss``: mean training loss over the last 100 steps."""

    run_dir: Path
    checkpoint: Path
    samples: Path
    steps: int
    epochs: int
    seconds: float
    images_per_second: float
    final_loss: float
    val_loss: float | None
    receptive_field: int | None
    stride: int
    wandb_dir: Path | None
    total_seconds: float = 0.0  # seconds over this run and every run it resumed (``seconds``: this run's)


def default_name(config: TrainConfig) -> str:
    m = config.model
    return f"{m.name}-d{m.depth}-w{m.width}-{m.padding}-{datetime.now():%Y%m%d-%H%M%S}"


def run(config: TrainConfig, resume: str | Path | None = None,
        callbacks: list[pl.Callback] | None = None) -> TrainResult:
    """Train ``config`` (or continue the run of checkpoint ``resume``: same optimiser state, step,
    data order and noise) and return where everything went. ``callbacks`` are added to the trainer's
    own (e.g. a sweep's pruning callback)."""
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    from ablate.paths import runs_root

    run_dir = Path(config.out or runs_root() / "train") / (config.name or default_name(config))
    ckpt = read_checkpoint(resume) if resume is not None else None
    if ckpt is not None:
        diffs = resume_differences(config_of(ckpt), config)
        if diffs:
            raise ValueError(f"checkpoint {str(resume)!r} was trained with other settings, which a resumed run "
                             f"cannot change (checkpoint -> now): {'; '.join(diffs)}. Resume with the checkpoint's "
                             "own config (train.py --resume CKPT [max_steps=...]) or start a new run")
        run_dir = Path(resume).resolve().parent.parent
    elif (run_dir / "checkpoints").exists():
        raise ValueError(f"run directory {str(run_dir)!r} already holds a run; continue it with "
                         f"train.py --resume {run_dir / 'checkpoints' / 'last.ckpt'} or choose another name")
    pl.seed_everything(config.seed, workers=True, verbose=False)

    data = load_dataset(config.data)
    if config.conditional and data.num_classes is None:
        raise ValueError(f"conditional=True needs labels; dataset {config.data.name!r} has none")
    tokens = isinstance(data, TokenDataset)
    if tokens != config.model.tokens:
        raise ValueError(f"dataset {config.data.name!r} holds {'token sequences' if tokens else 'images or signals'} "
                         f"but model.name={config.model.name!r} " + (
                             "denoises images or signals: choose model.name=token_resnet or token_transformer" if tokens
                             else "denoises token sequences: choose a dataset of words, brackets or text"))
    shape = data.shape  # (C, H, W), or (C, L) for signals, or (L,) for token sequences
    if tokens:
        backbone = build_backbone(config.model, data.vocab_size, None, shape[0])
        num_classes = None
        meta = {"image_shape": list(shape), "num_classes": None, "train_images": len(data.train),
                "vocab_size": data.vocab_size, "vocab": list(data.vocab)}
    else:
        config.model.check_image_size(*shape[1:])
        num_classes = data.num_classes if config.conditional else None
        backbone = build_backbone(config.model, shape[0], num_classes)
        meta = {"image_shape": list(shape), "num_classes": num_classes, "train_images": len(data.train)}
    module = DiffusionModule(backbone, config, meta)
    epoch_images = config.epoch_images or max(len(data.train), MIN_EPOCH_BATCHES * config.batch_size)
    datamodule = ImageDataModule(config.data, config.batch_size, epoch_images=epoch_images, seed=config.seed,
                                 data=data)

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    first_step = int(ckpt.get("global_step", 0)) if ckpt is not None else 0
    # a resumed run keeps the earlier metrics.csv and writes its own beside it
    loggers: list = [CSVLogger(save_dir=str(run_dir), name="", version=f"resumed-{first_step}" if ckpt else "")]
    mode = tracking.resolve_mode(config.wandb.mode)
    wandb_logger = None
    if mode != "disabled":
        wandb_id = ckpt["ablate"].get("wandb_id") if ckpt is not None else None
        wandb_logger = WandbLogger(project=config.wandb.project, name=run_dir.name, save_dir=str(run_dir),
                                   group=config.wandb.group, offline=mode == "offline", id=wandb_id,
                                   resume="allow" if wandb_id else None, config=config.to_dict())
        module.wandb_id = wandb_logger.experiment.id
        loggers.append(wandb_logger)

    if tokens:
        samples = TextSamples(run_dir / "samples", shape[0], data.vocab, config.sample_seeds, config.sample_steps,
                              config.sample_every, config.noise_schedule)
    else:
        samples = SampleGrid(run_dir / "samples", shape, config.sample_seeds, config.sample_steps,
                             config.sample_every, config.noise_schedule, num_classes)
    checkpoints = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="step{step:07d}",
                                  auto_insert_metric_name=False, every_n_epochs=config.checkpoint_every,
                                  save_top_k=config.keep_checkpoints, monitor="step", mode="max",
                                  save_last=True, save_on_train_epoch_end=True,
                                  enable_version_counter=False)  # a resumed epoch end rewrites its file, no -v1 copy
    callbacks = [checkpoints, samples, LearningRateMonitor(logging_interval="step"), *(callbacks or [])]
    if config.agreement_every is not None and not tokens:
        callbacks.append(OracleAgreement(data.train, config.model.padding, config.agreement_every,
                                         steps=config.sample_steps, schedule=config.noise_schedule))
    if config.progress:
        callbacks.append(TQDMProgressBar(refresh_rate=20))
    trainer = pl.Trainer(
        accelerator=config.accelerator, devices=config.devices, precision=config.precision,
        max_steps=config.max_steps, max_epochs=-1,
        max_time=timedelta(minutes=config.max_minutes) if config.max_minutes else None,
        logger=loggers, callbacks=callbacks, gradient_clip_val=config.optim.grad_clip,
        check_val_every_n_epoch=config.val_every, num_sanity_val_steps=0,
        log_every_n_steps=max(1, min(25, config.max_steps // 4)),
        enable_progress_bar=config.progress, enable_model_summary=config.progress,
        default_root_dir=str(run_dir), deterministic=False)
    receptive_field = backbone.receptive_field()  # None: global (attention)
    start = time.perf_counter()
    del ckpt
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")
            warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume) if resume is not None else None,
                        weights_only=True)
        seconds = time.perf_counter() - start
        final = run_dir / "checkpoints" / "final.ckpt"
        trainer.save_checkpoint(final, weights_only=False)  # full: optimiser and loops too, so it resumes
        grid = samples.draw(trainer, module, "final")
        val = trainer.callback_metrics.get("val/loss")
        steps = trainer.global_step
        result = TrainResult(
            run_dir=run_dir, checkpoint=final, samples=grid, steps=steps, epochs=trainer.current_epoch,
            seconds=seconds, images_per_second=(steps - first_step) * config.batch_size / max(seconds, 1e-9),
            final_loss=sum(module.recent_losses) / max(len(module.recent_losses), 1),
            val_loss=float(val) if val is not None else None, receptive_field=receptive_field,
            stride=config.model.stride, wandb_dir=Path(wandb_logger.experiment.dir).parent if wandb_logger else None,
            total_seconds=module.earlier_seconds + seconds)
        with open(run_dir / "train.log", "a") as log:  # one clean line per finished (or resumed) run
            log.write(f"{datetime.now():%Y-%m-%d %H:%M:%S} trained steps {first_step}-{steps} in {seconds:.0f} s "
                      f"({result.images_per_second:.0f} images/s), final loss {result.final_loss:.4f}, val loss "
                      f"{result.val_loss if result.val_loss is not None else 'n/a'}, receptive field "
                      f"{receptive_field}, checkpoint {final}\n")
        if wandb_logger is not None:
            wandb_logger.experiment.summary.update({"final_loss": result.final_loss, "steps": steps,
                                                    "images_per_second": result.images_per_second,
                                                    "receptive_field": receptive_field or -1})
        return result
    finally:
        if wandb_logger is not None:
            tracking.finish()
