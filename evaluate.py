"""How well does the oracle predict what a network generates? Any network: ablate's or yours.

    python evaluate.py runs/train/NAME/checkpoints/final.ckpt
    python evaluate.py CKPT machines=[els,ideal] seeds=64 samplers=[ddim]      # EvalConfig keys, as train.py's
    python evaluate.py CKPT --machines els,ideal --seeds 64 --samplers ddim     # the same, as flags
    python evaluate.py "$(python train.py | tail -n 1)"
    python evaluate.py runs/pipe data.name=mnist5k data.n=200 data.image_size=14 --machines els,ideal --seeds 16
    python evaluate.py runs/pipe data.name=mnist5k --samplers ddim,euler,dpm++
    python evaluate.py CKPT --protocols studio,golddiff     # also the Studio's and GoldDiff's own figures
    python evaluate.py mypkg.nets:build net.prediction_type=epsilon net.time_input=sigma net.weights=w.safetensors data.name=digits

Settings are EvalConfig's keys as key=value overrides (seeds, seed_offset, calibration_seeds, machines,
boundary, k_max, stride, steps, samplers, per_step, recalibrate, protocols, wandb_mode, progress), parsed as train.py
parses its own; the flags below are aliases (a key=value override wins over a flag).

MODEL is an ablate checkpoint, a diffusers folder (save_pretrained of a UNet2DModel with its scheduler
config, or of a pipeline), a TorchScript file or package.module:factory. A network that did not come
from ablate names its training data with train.py's data.* keys; net.* keys declare what it predicts
and how it takes time where no scheduler config says (see ablate/models/foreign.py).

Calibrates the ELS and LS machines to the network (one patch size per step,
saved beside the checkpoint), draws the same seeds through the same samplers
with the network, calibrated ELS, LS and IS (the same x_T and injected noise),
and writes agreement.json with pictures. The first sampler gives the headline
figures. The last line printed is the path of agreement.json.

A token model's checkpoint (token_resnet, token_transformer: masked diffusion, docs/theory.md section 12)
gets the text league instead (ablate/evaluation/text.py): LS and ELS at both boundaries calibrated per
unmasking step, IS, unigram and bigram, each unmasking the same seeds with the same randomness; per-seed
token agreement with the network, samples.html and per_step.png. It reads seeds, seed_offset,
calibration_seeds and steps.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ablate.evaluation import EvalConfig, eval_config, evaluate_source
from ablate.sampling import SAMPLERS
from ablate.paths import set_runs_root
from ablate.threads import apply_threads


def main(argv: list[str] | None = None) -> None:
    d = EvalConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="checkpoint, diffusers folder, TorchScript file or module:factory")
    p.add_argument("items", nargs="*", metavar="key=value",
                   help="EvalConfig keys (seeds=64), data.* (training data) and net.* (declaration)")
    p.add_argument("--machines", default=",".join(d.machines), help="comma-separated (default: every one, %(default)s)")
    p.add_argument("--seeds", type=int, default=d.seeds, help="M agreement seeds (default %(default)s)")
    p.add_argument("--seed-offset", type=int, default=d.seed_offset, help="first seed (default %(default)s)")
    p.add_argument("--calibration-seeds", type=int, default=d.calibration_seeds)
    p.add_argument("--boundary", default=d.boundary, choices=["auto", "zeros", "circular"],
                   help="auto: the network's padding")
    p.add_argument("--k-max", type=int, default=None, help="largest candidate k (default: receptive field)")
    p.add_argument("--samplers", "--sampler", default=",".join(d.samplers),
                   help=f"comma-separated, first = headline (default %(default)s); of {', '.join(SAMPLERS)}")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--no-per-step", action="store_true", help="skip the per-step denoiser agreement")
    p.add_argument("--recalibrate", action="store_true", help="ignore a saved calibration")
    p.add_argument("--protocols", default="", help="also the field's protocols, comma-separated: studio (the Analytic "
                   "Diffusion Studio's R^2 per step), golddiff (GoldDiff's MSE, r^2, time and memory); protocols.md")
    p.add_argument("--wandb", default=d.wandb_mode, choices=["auto", "offline", "online", "disabled"])
    p.add_argument("--out", default=None, help="output folder (default: <run>/evaluation)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (network, machines and sampler)")
    p.add_argument("--runs", help="root of everything written (default: $ABLATE_RUNS, else runs/)")
    p.add_argument("--threads", type=int, help="CPU threads (default: $ABLATE_THREADS, else all cores)")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    try:
        apply_threads(a.threads)
        set_runs_root(a.runs)
        flags = EvalConfig(machines=tuple(a.machines.split(",")), boundary=a.boundary, seeds=a.seeds,
                           seed_offset=a.seed_offset, calibration_seeds=a.calibration_seeds, k_max=a.k_max,
                           steps=a.steps, samplers=tuple(a.samplers.split(",")), per_step=not a.no_per_step,
                           recalibrate=a.recalibrate, wandb_mode=a.wandb, progress=not a.quiet,
                           protocols=tuple(p for p in a.protocols.split(",") if p))
        source = [i for i in a.items if i.split("=", 1)[0].startswith(("data.", "net."))]
        config = eval_config([i for i in a.items if i not in source], flags)
        result = evaluate_source(a.model, source, config, a.out, a.device)
    except ValueError as err:
        sys.exit(f"evaluate.py: {err}")
    s = result.summary
    if s.get("kind") == "tokens":
        print(f"{s['dataset']}: {s['model']} (receptive field {s['receptive_field'] or 'global'}), {s['steps']} "
              f"unmasking steps, {len(s['seeds'])} seeds; per-seed token agreement with the network (95% CI), chance "
              f"{s['chance_agreement']:.3f}:")
        for name in s["ranking"]:
            m = s["machines"][name]
            print(f"{name:15} {m['agreement']:.3f} [{m['agreement_ci95'][0]:.3f}, {m['agreement_ci95'][1]:.3f}]  "
                  f"mean TV {m['mean_tv']:.3f}  validity {m['text']['validity']:.2f}")
        n = s["network"]
        print(f"network: validity {n['validity']:.2f}, creativity {n['creativity']:.2f}, memorisation "
              f"{n['memorisation']:.2f}, artefact rate {n['artefact_rate']:.2f}")
        print(f"pictures: {', '.join(s['figures'].values())}")
        print(result.path)
        return
    print(f"{s['headline_sampler']}, {config.steps} steps, {len(s['seeds'])} seeds; machines best first by median r "
          "(95% CI), then r2, R2, MSE:")
    for name in s["league"]["by_median_r"]:
        ci = s[name]["median_r_ci95"]
        beat = s[name].get("fraction_beating_ideal")
        print(f"{name:19} r {s[name]['median_r']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]  r2 {s[name]['median_r2']:.3f}  "
              f"R2 {s[name]['median_R2']:.3f}  MSE {s[name]['median_mse']:.4f}"
              + (f"  beats IS on {beat:.0%} of seeds" if beat is not None else ""))
    for band, entry in s["league"]["bands"].items():
        print(f"  {band}: best {entry['best']} (mean per-step R2 {entry['mean_R2'][entry['best']]:.3f})")
    for sampler, machines in s["samplers"].items():
        print(f"{sampler}: " + ", ".join(f"{n} r {m['median_r']:.3f}" for n, m in machines.items()))
    if "protocols" in s:
        print(Path(s["figures"]["protocols"]).read_text().rstrip())
    print(f"pictures: {', '.join(s['figures'].values())}")
    print(result.path)


if __name__ == "__main__":
    main()
