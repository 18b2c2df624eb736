"""Reading training checkpoints safely (``weights_only=True``) with errors that say what is wrong."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ablate.config import build_config
from ablate.models import NetworkDenoiser, build_backbone
from ablate.training.config import TrainConfig
from ablate.training.module import CHECKPOINT_FORMAT


@dataclass(frozen=True)
class TrainedModel:
    """A backbone rebuilt from a checkpoint (EMA weights when the run kept them), with its run's config.
    ``image_shape`` is ``(C, H, W)``; ``num_classes`` is None for unconditional models."""

    config: TrainConfig
    backbone: nn.Module
    image_shape: tuple[int, int, int]
    num_classes: int | None
    step: int
    path: Path

    def denoiser(self, clip: bool = True) -> NetworkDenoiser:
        return NetworkDenoiser(self.backbone, clip=clip)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, refusing anything that is not a readable ablate training checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist (or is not a file)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated / foreign / pickled-object files
        raise ValueError(f"cannot read checkpoint {str(path)!r}: {why_unreadable(path, err)}") from err
    if not isinstance(ckpt, dict) or "ablate" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path} is a PyTorch file but not an ablate training checkpoint "
                         "(no 'ablate' section); train one with train.py")
    if ckpt["ablate"].get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} has checkpoint format {ckpt['ablate'].get('format')!r}; this version reads "
                         f"format {CHECKPOINT_FORMAT}")
    return ckpt


def why_unreadable(path: Path, err: Exception) -> str:
    """What is wrong with a file ``torch.load(weights_only=True)`` refused, without torch's advice to load it
    unsafely (``weights_only=False`` would run any code a pickle holds)."""
    if path.stat().st_size == 0:
        return "the file is empty (0 bytes): the run that wrote it was probably killed while saving"
    text = str(err)
    found = [line.split(" was not")[0].split("Unsupported global:")[-1].strip() for line in text.splitlines()
             if "Unsupported global" in line]
    if found:
        return f"it holds pickled Python objects, which ablate never unpickles (they can run code): {found[0]}"
    lines = [line.strip() for line in text.splitlines() if line.strip() and "weights_only" not in line
             and "can still be loaded" not in line and "Weights only load failed" not in line]
    return f"the file is corrupt, truncated or not a PyTorch checkpoint ({type(err).__name__}" + \
        (f": {lines[0][:200]})" if lines else ")")


def config_of(ckpt: dict[str, Any]) -> TrainConfig:
    return build_config(TrainConfig, ckpt["ablate"]["config"])


# what a resumed run may not change: the data, the network, the loss and the noise it draws
PROTECTED = ("data", "model", "optim", "noise_schedule", "t_min", "conditional", "label_dropout", "batch_size",
             "epoch_images", "seed")


def resume_differences(saved: TrainConfig, now: TrainConfig) -> list[str]:
    """``key: saved -> now`` for every protected setting a resumed run would change."""
    from ablate.config import differences, to_dict

    a, b = to_dict(saved), to_dict(now)
    return [line for key in PROTECTED for line in differences(a[key], b[key], key)]


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", ema: bool = True) -> TrainedModel:
    """Rebuild the trained backbone from the checkpoint alone (its own config and shapes)."""
    ckpt = read_checkpoint(path)
    config = config_of(ckpt)
    meta = ckpt["ablate"]["meta"]
    backbone = build_backbone(config.model, meta["image_shape"][0], meta["num_classes"])
    state = ckpt["state_dict"]
    prefix = "ema.module." if ema and any(k.startswith("ema.module.") for k in state) else "backbone."
    weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        backbone.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise ValueError(f"checkpoint {str(path)!r} does not fit the architecture its config describes "
                         f"({config.model.name}, depth {config.model.depth}, widths {config.model.widths}): "
                         f"{str(err).splitlines()[0][:300]}") from err
    backbone.to(device).eval()
    return TrainedModel(config, backbone, tuple(meta["image_shape"]), meta["num_classes"],
                        int(ckpt.get("global_step", 0)), Path(path))
