"""Agreement between a network and score machines run through the same sampler from the same seeds.

For each sampler, the network and every machine draw the same seeds (DDPM
replays the same per-step noise); per seed the final images are compared
(:func:`ablate.metrics.pairwise_agreement`), and medians get bootstrap 95%
intervals. Per step, each machine also denoises the *network's* state, so the
agreement of the denoiser outputs shows which noise levels the theory gets right.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from scipy.stats import bootstrap

from ablate.metrics import ELSAgreement, pairwise_agreement
from ablate.sampling import Denoiser, SampleResult, Schedule, release, sample


def median_ci(values: torch.Tensor, seed: int = 0) -> tuple[float, float]:
    """Bootstrap 95% interval of the median (percentile method; a point when all values are equal)."""
    v = values.double().numpy()
    if len(v) < 2 or np.ptp(v) == 0:
        return float(np.median(v)), float(np.median(v))
    res = bootstrap((v,), np.median, confidence_level=0.95, n_resamples=2000, method="percentile",
                    random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


PER_STEP_MORE = ("R2", "mse", "r2_machine_trajectory", "R2_machine_trajectory", "mse_machine_trajectory")


@dataclass(frozen=True)
class SamplerAgreement:
    """One sampler's outcome. samples: name -> ``[M, C, H, W]`` (``"network"`` included);
    metrics: machine -> its :class:`ELSAgreement` against the network (per seed: :attr:`per_seed`);
    per_step: machine -> median r2 of the denoiser outputs on the network's trajectory (both run on the
    network's ``x_t``, the network as the reference), one per denoiser call ``[E]`` (``E = T`` but for Heun);
    alpha_bars ``[E]``. per_step_more: machine -> ``R2`` and ``mse`` in that direction, and ``*_machine_trajectory``
    (``r2``, ``R2``, ``mse``): the other direction, both run on the *machine's* ``x_t`` with the machine as the
    reference (the Analytic Diffusion Studio's)."""

    sampler: str
    samples: dict[str, torch.Tensor]
    metrics: dict[str, ELSAgreement]
    per_step: dict[str, list[float]]
    alpha_bars: list[float]
    per_step_more: dict[str, dict[str, list[float]]] = None  # machine -> {"R2", "mse"} -> per call

    @property
    def per_seed(self) -> dict[str, dict[str, torch.Tensor]]:
        """machine -> {"r", "r2", "R2", "mse"} -> ``[M]``."""
        return {name: metric.per_sample() for name, metric in self.metrics.items()}

    def summary(self, baseline: str | None = "ideal") -> dict[str, dict]:
        out: dict[str, dict] = {}
        per_seed = self.per_seed
        for name, stats in per_seed.items():
            entry = {key: float(v) for key, v in self.metrics[name].compute().items()}
            for key in ("r", "r2", "R2", "mse"):
                low, high = median_ci(stats[key])
                entry[f"median_{key}_ci95"] = [low, high]
            entry["per_seed"] = {key: v.tolist() for key, v in stats.items()}
            entry["per_step_median_r2"] = self.per_step[name]
            for key, values in (self.per_step_more or {}).get(name, {}).items():
                entry[f"per_step_median_{key}"] = values
            if baseline in per_seed and name != baseline:
                entry[f"fraction_beating_{baseline}"] = float(
                    (stats["r2"] > per_seed[baseline]["r2"]).double().mean())
            out[name] = entry
        return out


def run_agreement(network: Denoiser, machines: Mapping[str, Denoiser], seeds: Sequence[int],
                  shape: tuple[int, int, int], sampler: str = "ddim", steps: int = 20,
                  noise_schedule: Schedule = "cosine", labels: torch.Tensor | None = None,
                  per_step: bool = True, progress: bool = False,
                  device: str | torch.device = "cpu") -> SamplerAgreement:
    """Sample the network and every machine from ``seeds`` on ``device`` with ``sampler`` (ablate's ``ddim``/
    ``ddpm`` or a diffusers scheduler: the same one, the same ``x_T`` and injected noise for all); compare pair
    by pair and, at every denoiser call of the network's trajectory, call by call. Samples come back on the CPU."""
    kw = dict(steps=steps, sampler=sampler, schedule=noise_schedule, labels=labels, device=device)
    net: SampleResult = sample(network, seeds, shape, keep_trajectory=per_step, progress=progress, **kw)
    samples = {"network": net.samples.cpu()}
    metrics, steps_r2, steps_more = {}, {}, {}
    for name, machine in machines.items():
        if progress:
            print(f"  {sampler}: sampling {name} ({len(seeds)} seeds)", flush=True)
        own: SampleResult = sample(machine, seeds, shape, keep_trajectory=per_step, progress=progress, **kw)
        samples[name] = own.samples.cpu()
        metrics[name] = ELSAgreement()
        metrics[name].update(samples[name], samples["network"])
        steps_r2[name], steps_more[name] = [], {key: [] for key in PER_STEP_MORE}
        if per_step:
            for i in range(len(net.alpha_bars)):
                x, ab = net.xs[i], float(net.alpha_bars[i])
                fig = pairwise_agreement(machine.denoise(x, ab, labels).cpu(), net.x0_hats[i].cpu())
                steps_r2[name].append(float(fig["r2"].median()))
                for key in ("R2", "mse"):
                    steps_more[name][key].append(float(fig[key].median()))
                # the other direction (the Analytic Diffusion Studio's): the network run on the machine's x_t,
                # its x0_hat scored against the machine's, the machine as the reference
                x, ab = own.xs[i], float(own.alpha_bars[i])
                fig = pairwise_agreement(network.denoise(x, ab, labels).cpu(), own.x0_hats[i].cpu())
                for key in ("r2", "R2", "mse"):
                    steps_more[name][f"{key}_machine_trajectory"].append(float(fig[key].median()))
        release(machine)  # the machines run one after another: hold one machine's key cache at a time
    return SamplerAgreement(sampler, samples, metrics, steps_r2, [float(a) for a in net.alpha_bars], steps_more)
