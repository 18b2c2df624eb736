"""Design before training: what would a convolutional diffusion model trained on this data generate?

``python -m ablate.preview`` draws the same seeds through the same DDIM
sampler with the ideal score machine (memorisation), the local score machine
(locality only) and the equivariant local score machine (locality +
equivariance, the paper's model of a trained CNN), and saves them side by side
with their nearest training images.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ablate.config import to_dict
from ablate.data import DataConfig, load_dataset
from ablate.oracle import OracleConfig, PatchSchedule, build_oracle
from ablate.sampling import sample
from ablate.viz import save_grid


@dataclass(frozen=True)
class PreviewConfig:
    data: DataConfig = field(default_factory=lambda: DataConfig(name="mnist5k", n=500, image_size=14))
    boundary: str = "zeros"
    k_min: int = 3
    k_max: int = 9
    shape: float = 1.0
    seeds: tuple[int, ...] = tuple(range(8))
    steps: int = 20
    out: str | None = None  # None: <runs root>/preview


@dataclass(frozen=True)
class PreviewResult:
    grid: Path
    summary: Path
    seconds: dict[str, float]
    nearest_distance: dict[str, float]


def run(cfg: PreviewConfig, progress: bool = True) -> PreviewResult:
    """Sample every machine from the same seeds; save a PNG grid and a JSON summary."""
    data = load_dataset(cfg.data)
    train = data.train
    shape = tuple(train.shape[1:])
    schedule = PatchSchedule("power", k_min=cfg.k_min, k_max=cfg.k_max, shape=cfg.shape)
    machines = {
        "IS (memorises)": OracleConfig(machine="ideal"),
        f"LS k={cfg.k_min}..{cfg.k_max}": OracleConfig(machine="ls", patch_size=schedule, boundary=cfg.boundary),
        f"ELS k={cfg.k_min}..{cfg.k_max}": OracleConfig(machine="els", patch_size=schedule, boundary=cfg.boundary),
    }
    rows, titles, seconds, nearest = [], [], {}, {}
    for name, oc in machines.items():
        start = time.perf_counter()
        out = sample(build_oracle(oc, train), list(cfg.seeds), shape, steps=cfg.steps, progress=progress).samples
        seconds[name] = time.perf_counter() - start
        dist = torch.cdist(out.flatten(1), train.flatten(1))
        near = train[dist.argmin(1)]
        nearest[name] = float((dist.min(1).values / train[0].numel() ** 0.5).median())
        rows += [out, near]
        titles += [name, "nearest train"]
        if progress:
            print(f"{name}: {seconds[name]:.1f} s for {len(cfg.seeds)} samples", flush=True)
    from ablate.paths import runs_root

    outdir = Path(cfg.out or runs_root() / "preview")
    grid = save_grid(rows, titles, outdir / "preview.png",
                     title=f"{cfg.data.name}, N={len(train)}, {shape[1]}x{shape[2]}, boundary={cfg.boundary}, "
                           f"{cfg.steps}-step DDIM, seeds {cfg.seeds[0]}..{cfg.seeds[-1]}")
    summary = outdir / "preview.json"
    summary.write_text(json.dumps({"config": to_dict(cfg), "seconds": seconds,
                                   "median_rms_distance_to_nearest_training_image": nearest}, indent=1))
    return PreviewResult(grid, summary, seconds, nearest)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--n", type=int, default=500, help="training images (class-balanced)")
    p.add_argument("--image-size", type=int, default=14)
    p.add_argument("--boundary", default="zeros", choices=["zeros", "circular"])
    p.add_argument("--k-min", type=int, default=3)
    p.add_argument("--k-max", type=int, default=9)
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--out", default=None, help="default: <runs root>/preview")
    p.add_argument("--runs", help="root of everything written (default: $ABLATE_RUNS, else runs/)")
    p.add_argument("--threads", type=int, help="CPU threads (default: $ABLATE_THREADS, else all cores)")
    a = p.parse_args(argv)
    from ablate.threads import apply_threads

    apply_threads(a.threads)
    from ablate.paths import set_runs_root

    set_runs_root(a.runs)
    size = None if a.image_size <= 0 else a.image_size
    cfg = PreviewConfig(data=DataConfig(name=a.dataset, n=a.n, image_size=size), boundary=a.boundary,
                        k_min=a.k_min, k_max=a.k_max, seeds=tuple(range(a.seeds)), out=a.out)
    result = run(cfg)
    print(result.summary)
    print(result.grid)


if __name__ == "__main__":
    main()
