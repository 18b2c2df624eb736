"""Noise schedules ``alpha_bar(t)`` for continuous ``t`` in [0, 1] (``x_t = sqrt(ab) x_0 + sqrt(1-ab) eps``)."""
from __future__ import annotations

import math
from typing import Callable

import torch


def cosine(t: torch.Tensor) -> torch.Tensor:
    """The paper's cosine schedule (theory section 1): ``cos(t / 1.008 * pi / 2)^2``; ``alpha_bar(0) = 1``."""
    return torch.cos(t / 1.008 * math.pi / 2) ** 2


def linear(t: torch.Tensor, beta_min: float = 0.1, beta_max: float = 20.0) -> torch.Tensor:
    """The continuous-time linear (VP) schedule: ``exp(-(beta_min t + (beta_max - beta_min) t^2 / 2))``."""
    return torch.exp(-(beta_min * t + 0.5 * (beta_max - beta_min) * t * t))


NOISE_SCHEDULES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"cosine": cosine, "linear": linear}


def get_schedule(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name not in NOISE_SCHEDULES:
        raise ValueError(f"unknown noise schedule {name!r}; choose one of {', '.join(NOISE_SCHEDULES)}")
    return NOISE_SCHEDULES[name]


def time_grid(steps: int) -> torch.Tensor:
    """``t_i = i / T`` for ``i = T, T-1, ..., 0`` (theory section 6), float64 ``[T + 1]``."""
    if steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    return torch.arange(steps, -1, -1, dtype=torch.float64) / steps


def inverse_schedule(name: str, alpha_bar: torch.Tensor) -> torch.Tensor:
    """The time ``t`` in [0, 1] with ``alpha_bar(t) = alpha_bar`` (float64), in closed form:
    cosine ``t = 1.008 * 2 / pi * arccos(sqrt(ab))``; linear: the positive root of
    ``(beta_max - beta_min) t^2 / 2 + beta_min t + log(ab) = 0``."""
    get_schedule(name)
    ab = torch.as_tensor(alpha_bar, dtype=torch.float64)
    if name == "cosine":
        return 1.008 * 2 / math.pi * torch.arccos(ab.sqrt().clamp(max=1.0))
    b0, b1 = 0.1, 20.0
    c = torch.log(ab)
    return (-b0 + torch.sqrt(b0 * b0 - 2 * (b1 - b0) * c)) / (b1 - b0)
