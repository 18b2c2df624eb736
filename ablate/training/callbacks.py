"""Callbacks that run during training: sample grids from fixed seeds (PNG, and to W&B); for token models, the
seeds' sampled texts (``samples/<tag>.txt``, and to W&B as a table)."""
from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import WandbLogger

from ablate.sampling import sample, unmask
from ablate.viz import save_grid


class SampleGrid(pl.Callback):
    """Every ``every`` epochs (and on demand), draw the same seeds through DDIM with the EMA
    network and save ``samples/epoch_XXXX.png``; conditional runs cycle the labels over the
    seeds (one class per column)."""

    def __init__(self, out_dir: Path, shape: tuple[int, int, int], seeds: int, steps: int, every: int,
                 schedule: str, num_classes: int | None, per_row: int = 8) -> None:
        self.out_dir, self.shape, self.seeds, self.steps = Path(out_dir), shape, list(range(seeds)), steps
        self.every, self.schedule, self.num_classes, self.per_row = every, schedule, num_classes, per_row
        self.last: Path | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every == 0:
            self.draw(trainer, pl_module, f"epoch_{trainer.current_epoch + 1:04d}")

    def draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, tag: str) -> Path:
        labels = None
        if self.num_classes:
            labels = torch.tensor(self.seeds, device=pl_module.device) % self.num_classes
        out = sample(pl_module.denoiser(), self.seeds, self.shape, steps=self.steps, schedule=self.schedule,
                     labels=labels, device=pl_module.device).samples.cpu()
        rows = [out[i:i + self.per_row] for i in range(0, len(out), self.per_row)]
        titles = [f"seeds {i}-{i + len(r) - 1}" for i, r in zip(range(0, len(out), self.per_row), rows)]
        path = save_grid(rows, titles, self.out_dir / f"{tag}.png",
                         title=f"step {trainer.global_step}, {self.steps}-step DDIM, EMA weights")
        self.last = path
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="samples", images=[str(path)], step=trainer.global_step, caption=[tag])
        return path


class OracleAgreement(pl.Callback):
    """Every ``every`` epochs, the EMA network draws the same seeds as fixed oracle machines (drawn once:
    they do not change), and ``agreement/<machine>_r2`` (median r2 over the seeds) is logged: how closely
    the network follows the ELS machine, and the IS (memorisation) baseline, as training goes on.

    The ELS machine is uncalibrated here (k rising from 3 at low noise to ``k_max`` at high noise, the shape
    calibration finds on the quick preset); ``evaluate.py`` calibrates it."""

    def __init__(self, train_images: torch.Tensor, padding: str, every: int, seeds: int = 16, steps: int = 20,
                 schedule: str = "cosine", k_max: int = 11) -> None:
        from ablate.oracle import OracleConfig, PatchSchedule, build_oracle

        k_max = min(k_max, OracleConfig(boundary=padding).max_patch_size(*train_images.shape[2:]))
        rising = PatchSchedule("power", k_min=3, k_max=max(3, k_max - (k_max % 2 == 0)))
        self.machines = {"els": build_oracle(OracleConfig(machine="els", boundary=padding, patch_size=rising),
                                             train_images),
                         "ideal": build_oracle(OracleConfig(machine="ideal"), train_images)}
        self.shape, self.every, self.seeds = tuple(train_images.shape[1:]), every, list(range(10_000, 10_000 + seeds))
        self.steps, self.schedule = steps, schedule
        self._machine_samples: dict[str, torch.Tensor] = {}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every:
            return
        from ablate.metrics import ELSAgreement

        kw = dict(steps=self.steps, schedule=self.schedule)
        net = sample(pl_module.denoiser(), self.seeds, self.shape, device=pl_module.device, **kw).samples.cpu()
        for name, machine in self.machines.items():
            if name not in self._machine_samples:
                self._machine_samples[name] = sample(machine, self.seeds, self.shape, **kw).samples
            metric = ELSAgreement()
            metric.update(self._machine_samples[name], net)
            pl_module.log(f"agreement/{name}_r2", float(metric.compute()["median_r2"]), on_epoch=True,
                          prog_bar=name == "els")


class TextSamples(pl.Callback):
    """The token models' :class:`SampleGrid`: every ``every`` epochs (and on demand) the same seeds unmasked by
    the EMA network (:func:`~ablate.sampling.unmask`), decoded with the dataset's vocabulary and written one per
    line to ``samples/<tag>.txt``."""

    def __init__(self, out_dir: Path, length: int, vocab: tuple[str, ...], seeds: int, steps: int, every: int,
                 schedule: str) -> None:
        self.out_dir, self.length, self.vocab = Path(out_dir), length, tuple(vocab)
        self.seeds, self.steps, self.every, self.schedule = list(range(seeds)), steps, every, schedule
        self.last: Path | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every == 0:
            self.draw(trainer, pl_module, f"epoch_{trainer.current_epoch + 1:04d}")

    def draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, tag: str) -> Path:
        from ablate.data.tokens import decode

        tokens = unmask(pl_module.denoiser(), self.seeds, self.length, self.steps, self.schedule).tokens
        texts = decode(tokens, self.vocab)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{tag}.txt"
        path.write_text("".join(f"{seed}\t{text}\n" for seed, text in zip(self.seeds, texts)))
        self.last = path
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_text(key="samples", columns=["seed", "text"], data=[[s, t] for s, t in zip(self.seeds, texts)],
                                step=trainer.global_step)
        return path
