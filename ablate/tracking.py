"""Weights & Biases: offline unless the user has configured a key; every run is finished."""
from __future__ import annotations

import netrc
import os
from pathlib import Path

MODES = ("auto", "offline", "online", "disabled")


def has_api_key() -> bool:
    """True when W&B could log online: ``WANDB_API_KEY`` is set or ``wandb login`` wrote a netrc entry."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        path = os.environ.get("NETRC") or str(Path.home() / ".netrc")
        return netrc.netrc(path).authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str) -> str:
    """``auto`` -> ``online`` with a key, else ``offline`` (no network wait, no prompt); a
    ``WANDB_MODE`` set in the environment wins over ``auto``."""
    if mode != "auto":
        return mode
    env = os.environ.get("WANDB_MODE")
    if env in ("offline", "online", "disabled"):
        return env
    return "online" if has_api_key() else "offline"


def finish() -> None:
    """Finish the current W&B run, if any (a second logger would otherwise silently reuse it)."""
    import wandb

    if wandb.run is not None:
        wandb.finish()
