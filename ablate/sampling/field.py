"""The DDIM loop of the field's analytic-diffusion codebases, as their code runs it: the Analytic Diffusion
Studio's ``BaseDenoiser._sample_batch_ddim`` and GoldDiff's ``BaseDenoiser._sample_batch`` (``docs/theory.md``
section 13).

Both build diffusers' ``DDIMScheduler(beta_start=1e-4, beta_end=0.02, beta_schedule="linear")`` with its other
defaults (1,000 training timesteps, ``"leading"`` spacing, ``set_alpha_to_one``, and ``clip_sample=True``: the
``x0`` each step moves toward is clipped to [-1, 1], which ablate's own samplers never do), call
``set_timesteps(10)`` (timesteps 900, 800, ..., 0), and at each timestep ``t`` ask the model for ``x0_hat`` of
the current latents at ``alpha_bar = alphas_cumprod[t]``. The Studio hands the scheduler
``eps = (x_t - sqrt(ab) x0_hat) / sqrt(1 - ab + 1e-8)`` (``prediction_type="epsilon"``), GoldDiff ``x0_hat``
itself (``"sample"``); the step is the same up to that ``1e-8``. Both return the **last ``x0_hat``** as the
sample, not the scheduler's final latent. ``x_T`` here is ablate's per-seed noise (:func:`seed_noise`), so any
two denoisers start from the same latents (their code draws one generator's stream per batch).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ablate.sampling.sampler import Denoiser, seed_noise

BETAS = (1e-4, 0.02)  # their linear beta schedule
STEPS = 10


@dataclass(frozen=True)
class FieldTrajectory:
    """samples ``[B, C, H, W]`` (the last ``x0_hat``); per step ``i`` (``T`` steps, high noise first): timesteps
    ``[T]``, alpha_bars ``[T]`` (float64), the latents the model saw ``xs [T, B, C, H, W]`` and its outputs
    ``x0_hats [T, B, C, H, W]``."""

    samples: torch.Tensor
    timesteps: list[int]
    alpha_bars: torch.Tensor
    xs: torch.Tensor
    x0_hats: torch.Tensor


def field_scheduler(steps: int = STEPS, betas: tuple[float, float] = BETAS, clip_sample: bool = True):
    """Their ``DDIMScheduler`` with ``steps`` inference steps."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(beta_start=betas[0], beta_end=betas[1], beta_schedule="linear",
                              prediction_type="epsilon", clip_sample=clip_sample)
    scheduler.set_timesteps(steps)
    return scheduler


@torch.no_grad()
def field_ddim(denoiser: Denoiser, seeds: Sequence[int], shape: tuple[int, ...], steps: int = STEPS,
               betas: tuple[float, float] = BETAS, clip_sample: bool = True, labels: torch.Tensor | None = None,
               device: str | torch.device = "cpu", progress: str | None = None) -> FieldTrajectory:
    """Sample ``denoiser`` from ``seeds`` through their DDIM loop (the module's docstring); float32 as theirs.
    progress: a label for a progress bar over the steps (None: silent)."""
    if steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    scheduler = field_scheduler(steps, betas, clip_sample)
    ac = scheduler.alphas_cumprod.double()
    x = seed_noise(seeds, shape, 1)[0].to(device, torch.float32) * float(scheduler.init_noise_sigma)
    B = len(seeds)
    xs, x0s, abs_, ts = [], [], [], []
    loop = scheduler.timesteps
    if progress is not None:
        from tqdm.auto import tqdm
        loop = tqdm(loop, desc=progress, unit="step", leave=False)
    for t in loop:
        ab = float(ac[int(t)])
        x0_hat = denoiser.denoise(x, torch.full((B,), ab, dtype=torch.float64, device=device), labels).float()
        eps = (x - ab ** 0.5 * x0_hat) / (1.0 - ab + 1e-8) ** 0.5
        xs.append(x)
        x0s.append(x0_hat)
        abs_.append(ab)
        ts.append(int(t))
        x = scheduler.step(eps, t, x).prev_sample.float()
    return FieldTrajectory(x0s[-1], ts, torch.tensor(abs_, dtype=torch.float64), torch.stack(xs), torch.stack(x0s))
