"""The unmasking sampler of masked diffusion with randomness shared between models (theory section 12).

``T`` steps from ``t = 1`` (all masked) to ``t = 0``. From ``t`` to ``s < t`` each still-masked position is
revealed with probability ``(alpha(s) - alpha(t)) / (1 - alpha(t))`` (every remaining one at the last step) and
takes the token drawn from ``x0_hat[:, i]`` by inverse CDF over ``v = 0 .. V-1``. For a seed the reveal
uniforms ``u [T, L]`` and the token uniforms ``g [T, L]`` are drawn once (:func:`seed_uniforms`), so a network
and every machine sampled from the same seed unmask in the same order and differ only through their
posteriors. Any object with ``denoise(x_t [B, L] int64, alpha) -> [B, V, L]`` and ``vocab_size`` samples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import torch

MASK_SCHEDULES: dict[str, Callable[[float], float]] = {
    "linear": lambda t: 1.0 - t,
    "cosine": lambda t: math.cos(math.pi * t / 2.0) if t < 1.0 else 0.0,
}


class TokenDenoiser(Protocol):
    vocab_size: int

    def denoise(self, x_t: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor: ...


def mask_schedule(name: str) -> Callable[[float], float]:
    if name not in MASK_SCHEDULES:
        raise ValueError(f"mask schedule {name!r} is not allowed; choose one of {', '.join(MASK_SCHEDULES)}")
    return MASK_SCHEDULES[name]


def seed_uniforms(seeds: Sequence[int], steps: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(u, g)``, each ``[S, T, L]`` in [0, 1): per seed, its own generator, reveal uniforms then token ones."""
    us, gs = [], []
    for seed in seeds:
        gen = torch.Generator().manual_seed(int(seed))
        us.append(torch.rand(steps, length, generator=gen, dtype=torch.float64))
        gs.append(torch.rand(steps, length, generator=gen, dtype=torch.float64))
    return torch.stack(us), torch.stack(gs)


def inverse_cdf(probs: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The token of each position drawn by inverse CDF: ``probs`` ``[B, V, L]``, ``g`` ``[B, L]`` -> ``[B, L]``
    (the first ``v`` whose cumulative probability exceeds ``g``)."""
    cdf = probs.double().cumsum(1)
    return (cdf <= g[:, None]).sum(1).clamp(max=probs.shape[1] - 1)


@dataclass(frozen=True)
class TokenSamples:
    """tokens ``[S, L]`` int64; trajectory ``[T, S, L]``: the input ``x_t`` of each step (all masked first);
    alphas ``[T]``: the survival probability each step's input was denoised at."""

    tokens: torch.Tensor
    trajectory: torch.Tensor
    alphas: tuple[float, ...]


def unmask(denoiser: TokenDenoiser, seeds: Sequence[int], length: int, steps: int = 12, schedule: str = "cosine",
           batch: int = 256, progress: bool = False) -> TokenSamples:
    """Sample ``len(seeds)`` sequences of ``length`` tokens from ``denoiser`` in ``steps`` unmasking steps."""
    if steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    if not seeds:
        raise ValueError("seeds is empty; give at least one seed")
    alpha = mask_schedule(schedule)
    V = int(denoiser.vocab_size)
    u, g = seed_uniforms(seeds, steps, length)
    x = torch.full((len(seeds), length), V, dtype=torch.long)
    trajectory, alphas = [], []
    for i in range(steps):
        t, s = 1.0 - i / steps, 1.0 - (i + 1) / steps
        a_t, a_s = alpha(t), alpha(s)
        trajectory.append(x.clone())
        alphas.append(a_t)
        masked = x == V
        if not masked.any():
            continue
        reveal = masked & ((u[:, i] < (a_s - a_t) / (1.0 - a_t)) if i < steps - 1 else torch.ones_like(masked))
        if not reveal.any():
            continue
        rows = torch.nonzero(reveal.any(1)).flatten()
        for start in range(0, len(rows), batch):
            r = rows[start:start + batch]
            probs = denoiser.denoise(x[r], a_t).detach().cpu()
            if probs.shape != (len(r), V, length):
                raise ValueError(f"the denoiser returned {tuple(probs.shape)}; expected [B, V, L] = "
                                 f"[{len(r)}, {V}, {length}]")
            drawn = inverse_cdf(probs, g[r, i])
            x[r] = torch.where(reveal[r], drawn, x[r])
        if progress:
            print(f"unmasking step {i + 1}/{steps}: {int((x == V).sum())} tokens still masked", flush=True)
    return TokenSamples(x, torch.stack(trajectory), tuple(alphas))
