"""diffusers' schedulers as ablate samplers, and discrete (diffusers-style) noise schedules.

A scheduler never calls the model (diffusers' own design): :func:`scheduler_sample` loops
``x_in = scale_model_input(x, t)``, asks the denoiser for ``x0_hat`` at the noise level
``alpha_bar`` of that model call, turns it into ``eps_hat = (x_in - sqrt(ab) x0_hat) / sqrt(1 - ab)``
(theory section 10) and hands ``eps_hat`` to ``scheduler.step``. The network and every machine run
through this same loop, from the same ``x_T`` and, for stochastic schedulers, with the same injected
noise (one ``torch.Generator`` per seed, seeded from the seed).

``alpha_bar`` of a model call: ``alphas_cumprod[t]`` for the VP schedulers (DDPM, DDIM, DPM-Solver++,
UniPC); ``1 / (1 + sigma^2)`` for the sigma-space ones (Euler, Heun, LMS, ...), whose
``scale_model_input`` divides by ``sqrt(1 + sigma^2)`` so the model input is the VP ``x_t``.

A schedule is either the name of a continuous schedule (``"cosine"``, ``"linear"``: ablate's own
networks, any ``alpha_bar`` in (0, 1)) or a :class:`DiscreteSchedule` (a diffusers scheduler config:
``alphas_cumprod`` over ``num_train_timesteps`` integer timesteps). For a continuous schedule the
diffusers schedulers get ``trained_betas`` that discretise it on 1000 steps,
``alpha_bar_i = alpha_bar((i + 1) / 1000)``.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np
import torch

from ablate.sampling.plans import announce_plan, report_plan
from ablate.sampling.schedules import get_schedule, time_grid

# name -> (diffusers class, extra config, sigma space?, stochastic?)
SCHEDULERS: dict[str, tuple[str, dict[str, Any], bool, bool]] = {
    "euler": ("EulerDiscreteScheduler", {}, True, False),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}, True, True),
    "heun": ("HeunDiscreteScheduler", {}, True, False),
    "lms": ("LMSDiscreteScheduler", {}, True, False),
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}, False, False),
    "dpm++_3m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 3}, False, False),
    "unipc": ("UniPCMultistepScheduler", {}, False, False),
    "diffusers_ddim": ("DDIMScheduler", {}, False, False),
    "diffusers_ddpm": ("DDPMScheduler", {}, False, True),
}
ALIASES = {"dpmsolver++": "dpm++", "dpm_solver++": "dpm++", "dpmpp": "dpm++", "dpm-solver++": "dpm++",
           "euler_a": "euler_ancestral"}
OWN = ("ddim", "ddpm")  # ablate's own steps (ablate.sampling.sampler), on the schedule's DDIM / DDPM grid
ALL_SAMPLERS = OWN + tuple(SCHEDULERS)
TRAIN_STEPS = 1000  # discretisation of a continuous schedule for diffusers' schedulers
# keys of a scheduler config that change the model's parametrisation, never taken from the caller's scheduler
_FORCED = {"prediction_type": "epsilon", "clip_sample": False, "thresholding": False}


def sampler_name(name: str) -> str:
    """The canonical sampler name; an unknown one is an error listing the choices."""
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in ALL_SAMPLERS:
        near = difflib.get_close_matches(key, ALL_SAMPLERS + tuple(ALIASES), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ValueError(f"unknown sampler {name!r}{hint}; choose one of {', '.join(ALL_SAMPLERS)} "
                         f"(aliases: {', '.join(ALIASES)})")
    return key


@dataclass(frozen=True)
class DiscreteSchedule:
    """A discrete noise schedule as a diffusers scheduler config (the JSON of ``scheduler_config.json``:
    ``num_train_timesteps``, ``beta_schedule``/``trained_betas``, ``timestep_spacing``, ...). Only the
    schedule keys are used; the prediction type belongs to the network (its adapter)."""

    config: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod: Sequence[float], **config: Any) -> "DiscreteSchedule":
        ac = np.asarray(alphas_cumprod, dtype=np.float64)
        check_alphas_cumprod(ac)
        betas = 1 - ac / np.concatenate([[1.0], ac[:-1]])
        return cls({"num_train_timesteps": len(ac), "trained_betas": betas.tolist(), **config})

    @classmethod
    def load(cls, path: str | Path) -> "DiscreteSchedule":
        try:
            config = json.loads(Path(path).read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read scheduler config {str(path)!r}: {err}") from err
        if not isinstance(config, dict) or "num_train_timesteps" not in config:
            raise ValueError(f"{path} is not a diffusers scheduler config (no 'num_train_timesteps')")
        return cls(config)

    @cached_property
    def alphas_cumprod(self) -> torch.Tensor:
        """``[N]`` float64: exactly diffusers' float32 values (its schedulers compute them in float32)."""
        from diffusers import DDPMScheduler

        try:
            ac = DDPMScheduler.from_config(dict(self.config)).alphas_cumprod
        except (ValueError, NotImplementedError, TypeError) as err:
            raise ValueError(f"scheduler config does not describe a noise schedule: {err}") from err
        ac = ac.double()
        check_alphas_cumprod(ac.numpy())
        return ac

    def describe(self) -> dict[str, Any]:
        keys = ("num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "timestep_spacing", "steps_offset")
        return {k: self.config[k] for k in keys if k in self.config}


Schedule = Union[str, DiscreteSchedule]


def check_alphas_cumprod(ac: np.ndarray) -> None:
    if ac.ndim != 1 or len(ac) < 2:
        raise ValueError(f"alphas_cumprod must be a list of at least 2 numbers, got shape {ac.shape}")
    if not np.isfinite(ac).all() or (ac <= 0).any() or (ac >= 1).any():
        raise ValueError("alphas_cumprod must be finite and in (0, 1) at every timestep")
    if (np.diff(ac) >= 0).any():
        raise ValueError("alphas_cumprod must decrease strictly with the timestep (more noise at larger t)")


def continuous_config(schedule: str, steps: int = TRAIN_STEPS) -> dict[str, Any]:
    """A diffusers config whose ``alphas_cumprod[i] = alpha_bar((i + 1) / steps)`` of a continuous schedule."""
    t = torch.arange(1, steps + 1, dtype=torch.float64) / steps
    ac = get_schedule(schedule)(t).clamp(1e-12, 1 - 1e-12).numpy()
    return DiscreteSchedule.from_alphas_cumprod(ac, timestep_spacing="linspace").config


def scheduler_config(schedule: Schedule) -> dict[str, Any]:
    base = dict(schedule.config) if isinstance(schedule, DiscreteSchedule) else continuous_config(schedule)
    return {**base, **_FORCED}


def build_scheduler(name: str, schedule: Schedule, steps: int):
    """A fresh diffusers scheduler ``name`` on ``schedule`` with ``steps`` inference steps (its state is
    per run: build one for the network and one for each machine)."""
    import diffusers

    cls_name, extra, _, _ = SCHEDULERS[sampler_name(name)]
    scheduler = getattr(diffusers, cls_name).from_config({**scheduler_config(schedule), **extra})
    scheduler.set_timesteps(steps)
    return scheduler


def own_grid(schedule: Schedule, steps: int, sampler: str = "ddim") -> tuple[torch.Tensor, torch.Tensor]:
    """``(alpha_bar, alpha_bar_prev)``, float64 ``[T]`` each: the noise level of each step of ablate's own
    DDIM/DDPM and the level it steps to.

    Continuous: ``t_i = i / T`` (theory section 6); each step goes to the next grid point and the last to
    ``alpha_bar(0)``. Discrete: diffusers' DDIM/DDPM timesteps for the config's ``timestep_spacing``
    (``alphas_cumprod[t]``), each stepping to ``t - N // T`` as diffusers does (with ``linspace`` spacing
    that is not the next timestep), and below 0 to 1 (``set_alpha_to_one``, diffusers' default) or
    ``alphas_cumprod[0]``."""
    if not isinstance(schedule, DiscreteSchedule):
        ab = get_schedule(schedule)(time_grid(steps))
        return ab[:-1], ab[1:]
    import diffusers

    cls = diffusers.DDIMScheduler if sampler == "ddim" else diffusers.DDPMScheduler
    s = cls.from_config(scheduler_config(schedule))
    n = s.config.num_train_timesteps
    if steps > n:
        raise ValueError(f"steps={steps} exceeds the schedule's {n} training timesteps")
    s.set_timesteps(steps)
    ac = schedule.alphas_cumprod
    final = 1.0 if sampler == "ddpm" or s.config.get("set_alpha_to_one", True) else float(ac[0])
    t = s.timesteps.long()
    prev = t - n // steps
    ab_prev = torch.where(prev >= 0, ac[prev.clamp(min=0)], torch.tensor(final, dtype=torch.float64))
    return ac[t], ab_prev


@dataclass(frozen=True)
class SchedulerTrajectory:
    """samples ``[B, C, H, W]``; per model call ``e`` (``E`` calls: ``steps``, or ``2 steps - 1`` for
    Heun): alpha_bars ``[E]``, and when kept the model inputs ``xs[e]`` (VP-scaled ``x_t``; ``xs[E]`` is
    the final sample, so ``xs`` is ``[E + 1, ...]``) and ``x0_hats[e]``."""

    samples: torch.Tensor
    alpha_bars: torch.Tensor
    x0_hats: torch.Tensor | None
    xs: torch.Tensor | None


def scheduler_sample(denoiser, name: str, schedule: Schedule, x_T: torch.Tensor, seeds: Sequence[int], steps: int,
                     labels: torch.Tensor | None = None, keep_trajectory: bool = False,
                     progress: bool = False) -> SchedulerTrajectory:
    """Run diffusers' scheduler ``name`` with ``denoiser`` from ``x_T`` ``[B, C, H, W]`` (unit variance;
    scaled by the scheduler's ``init_noise_sigma``). Stochastic schedulers draw their noise from one
    generator per seed (``seed + 7_919``), so two runs with the same seeds inject the same noise."""
    name = sampler_name(name)
    _, _, sigma_space, stochastic = SCHEDULERS[name]
    scheduler = build_scheduler(name, schedule, steps)
    device, dtype = x_T.device, x_T.dtype
    ac = scheduler.alphas_cumprod.double()
    generators = [torch.Generator().manual_seed(int(s) + 7_919) for s in seeds] if stochastic else None
    B = len(x_T)
    x = x_T * float(scheduler.init_noise_sigma)
    abs_, xs, x0s = [], [], []

    levels = ([1.0 / (1.0 + float(s) ** 2) for s in scheduler.sigmas[:len(scheduler.timesteps)]] if sigma_space
              else [float(ac[int(t)]) for t in scheduler.timesteps])
    planned = announce_plan([denoiser], levels, B, labels, progress, f"{name} sampling, {B} seeds")
    loop = scheduler.timesteps
    if progress:
        from tqdm.auto import tqdm
        loop = tqdm(loop, desc=f"{name} sampling", unit="call", leave=False)
    for t in loop:
        x_in = scheduler.scale_model_input(x, t)
        if sigma_space:
            sigma = float(scheduler.sigmas[scheduler.step_index])
            ab = 1.0 / (1.0 + sigma * sigma)
        else:
            ab = float(ac[int(t)])
        a = torch.full((B,), ab, dtype=torch.float64, device=device)
        x0_hat = denoiser.denoise(x_in, a, labels).to(dtype)
        eps = (x_in - ab ** 0.5 * x0_hat) / (1 - ab) ** 0.5
        kw = {"generator": generators} if stochastic else {}
        x = scheduler.step(eps, t, x, **kw).prev_sample.to(dtype)
        abs_.append(ab)
        if keep_trajectory:
            xs.append(x_in)
            x0s.append(x0_hat)
    if progress:
        report_plan(planned)
    return SchedulerTrajectory(x, torch.tensor(abs_, dtype=torch.float64),
                               torch.stack(x0s) if keep_trajectory else None,
                               torch.stack(xs + [x]) if keep_trajectory else None)
