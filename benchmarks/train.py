"""Training throughput (images/s) for each backbone at the quick preset's size.

Each backbone is trained through the real path (``ablate.training.run``:
Lightning, EMA, checkpoints, CSV) and, as the baseline measured in the same
run, by a plain PyTorch loop over the same backbone, loss and optimiser (no
Lightning, no EMA); the ratio is the framework's overhead. Medians over
``--reps`` repetitions. ``--preset`` also trains the full quick preset
(``python train.py`` with no argument) and prints its wall time and final loss.

    python benchmarks/train.py                 # about 2 minutes on 2 cores
    python benchmarks/train.py --reps 3 --preset
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time

import torch

from ablate.data import load_dataset
from ablate.models import BackboneConfig, build_backbone
from ablate.training import TrainConfig, WandbConfig, run
from ablate.training.module import DiffusionModule

QUICK = TrainConfig()
BACKBONES = {
    "resnet": QUICK.model,
    "unet": BackboneConfig(name="unet", depth=1, width=32),
    "unet_attn": BackboneConfig(name="unet_attn", depth=1, width=32),
}


def lightning_rate(model: BackboneConfig, steps: int, out: str) -> float:
    cfg = dataclasses.replace(QUICK, model=model, max_steps=steps, progress=False, wandb=WandbConfig(mode="disabled"),
                              sample_every=10**6, checkpoint_every=10**6, val_every=10**6, out=out, name=None)
    return run(cfg).images_per_second


def plain_rate(model: BackboneConfig, steps: int) -> float:
    """The same backbone, loss and AdamW step in a bare loop: the baseline."""
    torch.manual_seed(0)
    data = load_dataset(QUICK.data).train
    module = DiffusionModule(build_backbone(model, data.shape[1]), dataclasses.replace(QUICK, model=model), {})
    opt = torch.optim.AdamW(module.backbone.parameters(), lr=QUICK.optim.lr)
    g = torch.Generator().manual_seed(0)
    labels = torch.full((QUICK.batch_size,), -1)
    start = time.perf_counter()
    for _ in range(steps):
        batch = data[torch.randint(len(data), (QUICK.batch_size,), generator=g)]
        loss = module.diffusion_loss(batch, labels, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.backbone.parameters(), QUICK.optim.grad_clip)
        opt.step()
    return steps * QUICK.batch_size / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--preset", action="store_true", help="also train the full quick preset")
    a = p.parse_args()
    C, H, W = load_dataset(QUICK.data).shape
    print(f"{QUICK.data.name} N={QUICK.data.n} {H}x{W}, batch {QUICK.batch_size}, {a.steps} steps, "
          f"torch threads {torch.get_num_threads()}, median of {a.reps}", flush=True)
    print(f"{'backbone':10} {'params':>8} {'lightning img/s':>16} {'plain img/s':>12} {'ratio':>6}", flush=True)
    with tempfile.TemporaryDirectory() as out:
        for name, model in BACKBONES.items():
            params = sum(p.numel() for p in build_backbone(model, C).parameters())
            lit = statistics.median(lightning_rate(model, a.steps, out) for _ in range(a.reps))
            plain = statistics.median(plain_rate(model, a.steps) for _ in range(a.reps))
            print(f"{name:10} {params:8d} {lit:16.0f} {plain:12.0f} {lit / plain:6.2f}", flush=True)
        if a.preset:
            start = time.perf_counter()
            result = run(dataclasses.replace(QUICK, out=out, progress=False, wandb=WandbConfig(mode="disabled")))
            print(f"quick preset: {result.steps} steps, wall time {time.perf_counter() - start:.0f} s "
                  f"(fit {result.seconds:.0f} s, {result.images_per_second:.0f} images/s), final loss "
                  f"{result.final_loss:.4f}, val loss {result.val_loss:.4f}", flush=True)


if __name__ == "__main__":
    main()
