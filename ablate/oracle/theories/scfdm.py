"""SCFDM, the smoothed closed-form diffusion model (theory section 9): IS averaged over ``num_noise`` inputs
``x + smoothing_std * eps_m``; the ``eps_m`` (one image each, shared by the batch) come from a generator seeded
with ``noise_seed`` at every call, so the same input gives the same output."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ablate.config import check_float, check_int
from ablate.oracle.registry import register_theory


@dataclass(frozen=True)
class SCFDMKnobs:
    """smoothing_std: sigma_s; num_noise: M; noise_seed: the generator's seed."""

    smoothing_std: float = 0.1
    num_noise: int = 8
    noise_seed: int = 0

    def __post_init__(self) -> None:
        check_float("smoothing_std", self.smoothing_std, low=0.0)
        check_int("num_noise", self.num_noise, low=1)
        check_int("noise_seed", self.noise_seed, low=0)


@register_theory("scfdm", order=100, knobs=SCFDMKnobs, summary="SCFDM: IS of smoothed inputs")
def denoise(engine, x, a, b2, k, images, label):
    knobs = engine.config.knobs
    sigma, M = float(knobs.smoothing_std), int(knobs.num_noise)
    g = torch.Generator().manual_seed(int(knobs.noise_seed))
    eps = torch.randn((M,) + tuple(x.shape[1:]), generator=g, dtype=torch.float64).to(x.device, x.dtype)
    total = torch.zeros_like(x)
    for m in range(M):
        total += engine.ideal(x + sigma * eps[m], a, b2, images)
    return total / M
