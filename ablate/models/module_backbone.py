"""Any ``nn.Module`` as an ablate backbone (``model.name=module model.factory=package.module:factory``).

So a design study or a training sweep can list a user's architecture beside ablate's own. The factory is
called with ``channels`` (and ``num_classes`` when the run is conditional) plus ``model.kwargs``; the module
is called as ``module(x_t, time)`` (``module(x_t, time, labels)`` with ``model.class_labels=true``), where
``time`` follows ``model.time_input`` (``continuous``: the cosine schedule's ``t`` times
``model.time_scale``; ``sigma``; ``log_snr``; ``alpha_bar``), and predicts ``model.prediction_type``
(``epsilon``, ``sample``, ``v_prediction``). ablate trains it with its epsilon loss, the prediction turned
into ``eps_hat`` exactly (theory section 1). Its geometry is measured (:mod:`ablate.models.probe`).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ablate.config import check_choice, check_float
from ablate.models.foreign import PREDICTION_TYPES, TIME_INPUTS as ALL_TIME_INPUTS
from ablate.models.foreign import TimeMap, call_network, eps_from_prediction
from ablate.models.factory import FACTORY, call_factory

KEYS = ("factory", "kwargs", "time_input", "time_scale", "prediction_type", "class_labels")
TIME_INPUTS = tuple(t for t in ALL_TIME_INPUTS if t != "discrete")  # ablate trains in continuous time

def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with defaults (``time_input: log_snr``, ``prediction_type: epsilon``), checked."""
    for key in options:
        if key not in KEYS:
            raise ValueError(f"model.{key} is not a setting of name=module; allowed: {', '.join(KEYS)}")
    out = {"kwargs": {}, "time_input": "log_snr", "time_scale": 1.0, "prediction_type": "epsilon",
           "class_labels": False, **options}
    if not isinstance(out.get("factory"), str) or not FACTORY.match(out["factory"]):
        raise ValueError(f"name=module needs model.factory=package.module:factory, got {out.get('factory')!r}")
    check_choice("model.time_input", out["time_input"], TIME_INPUTS)
    check_choice("model.prediction_type", out["prediction_type"], PREDICTION_TYPES)
    check_float("model.time_scale", out["time_scale"], low=0.0, low_open=True)
    if not isinstance(out["kwargs"], Mapping):
        raise ValueError(f"model.kwargs must be a mapping of the factory's keyword arguments, got {out['kwargs']!r}")
    return out


class ModuleBackbone(nn.Module):
    """``eps_hat = f(x_t, alpha_bar[, labels])`` from a user's module (``.net``)."""

    def __init__(self, config, channels: int, num_classes: int | None = None) -> None:
        super().__init__()
        self.config = config
        self.options = check_options(config.options)
        known = {"channels": channels, **({"num_classes": num_classes} if num_classes else {})}
        self.net = call_factory(self.options["factory"], {**known, **self.options["kwargs"]})
        self.channels = channels
        self.time_map = TimeMap(self.options["time_input"], "cosine", float(self.options["time_scale"]))
        self.num_classes = num_classes
        self._geometry = None

    def forward(self, x_t: torch.Tensor, alpha_bar: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        ab = alpha_bar.double()
        time = self.time_map(ab).to(x_t.dtype)
        out = call_network(self.net, x_t, time, labels, self.options["class_labels"])
        return eps_from_prediction(x_t, out, ab, self.options["prediction_type"])

    def geometry(self):
        if self._geometry is None:
            from ablate.models.factory import conv_padding
            from ablate.models.probe import probe_network

            self._geometry = probe_network(self, lambda x, ab, labels=None: self(x, ab, labels), self.channels,
                                           conv_padding(self.net), 8)
        return self._geometry

    def receptive_field(self) -> int | None:
        return self.geometry().receptive_field
