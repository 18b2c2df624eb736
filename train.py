"""Train a diffusion backbone.

    python train.py                                   # the quick CPU preset (mnist5k, 14x14, ResNet)
    python train.py configs/mnist5k_unet_gpu.yaml     # a preset file (configs/)
    python train.py --print-config model.name=unet    # the resolved config and every key, without training
    python train.py model.name=unet model.depth=2 optim.lr=1e-3 max_steps=2000   # key=value overrides
    python train.py --resume runs/train/NAME/checkpoints/last.ckpt max_steps=16000   # its own config, 16k steps

The last line printed is the final checkpoint's path, so that
``python evaluate.py "$(python train.py | tail -n 1)"`` chains.
"""
from __future__ import annotations

import argparse
import sys

from ablate.paths import set_runs_root
from ablate.threads import apply_threads
from ablate.training import load_config, run


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("items", nargs="*", metavar="CONFIG.yaml | key=value",
                   help="an optional YAML config first, then overrides")
    p.add_argument("--resume", metavar="CHECKPOINT", help="continue the run of this checkpoint")
    p.add_argument("--runs", help="root of everything written (default: $ABLATE_RUNS, else runs/)")
    p.add_argument("--threads", type=int, help="CPU threads (default: $ABLATE_THREADS, else all cores)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config (YAML) and exit")
    a = p.parse_args(argv)
    path = a.items[0] if a.items and "=" not in a.items[0] else None
    overrides = a.items[1:] if path else a.items
    try:
        apply_threads(a.threads)
        set_runs_root(a.runs)
        base = None
        if a.resume:  # the run continues with its own saved config; overrides change only what they name
            from ablate.config import to_dict
            from ablate.training import read_checkpoint
            from ablate.training.checkpoint import config_of

            base = to_dict(config_of(read_checkpoint(a.resume)))
        config = load_config(path, overrides, base=base)
        if a.print_config:
            import yaml

            print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
            return
        result = run(config, resume=a.resume)
    except ValueError as err:
        sys.exit(f"train.py: {err}")
    print(f"trained {result.steps} steps in {result.seconds:.0f} s ({result.images_per_second:.0f} images/s), "
          f"final loss {result.final_loss:.4f}, receptive field {result.receptive_field}, stride {result.stride}")
    print(f"samples: {result.samples}")
    print(result.checkpoint)


if __name__ == "__main__":
    main()
