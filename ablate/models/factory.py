"""A user's ``nn.Module``: from ``package.module:factory`` (:func:`call_factory`), and the boundary its
convolutions pad with (:func:`conv_padding`). The one way into a user's module, for loading a network
(:mod:`ablate.models.load`) and for training one (``model.name=module``, :mod:`ablate.models.module_backbone`)."""
from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def conv_padding(module: nn.Module) -> str:
    """``circular`` when every padded conv pads circularly, else ``zeros`` (the boundary the oracle takes)."""
    modes = {getattr(m, "padding_mode", "zeros") for m in module.modules()
             if isinstance(m, (nn.Conv1d, nn.Conv2d)) and any(int(p) > 0 for p in _padding(m))}
    return "circular" if modes == {"circular"} else "zeros"


def _padding(conv: nn.Module) -> tuple:
    p = getattr(conv, "padding", (0,))
    return (1,) if isinstance(p, str) and p == "same" else (p if isinstance(p, tuple) else (p,) if isinstance(p, int) else (0,))


def call_factory(text: str, kwargs: Mapping[str, Any], weights: str | None = None) -> nn.Module:
    """The ``nn.Module`` that ``package.module:factory`` returns for ``kwargs`` (with ``weights`` loaded):
    the one way into a user's module, for loading a network and for training one (``model.name=module``)."""
    module_name, attr = text.split(":")
    try:
        mod = importlib.import_module(module_name)
    except Exception as err:  # ImportError, or the module's own error at import time
        raise ValueError(f"cannot import {module_name!r} of {text!r} ({type(err).__name__}: {err}); the module must "
                         "be importable from the working directory or an installed package") from err
    factory = getattr(mod, attr, None)
    if not callable(factory):
        raise ValueError(f"{module_name!r} has no callable {attr!r}; give package.module:factory")
    try:
        net = factory(**kwargs)
    except TypeError as err:
        raise ValueError(f"{text}(**{dict(kwargs)}) failed: {err}") from err
    if not isinstance(net, nn.Module):
        raise ValueError(f"{text} returned {type(net).__name__}, not a torch.nn.Module")
    if weights is not None:
        net.load_state_dict(_read_weights(weights))
    return net


def _read_weights(path: str) -> dict[str, torch.Tensor]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"net.weights {path!r} does not exist")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(p))
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"cannot read weights {path!r} (.safetensors, or a state dict torch.load reads with "
                         f"weights_only=True): {type(err).__name__}: {str(err).splitlines()[0][:200]}") from err
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds {type(state).__name__}, not a state dict")
    return state
