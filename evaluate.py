"""How well does the oracle predict what a trained network generates?

    python evaluate.py runs/train/NAME/checkpoints/final.ckpt
    python evaluate.py CKPT --machines els,ideal --seeds 64 --samplers ddim
    python evaluate.py "$(python train.py | tail -n 1)"

Calibrates the ELS and LS machines to the network (one patch size per step,
saved beside the checkpoint), draws the same seeds through the same sampler
with the network, calibrated ELS, LS and IS (DDIM, and DDPM replaying the same
noise), and writes agreement.json with pictures into <run>/evaluation/. The
last line printed is the path of agreement.json.
"""
from __future__ import annotations

import argparse
import sys

from ablate.evaluation import EvalConfig, evaluate_checkpoint


def main(argv: list[str] | None = None) -> None:
    d = EvalConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--machines", default=",".join(d.machines), help="of ideal, ls, els, es (default %(default)s)")
    p.add_argument("--seeds", type=int, default=d.seeds, help="M agreement seeds (default %(default)s)")
    p.add_argument("--seed-offset", type=int, default=d.seed_offset, help="first seed (default %(default)s)")
    p.add_argument("--calibration-seeds", type=int, default=d.calibration_seeds)
    p.add_argument("--boundary", default=d.boundary, choices=["auto", "zeros", "circular"],
                   help="auto: the network's padding")
    p.add_argument("--k-max", type=int, default=None, help="largest candidate k (default: receptive field)")
    p.add_argument("--samplers", default=",".join(d.samplers), help="ddim first; ddpm replays identical noise")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--no-per-step", action="store_true", help="skip the per-step denoiser agreement")
    p.add_argument("--recalibrate", action="store_true", help="ignore a saved calibration")
    p.add_argument("--wandb", default=d.wandb_mode, choices=["auto", "offline", "online", "disabled"])
    p.add_argument("--out", default=None, help="output folder (default: <run>/evaluation)")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    try:
        config = EvalConfig(machines=tuple(a.machines.split(",")), boundary=a.boundary, seeds=a.seeds,
                            seed_offset=a.seed_offset, calibration_seeds=a.calibration_seeds, k_max=a.k_max,
                            steps=a.steps, samplers=tuple(a.samplers.split(",")), per_step=not a.no_per_step,
                            recalibrate=a.recalibrate, wandb_mode=a.wandb, progress=not a.quiet)
        result = evaluate_checkpoint(a.checkpoint, config, a.out)
    except ValueError as err:
        sys.exit(f"evaluate.py: {err}")
    s = result.summary
    for name in config.machines:
        ci = s[name]["median_r2_ci95"]
        beat = s[name].get("fraction_beating_ideal")
        print(f"{name:6} median r2 {s[name]['median_r2']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]  median R2 "
              f"{s[name]['median_R2']:.3f}" + (f"  beats IS on {beat:.0%} of seeds" if beat is not None else ""))
    for sampler, machines in s["samplers"].items():
        print(f"{sampler}: " + ", ".join(f"{n} median r2 {m['median_r2']:.3f}" for n, m in machines.items()))
    print(f"pictures: {', '.join(s['figures'].values())}")
    print(result.path)


if __name__ == "__main__":
    main()
