"""Samplers and noise schedules, shared by the oracle and trained backbones (no model, no Lightning)."""
from ablate.sampling.sampler import (SAMPLERS, Denoiser, SampleResult, ddim_step, ddpm_step, eps_from_x0, per_item,
                                     release, sample, seed_noise)
from ablate.sampling.schedulers import (SCHEDULERS, DiscreteSchedule, Schedule, build_scheduler, own_grid,
                                        sampler_name, scheduler_sample)
from ablate.sampling.schedules import NOISE_SCHEDULES, cosine, get_schedule, inverse_schedule, linear, time_grid
from ablate.sampling.unmasking import MASK_SCHEDULES, TokenSamples, inverse_cdf, mask_schedule, seed_uniforms, unmask

__all__ = ["Denoiser", "SampleResult", "sample", "ddim_step", "ddpm_step", "eps_from_x0", "per_item", "seed_noise",
           "release",
           "SAMPLERS", "SCHEDULERS", "DiscreteSchedule", "Schedule", "build_scheduler", "own_grid", "sampler_name",
           "scheduler_sample", "NOISE_SCHEDULES", "cosine", "linear", "get_schedule", "inverse_schedule", "time_grid",
           "MASK_SCHEDULES", "TokenSamples", "inverse_cdf", "mask_schedule", "seed_uniforms", "unmask"]
