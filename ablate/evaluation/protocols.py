"""The field's evaluation protocols as options of ``evaluate.py`` (``protocols=[studio,golddiff]``; theory
section 13): each network-machine pair scored the way the Analytic Diffusion Studio's and GoldDiff's code
score an analytic model against a trained network, so that ablate's rows can be pasted into their tables.

* **studio**: 10-step DDIM on linear betas 1e-4 to 0.02 (:func:`~ablate.sampling.field.field_ddim`), then per
  step, with the network's ``x0_hat`` as the reference of their R^2 (:func:`~ablate.metrics.field.field_r2`)
  and their MSE, both directions of the Studio's ``evaluate_comparison``: **trajectory** (``r2_score_vs_unet``:
  each model on its own trajectory) and **single** (``r2_score_vs_unet_single``: the network run on the
  machine's ``x_t``). Their headline is the last step's trajectory figure (``r2_score_vs_unet_final``).
* **golddiff**: 128 samples of 10 DDIM steps drawn in batches of 64; per model the wall time per step (sampling
  time over batches x steps, as their ``main_sampling_time_per_step_est``) and the peak memory while sampling;
  against the network, on images mapped to [0, 1], the final samples' MSE, L1 and R^2 (their ``mse_score``,
  ``l1_score``, ``r2_score``) and R^2 per step (``r2_list``).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` during the sampling; on the CPU the peak resident set
size above its level before (read from ``/proc/self/statm`` every 2 ms, with glibc told to return freed large
buffers to the system so that reused memory shows): what the sampling added, not the process's total. Each
model starts cold (its caches released), so its peak includes building them, as a run of it alone would.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from ablate.metrics.field import field_l1, field_mse, field_r2, to_unit
from ablate.sampling import Denoiser, release
from ablate.sampling.field import STEPS, field_ddim

PROTOCOLS = ("studio", "golddiff")
GOLDDIFF_SAMPLES, GOLDDIFF_BATCH = 128, 64


def _release_freed_memory() -> None:
    """On glibc, make large allocations go back to the system when freed (a fixed mmap threshold: glibc's dynamic
    one would keep a freed buffer resident, and the next call's use of it would not show as resident growth) and
    return what is free now. Elsewhere: nothing."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD: fixed, so it no longer adapts upward
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096
    except OSError:  # not Linux: the process's peak so far (a bound, not the call's own)
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def peak_memory(fn: Callable[[], Any], device: str | torch.device = "cpu") -> tuple[Any, float]:
    """``fn()``'s result and the peak memory it used, in MiB (module docstring)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        out = fn()
        torch.cuda.synchronize(device)
        return out, (torch.cuda.max_memory_allocated(device) - base) / 2**20
    _release_freed_memory()
    base = _rss_bytes()
    peak = [base]
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            done.wait(0.002)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        out = fn()
    finally:
        done.set()
        thread.join()
    peak[0] = max(peak[0], _rss_bytes())
    return out, max(peak[0] - base, 0) / 2**20


def studio(network: Denoiser, machines: Mapping[str, Denoiser], seeds: Sequence[int], shape: tuple[int, ...],
           labels: torch.Tensor | None = None, device: str | torch.device = "cpu",
           progress: bool = False) -> dict[str, Any]:
    """The Studio's per-step comparison of every machine with the network (module docstring). progress: a bar
    per model over its steps."""
    kw = dict(labels=labels, device=device)
    bar = (lambda name: f"studio protocol: {name}") if progress else (lambda name: None)
    net = field_ddim(network, seeds, shape, STEPS, progress=bar("network"), **kw)
    out: dict[str, Any] = {"protocol": "studio", "steps": STEPS, "betas": [1e-4, 0.02], "samples": len(seeds),
                           "timesteps": net.timesteps, "reference": "network", "machines": {}}
    for name, machine in machines.items():
        own = field_ddim(machine, seeds, shape, STEPS, progress=bar(name), **kw)
        rows = {"r2_score_vs_unet": [], "mse_score_vs_unet": [], "r2_score_vs_unet_single": [],
                "mse_score_vs_unet_single": []}
        for i in range(len(net.timesteps)):
            rows["r2_score_vs_unet"].append(field_r2(own.x0_hats[i], net.x0_hats[i]))
            rows["mse_score_vs_unet"].append(field_mse(own.x0_hats[i], net.x0_hats[i]))
            a = torch.full((len(seeds),), float(own.alpha_bars[i]), dtype=torch.float64, device=device)
            single = network.denoise(own.xs[i], a, labels).float()  # the network on the machine's x_t
            rows["r2_score_vs_unet_single"].append(field_r2(own.x0_hats[i], single))
            rows["mse_score_vs_unet_single"].append(field_mse(own.x0_hats[i], single))
        out["machines"][name] = {**{f"{k}_final": v[-1] for k, v in rows.items()}, "per_step": rows}
        release(machine)  # one machine's cache at a time
    return out


def golddiff(network: Denoiser, machines: Mapping[str, Denoiser], shape: tuple[int, ...], seed_offset: int = 0,
             samples: int = GOLDDIFF_SAMPLES, batch: int = GOLDDIFF_BATCH, labels: torch.Tensor | None = None,
             device: str | torch.device = "cpu", progress: bool = False) -> dict[str, Any]:
    """GoldDiff's table for every machine and the network itself (module docstring). ``labels``: one per sample.
    progress: a bar per model and batch over its steps."""
    seeds = list(range(seed_offset, seed_offset + samples))
    batches = [seeds[i:i + batch] for i in range(0, samples, batch)]

    def run(model: Denoiser, name: str):
        def draw():
            trajectories = []
            for j, b in enumerate(batches):
                lab = None if labels is None else labels[j * batch:j * batch + len(b)]
                bar = f"golddiff protocol: {name}, batch {j + 1}/{len(batches)}" if progress else None
                trajectories.append(field_ddim(model, b, shape, STEPS, labels=lab, device=device, progress=bar))
            return trajectories
        release(model)  # a cold start: the peak includes building its caches, as a run of it alone would
        start = time.perf_counter()
        trajectories, mib = peak_memory(draw, device)
        seconds = time.perf_counter() - start
        return (torch.cat([t.samples.cpu() for t in trajectories]), torch.cat([t.x0_hats.cpu() for t in trajectories], 1),
                {"time_per_step_s": seconds / (len(batches) * STEPS), "sampling_s": seconds, "peak_memory_mib": mib})

    net_final, net_steps, net_cost = run(network, "network")
    out: dict[str, Any] = {"protocol": "golddiff", "steps": STEPS, "samples": samples, "batch": batch,
                           "seed_offset": seed_offset, "device": str(device), "network": net_cost, "machines": {}}
    for name, machine in machines.items():
        final, steps, cost = run(machine, name)
        release(machine)
        out["machines"][name] = {
            **cost, "mse_score": field_mse(to_unit(final), to_unit(net_final)),
            "l1_score": field_l1(to_unit(final), to_unit(net_final)),
            "r2_score": field_r2(to_unit(final), to_unit(net_final)),
            "r2_list": [field_r2(to_unit(steps[i]), to_unit(net_steps[i])) for i in range(len(steps))]}
    return out


def tables(results: Mapping[str, dict[str, Any]], network: str) -> str:
    """Markdown rows in each protocol's own terms, to paste beside their published tables."""
    lines = []
    if "studio" in results:
        s = results["studio"]
        lines += [f"## Analytic Diffusion Studio protocol ({s['samples']} samples, {s['steps']}-step DDIM, linear "
                  "betas 1e-4 to 0.02; R^2 and MSE as its calculate_r2_score / calculate_mse, the network the "
                  "reference)", "",
                  "| network | machine | R^2 final (trajectory) | MSE final | R^2 final (single: network on the "
                  "machine's x_t) | R^2 per step (trajectory, high noise first) |", "|---|---|---|---|---|---|"]
        for m, v in s["machines"].items():
            lines.append(f"| {network} | {m} | {v['r2_score_vs_unet_final']:.4f} | {v['mse_score_vs_unet_final']:.5f} | "
                         f"{v['r2_score_vs_unet_single_final']:.4f} | "
                         + " ".join(f"{x:.3f}" for x in v["per_step"]["r2_score_vs_unet"]) + " |")
        lines.append("")
    if "golddiff" in results:
        g = results["golddiff"]
        lines += [f"## GoldDiff protocol ({g['samples']} samples, batch {g['batch']}, {g['steps']}-step DDIM; images "
                  f"in [0, 1]; time and peak memory per model on {g['device']})", "",
                  "| network | machine | MSE | r^2 | L1 | time per step (s) | peak memory (MiB) |",
                  "|---|---|---|---|---|---|---|"]
        for m, v in g["machines"].items():
            lines.append(f"| {network} | {m} | {v['mse_score']:.5f} | {v['r2_score']:.4f} | {v['l1_score']:.4f} | "
                         f"{v['time_per_step_s']:.3f} | {v['peak_memory_mib']:.0f} |")
        n = g["network"]
        lines += [f"| {network} | (the network itself) | 0 | 1 | 0 | {n['time_per_step_s']:.3f} | "
                  f"{n['peak_memory_mib']:.0f} |", ""]
    return "\n".join(lines)


def run_protocols(names: Sequence[str], network: Denoiser, machines: Mapping[str, Denoiser], seeds: Sequence[int],
                  shape: tuple[int, ...], out: Path, network_name: str, num_classes: int | None = None,
                  device: str | torch.device = "cpu", progress: bool = False) -> dict[str, Any]:
    """Run the asked protocols; write ``protocols.json``'s content (returned) and ``protocols.md`` into ``out``.
    progress: a bar per model (and batch) over its steps."""
    results: dict[str, Any] = {}
    for name in names:
        if name == "studio":
            labels = torch.tensor(list(seeds)) % num_classes if num_classes else None
            results[name] = studio(network, machines, seeds, shape, labels, device, progress)
        elif name == "golddiff":
            labels = torch.arange(GOLDDIFF_SAMPLES) % num_classes if num_classes else None
            results[name] = golddiff(network, machines, shape, seeds[0], labels=labels, device=device,
                                     progress=progress)
        else:
            raise ValueError(f"protocol {name!r}; allowed: {', '.join(PROTOCOLS)}")
    (Path(out) / "protocols.md").write_text(tables(results, network_name))
    return results
