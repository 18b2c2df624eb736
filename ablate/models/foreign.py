"""Any network behind the denoiser interface: what it predicts and how it takes time.

A user's network (a diffusers ``UNet2DModel``, any ``nn.Module``) predicts ``epsilon``, the clean
``sample`` or ``v`` and reads the noise level as a discrete timestep, a continuous ``t``, ``sigma`` or
the log signal-to-noise ratio. :class:`NetworkSpec` declares that (``net.*`` keys on the command
line); :class:`ForeignDenoiser` turns it into ``x0_hat = D(x_t, alpha_bar)``, the oracle's interface:

* time: ``discrete``: the continuous timestep ``t`` with ``sigma(t) = sigma_i`` interpolated linearly
  between the integer timesteps of ``alphas_cumprod`` (``sigma_i = sqrt((1 - ac_i) / ac_i)``): on the
  training grid exactly ``i``, and between grid points exactly the float timestep diffusers' Euler and
  Heun schedulers (``interpolation_type="linear"``) hand the network; clamped to ``[0, N - 1]``.
  ``continuous``: ``time_scale * t`` with ``alpha_bar(t)`` the named schedule (closed-form inverse).
  ``sigma``: ``sqrt((1 - ab) / ab)``; ``log_snr``: ``log(ab / (1 - ab))``; ``alpha_bar``: itself.
* output (theory section 1): ``epsilon``: ``x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab)``; ``sample``:
  ``x0`` itself; ``v_prediction``: ``x0 = sqrt(ab) x_t - sqrt(1 - ab) v``; clipped to [-1, 1] when
  ``clip_sample`` (a diffusers config's own ``clip_sample``; ablate's networks clip too).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ablate.config import check_choice, check_float, check_int
from ablate.sampling import NOISE_SCHEDULES, DiscreteSchedule, inverse_schedule, per_item

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
TIME_INPUTS = ("discrete", "continuous", "sigma", "log_snr", "alpha_bar")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


@dataclass(frozen=True)
class NetworkSpec:
    """How a network outside ablate reads and writes (``net.<key>=value`` on the command line).

    prediction_type: ``epsilon``, ``sample`` or ``v_prediction``. time_input: ``discrete`` (an index into
    ``alphas_cumprod``), ``continuous`` (``t`` in [0, 1] of ``schedule``, times ``time_scale``), ``sigma``,
    ``log_snr`` or ``alpha_bar``. The discrete schedule comes from the model's scheduler config, or from
    ``beta_schedule`` (``linear``, ``scaled_linear``, ``squaredcos_cap_v2``) with ``beta_start``,
    ``beta_end`` and ``num_train_timesteps``, or from ``alphas_cumprod`` (a JSON list or ``.npy`` file).
    schedule: the continuous schedule to sample with when the network takes continuous time.
    clip_sample: clip ``x0_hat`` to [-1, 1] (None: the scheduler config's value, else True).
    class_labels: the network takes class labels (diffusers ``class_labels=``, else a third argument).
    weights: a ``.safetensors`` (or ``weights_only``-loadable ``.pt``) state dict for a ``module:factory``.
    kwargs: keyword arguments of the factory.
    """

    prediction_type: Literal["epsilon", "sample", "v_prediction"] | None = None
    time_input: Literal["discrete", "continuous", "sigma", "log_snr", "alpha_bar"] | None = None
    schedule: str = "cosine"
    time_scale: float = 1.0
    beta_schedule: str | None = None
    beta_start: float = 1e-4
    beta_end: float = 0.02
    num_train_timesteps: int = 1000
    alphas_cumprod: str | None = None
    clip_sample: bool | None = None
    class_labels: bool = False
    weights: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.prediction_type is not None:
            check_choice("net.prediction_type", self.prediction_type, PREDICTION_TYPES)
        if self.time_input is not None:
            check_choice("net.time_input", self.time_input, TIME_INPUTS)
        check_choice("net.schedule", self.schedule, tuple(NOISE_SCHEDULES))
        check_float("net.time_scale", self.time_scale, low=0.0, low_open=True)
        if self.beta_schedule is not None:
            check_choice("net.beta_schedule", self.beta_schedule, BETA_SCHEDULES)
        check_float("net.beta_start", self.beta_start, low=0.0, high=1.0, low_open=True, high_open=True)
        check_float("net.beta_end", self.beta_end, low=0.0, high=1.0, low_open=True, high_open=True)
        check_int("net.num_train_timesteps", self.num_train_timesteps, low=2)
        if not isinstance(self.kwargs, dict):
            raise ValueError(f"net.kwargs must be a mapping of the factory's keyword arguments, got {self.kwargs!r}")

    @property
    def declared(self) -> bool:
        """Does the spec say how the network takes time (without a scheduler config)?"""
        return self.time_input is not None and (self.time_input != "discrete" or self.beta_schedule is not None
                                                or self.alphas_cumprod is not None)

    def discrete_schedule(self) -> DiscreteSchedule | None:
        """The schedule the spec itself declares (beta_schedule or an alphas_cumprod file), else None."""
        if self.alphas_cumprod is not None:
            return DiscreteSchedule.from_alphas_cumprod(read_alphas_cumprod(self.alphas_cumprod))
        if self.beta_schedule is not None:
            return DiscreteSchedule({"num_train_timesteps": self.num_train_timesteps, "beta_schedule": self.beta_schedule,
                                     "beta_start": self.beta_start, "beta_end": self.beta_end})
        return None


def read_alphas_cumprod(path: str) -> np.ndarray:
    import json
    from pathlib import Path

    p = Path(path)
    try:
        values = np.load(p, allow_pickle=False) if p.suffix == ".npy" else np.asarray(json.loads(p.read_text()))
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read net.alphas_cumprod {path!r} (a JSON list or .npy file): {err}") from err
    return np.asarray(values, dtype=np.float64)


class TimeMap:
    """``alpha_bar [B] -> the network's time input [B]`` (see the module docstring)."""

    def __init__(self, time_input: str, schedule: DiscreteSchedule | str, time_scale: float = 1.0) -> None:
        check_choice("time_input", time_input, TIME_INPUTS)
        self.time_input, self.schedule, self.time_scale = time_input, schedule, time_scale
        if time_input == "discrete":
            if not isinstance(schedule, DiscreteSchedule):
                raise ValueError("a network with discrete timesteps needs a discrete schedule (alphas_cumprod)")
            ac = schedule.alphas_cumprod
            self.sigmas = ((1 - ac) / ac).sqrt().numpy()  # increasing with t

    def __call__(self, alpha_bar: torch.Tensor) -> torch.Tensor:
        ab = alpha_bar.double()
        if self.time_input == "discrete":
            sigma = ((1 - ab) / ab).sqrt().cpu().numpy()
            t = np.interp(sigma, self.sigmas, np.arange(len(self.sigmas), dtype=np.float64))
            return torch.from_numpy(t).to(alpha_bar.device)
        if self.time_input == "continuous":
            return self.time_scale * inverse_schedule(self.schedule, ab)
        if self.time_input == "sigma":
            return ((1 - ab) / ab).sqrt()
        if self.time_input == "log_snr":
            return torch.log(ab) - torch.log1p(-ab)
        return ab


def x0_from_prediction(x_t: torch.Tensor, out: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """The clean-image estimate from a network's output (theory section 1); alpha_bar ``[B]``."""
    ab = per_item(alpha_bar, x_t)
    if prediction_type == "epsilon":
        return (x_t - (1 - ab).sqrt() * out) / ab.sqrt()
    if prediction_type == "v_prediction":
        return ab.sqrt() * x_t - (1 - ab).sqrt() * out
    return out


def eps_from_prediction(x_t: torch.Tensor, out: torch.Tensor, alpha_bar: torch.Tensor,
                        prediction_type: str) -> torch.Tensor:
    """The noise estimate from a network's output (what ablate's epsilon loss trains): ``sample``:
    ``(x_t - sqrt(ab) x0) / sqrt(1 - ab)``; ``v_prediction``: ``sqrt(ab) v + sqrt(1 - ab) x_t``."""
    ab = per_item(alpha_bar, x_t)
    if prediction_type == "sample":
        return (x_t - ab.sqrt() * out) / (1 - ab).sqrt()
    if prediction_type == "v_prediction":
        return ab.sqrt() * out + (1 - ab).sqrt() * x_t
    return out


def call_network(module: nn.Module, x: torch.Tensor, time: torch.Tensor, labels: torch.Tensor | None,
                 class_labels: bool) -> torch.Tensor:
    """Call a diffusers model (``sample`` output) or a plain module (a tensor, or a tuple whose first
    element is the prediction)."""
    is_diffusers = hasattr(module, "config") and "class_labels" in inspect.signature(module.forward).parameters
    if is_diffusers:
        out = module(x, time, class_labels=labels if class_labels else None)
    elif class_labels:
        out = module(x, time, labels)
    else:
        out = module(x, time)
    if hasattr(out, "sample"):
        out = out.sample
    elif isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"the network returned {type(out).__name__}; it must return a tensor shaped like its input")
    if out.shape != x.shape:
        raise ValueError(f"the network's output has shape {tuple(out.shape)} but its input {tuple(x.shape)}; a "
                         "denoiser must return one value per input value (epsilon, sample or v)")
    return out


class ForeignDenoiser:
    """``x0_hat = D(x_t, alpha_bar[, labels])`` for a network declared by a :class:`NetworkSpec`.

    x_t ``[B, C, H, W]``; alpha_bar a float or ``[B]`` in (0, 1); labels ``[B]`` or None (``-1``: none).
    Runs without gradients in eval mode, in the network's own dtype and device.
    """

    def __init__(self, module: nn.Module, prediction_type: str, time_map: TimeMap, clip: bool = True,
                 class_labels: bool = False, num_classes: int | None = None) -> None:
        check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
        self.module, self.prediction_type, self.time_map = module, prediction_type, time_map
        self.clip, self.class_labels, self.num_classes = clip, class_labels, num_classes

    @property
    def device(self) -> torch.device:
        p = next(self.module.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        p = next(self.module.parameters(), None)
        return p.dtype if p is not None else torch.float32

    def raw(self, x: torch.Tensor, alpha_bar: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The network's own output (epsilon, sample or v) at noise level ``alpha_bar`` ``[B]``."""
        time = self.time_map(alpha_bar).to(x.device)
        if labels is not None and self.num_classes:
            labels = torch.where(labels < 0, torch.full_like(labels, self.num_classes), labels)
        return call_network(self.module, x, time.to(x.dtype), labels, self.class_labels)

    @torch.no_grad()
    def denoise(self, x_t: torch.Tensor, alpha_bar: float | torch.Tensor,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        was_training = self.module.training
        self.module.eval()
        try:
            x = x_t.to(self.device, self.dtype)
            ab = torch.as_tensor(alpha_bar, dtype=torch.float64, device=self.device)
            ab = ab.expand(len(x)) if ab.dim() == 0 else ab
            if labels is not None:
                labels = torch.as_tensor(labels, device=self.device).long().expand(len(x))
            x0 = x0_from_prediction(x, self.raw(x, ab, labels), ab, self.prediction_type)
            return (x0.clamp(-1.0, 1.0) if self.clip else x0).to(x_t.dtype)
        finally:
            self.module.train(was_training)

    __call__ = denoise
