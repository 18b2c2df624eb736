"""Samplers: ablate's own deterministic DDIM and stochastic DDPM, and diffusers' schedulers, from
explicit seeds.

The sampler never owns a model: it calls ``denoiser.denoise(x, alpha_bar, labels)``
(any object with that method: the oracle, a trained backbone, a user's network) and applies a
pure step function, so the oracle and a network can replay the same noise. ``ddim`` and ``ddpm``
are the step functions below; every other name is a diffusers scheduler
(:mod:`ablate.sampling.schedulers`). ablate's ``ddim`` gives the same trajectory as diffusers'
``DDIMScheduler`` on the same ``alphas_cumprod`` and timesteps (tested to 1e-5).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch

from ablate.sampling.plans import announce_plan, report_plan
from ablate.sampling.schedulers import ALL_SAMPLERS, Schedule, own_grid, sampler_name, scheduler_sample

SAMPLERS = ALL_SAMPLERS


class Denoiser(Protocol):
    """Noisy image + noise level -> estimate of the clean image.

    x_t ``[B, C, H, W]``; alpha_bar ``[B]`` in (0, 1); labels ``[B]`` or None.
    Returns x0_hat ``[B, C, H, W]``. Optional: ``release() -> int``, free what it caches between calls
    (:func:`release`).
    """

    def denoise(self, x_t: torch.Tensor, alpha_bar: torch.Tensor,
                labels: torch.Tensor | None = None) -> torch.Tensor: ...


def release(denoiser) -> int:
    """Free what a denoiser caches between calls, where it has a ``release()`` (the oracle's key sets; a
    network has nothing to free): a league calls it after each machine's turn, so a process holds one
    machine's cache at a time instead of one per machine. Returns the bytes freed (0: nothing)."""
    free = getattr(denoiser, "release", None)
    return int(free()) if callable(free) else 0


def per_item(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values [B]`` shaped to broadcast over the items of ``like`` (``[B, C, H, W]`` or ``[B, C, L]``)."""
    return values.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def eps_from_x0(x_t: torch.Tensor, x0_hat: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """``eps_hat = (x_t - sqrt(ab) x0_hat) / sqrt(1 - ab)`` (theory section 1); alpha_bar broadcast per image."""
    ab = per_item(alpha_bar, x_t)
    return (x_t - ab.sqrt() * x0_hat) / (1 - ab).sqrt()


def ddim_step(x_t: torch.Tensor, x0_hat: torch.Tensor, alpha_bar: torch.Tensor,
              alpha_bar_prev: torch.Tensor) -> torch.Tensor:
    """Deterministic DDIM (theory section 6): ``sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev) eps_hat``."""
    eps = eps_from_x0(x_t, x0_hat, alpha_bar)
    abp = per_item(alpha_bar_prev, x_t)
    return abp.sqrt() * x0_hat + (1 - abp).sqrt() * eps


def ddpm_step(x_t: torch.Tensor, x0_hat: torch.Tensor, alpha_bar: torch.Tensor, alpha_bar_prev: torch.Tensor,
              noise: torch.Tensor) -> torch.Tensor:
    """Ancestral DDPM: a draw from ``q(x_prev | x_t, x0 = x0_hat)``, the Gaussian posterior with
    mean ``(sqrt(ab_prev) beta x0 + sqrt(alpha) (1 - ab_prev) x_t) / (1 - ab)`` and variance
    ``(1 - ab_prev) beta / (1 - ab)``, where ``alpha = ab / ab_prev`` and ``beta = 1 - alpha``."""
    ab, abp = per_item(alpha_bar, x_t), per_item(alpha_bar_prev, x_t)
    alpha = ab / abp
    beta = 1 - alpha
    mean = (abp.sqrt() * beta * x0_hat + alpha.sqrt() * (1 - abp) * x_t) / (1 - ab)
    var = (1 - abp) * beta / (1 - ab)
    return mean + var.sqrt() * noise


def seed_noise(seeds: Sequence[int], shape: tuple[int, int, int], steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per seed: ``x_T ~ N(0, I)`` ``[B, C, H, W]`` and the DDPM step noise ``[T, B, C, H, W]``,
    all drawn from ``torch.Generator().manual_seed(seed)`` on the CPU in float64, so any
    device and dtype replays the same numbers."""
    xs, zs = [], []
    for seed in seeds:
        g = torch.Generator().manual_seed(int(seed))
        xs.append(torch.randn(shape, generator=g, dtype=torch.float64))
        zs.append(torch.randn((steps,) + tuple(shape), generator=g, dtype=torch.float64))
    return torch.stack(xs), torch.stack(zs, dim=1)


@dataclass(frozen=True)
class SampleResult:
    """samples ``[B, C, H, W]``; alpha_bars ``[E]``: the noise level of each of the ``E`` denoiser calls
    (``E = T`` but for Heun, ``2 T - 1``); when the trajectory was kept, x0_hats ``[E, B, C, H, W]``
    (denoiser outputs, first call first) and xs ``[E + 1, B, C, H, W]`` (the denoiser's input at each call,
    x_T first, then the final sample)."""

    samples: torch.Tensor
    alpha_bars: torch.Tensor
    x0_hats: torch.Tensor | None = None
    xs: torch.Tensor | None = None


def sample(denoiser: Denoiser, seeds: Sequence[int], shape: tuple[int, ...], steps: int = 20,
           sampler: str = "ddim", schedule: Schedule = "cosine",
           labels: torch.Tensor | None = None, keep_trajectory: bool = False,
           dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
           progress: bool = False) -> SampleResult:
    """Run the reverse process from ``x_T`` of each seed. ``schedule``: a continuous schedule's name (own
    samplers on the grid ``t_i = i / T``) or a :class:`~ablate.sampling.DiscreteSchedule` (a diffusers
    config: its DDIM/DDPM timesteps). ``sampler``: ``ddim``, ``ddpm`` or a diffusers scheduler's name."""
    sampler = sampler_name(sampler)
    if isinstance(seeds, (int, str, bytes)) or not hasattr(seeds, "__len__"):
        raise ValueError(f"seeds must be a sequence of integers (e.g. range(8)), got {seeds!r}")
    if len(seeds) == 0:
        raise ValueError("seeds is empty; pass at least one seed")
    if any(isinstance(s, bool) or not isinstance(s, int) and not (hasattr(s, "__index__")) for s in seeds):
        raise ValueError(f"seeds must be integers, got {list(seeds)[:8]}")
    x_T, noise = seed_noise(seeds, shape, steps)
    x = x_T.to(device, dtype)
    if sampler not in ("ddim", "ddpm"):
        traj = scheduler_sample(denoiser, sampler, schedule, x, seeds, steps, labels, keep_trajectory, progress)
        return SampleResult(traj.samples, traj.alpha_bars, traj.x0_hats, traj.xs)
    ab, ab_prev = own_grid(schedule, steps, sampler)  # [T] each: the step's level and the level it goes to
    B = len(seeds)
    planned = announce_plan([denoiser], ab.tolist(), B, labels, progress, f"{sampler} sampling, {B} seeds")
    x0s, xs = [], [x]
    loop = range(steps)
    if progress:
        from tqdm.auto import tqdm
        loop = tqdm(loop, desc=f"{sampler} sampling", unit="step", leave=False)
    for i in loop:
        a_t, a_prev = ab[i].expand(B), ab_prev[i].expand(B)
        x0_hat = denoiser.denoise(x, a_t.to(device), labels).to(dtype)
        if sampler == "ddim":
            x = ddim_step(x, x0_hat, a_t.to(device), a_prev.to(device))
        else:
            x = ddpm_step(x, x0_hat, a_t.to(device), a_prev.to(device), noise[i].to(device, dtype))
        if keep_trajectory:
            x0s.append(x0_hat)
            xs.append(x)
    if progress:
        report_plan(planned)
    return SampleResult(x, ab.clone(), torch.stack(x0s) if keep_trajectory else None,
                        torch.stack(xs) if keep_trajectory else None)
