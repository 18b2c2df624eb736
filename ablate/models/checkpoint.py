"""The ablate checkpoint file: read safely (``weights_only=True``), with errors that say what is wrong.

A checkpoint is a Lightning checkpoint with an ``ablate`` section: ``format`` (:data:`CHECKPOINT_FORMAT`),
``config`` (the run's resolved training config as plain data) and ``meta`` (``image_shape``, ``num_classes``).
The network it holds is rebuilt here from ``config["model"]`` alone (:func:`backbone_from_checkpoint`); the
typed training config around it is the training package's (:func:`ablate.training.checkpoint.config_of`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ablate.config import build_config
from ablate.models.config import BackboneConfig

CHECKPOINT_FORMAT = 1


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


def backbone_from_checkpoint(ckpt: dict[str, Any], path: str | Path, device: str | torch.device = "cpu",
                             ema: bool = True) -> tuple[nn.Module, BackboneConfig]:
    """The trained backbone of a :func:`read_checkpoint` dict (EMA weights when the run kept them and ``ema``),
    in eval mode on ``device``, and its config. ``path`` names the file in errors."""
    from ablate.models.build import build_backbone

    model = build_config(BackboneConfig, ckpt["ablate"]["config"].get("model"), "model.")
    meta = ckpt["ablate"]["meta"]
    if model.tokens:
        backbone = build_backbone(model, meta["vocab_size"], None, meta["image_shape"][0])
    else:
        backbone = build_backbone(model, meta["image_shape"][0], meta["num_classes"])
    state = ckpt["state_dict"]
    prefix = "ema.module." if ema and any(k.startswith("ema.module.") for k in state) else "backbone."
    weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        backbone.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise ValueError(f"checkpoint {str(path)!r} does not fit the architecture its config describes "
                         f"({model.name}, depth {model.depth}, widths {model.widths}): "
                         f"{str(err).splitlines()[0][:300]}") from err
    return backbone.to(device).eval(), model
