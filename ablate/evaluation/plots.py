"""Pictures of an evaluation: samples side by side, the per-seed scatter, per-step agreement and the
calibrated patch size against the noise level (matplotlib, headless)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import torch

from ablate.viz import pyplot, save_grid, save_overlays


def comparison_grid(samples: Mapping[str, torch.Tensor], path: Path, machine: str = "els",
                    baseline: str = "ideal", columns: int = 16, title: str | None = None,
                    seeds: Sequence[int] | None = None, r2: Sequence[float] | None = None) -> Path:
    """Every seed, ``columns`` per block of rows: the network's sample, the machine's, the baseline's, and
    ``|network - machine|`` in a colour map with its scale. Above each network sample: its seed and the
    machine's r² for it. Signals ``[B, C, L]``: the three overlaid in one cell per seed, with the difference
    row under them."""
    net = samples["network"]
    if net.dim() == 3:
        names = {"network": "network", machine: machine.upper(), baseline: "IS" if baseline == "ideal" else baseline}
        series = {label: samples[name] for name, label in names.items() if name in samples}
        labels = [f"seed {s}" for s in (seeds or range(len(net)))]
        if r2 is not None:
            labels = [f"{lab}, {machine.upper()} r² {v:.2f}" for lab, v in zip(labels, r2)]
        diff = (f"|net - {machine.upper()}|", (samples[machine] - net).abs()) if machine in samples else None
        return save_overlays(series, path, title=title, cell_titles=labels, diff=diff)
    rows, titles, cells, diffs = [], [], {}, []
    for start in range(0, len(net), columns):
        block = slice(start, start + columns)
        labels = [f"seed {s}" for s in (seeds or range(len(net)))[block]]
        if r2 is not None:
            labels = [f"{lab}\n{machine.upper()} r² {v:.2f}" for lab, v in zip(labels, list(r2)[block])]
        cells[len(rows)] = labels
        rows.append(net[block])
        titles.append("network")
        for name in (machine, baseline):
            if name in samples:
                rows.append(samples[name][block])
                titles.append(name.upper() if name != "ideal" else "IS")
        if machine in samples:
            diffs.append(len(rows))
            rows.append((samples[machine][block] - net[block]).abs())
            titles.append(f"|net - {machine.upper()}|")
    return save_grid(rows, titles, path, title=title, cell_titles=cells, diff_rows=diffs)


def r2_scatter(x: torch.Tensor, y: torch.Tensor, path: Path, xlabel: str = "IS r²", ylabel: str = "ELS r²",
               title: str | None = None) -> Path:
    """One point per seed, with the diagonal: points above it are seeds the machine predicts better."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
    ax.scatter(x.numpy(), y.numpy(), s=18, alpha=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel=xlabel, ylabel=ylabel)
    ax.set_title(title or f"per seed: median {ylabel} {y.median():.2f}, {xlabel} {x.median():.2f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def per_step_plot(alpha_bars: Sequence[float], per_step: Mapping[str, Sequence[float]],
                  calibrated_k: Mapping[str, tuple[Sequence[float], Sequence[int]]], path: Path,
                  title: str | None = None) -> Path:
    """Left: median r² of each machine's denoiser output against the network's, on the network's own
    trajectory, by noise level. Right: the calibrated k of each calibrated machine by noise level
    (``calibrated_k``: machine -> (its calibration's alpha_bars, ks))."""
    plt = pyplot()
    logsnr = [math.log(a / (1 - a)) for a in alpha_bars]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    for name, values in per_step.items():
        if values:
            left.plot(logsnr, values, marker="o", ms=3, label=name.upper() if name != "ideal" else "IS")
    left.set(xlabel="log SNR (noise falls to the right)", ylabel="median r² of x0_hat", ylim=(0, 1.02))
    handles = left.get_legend_handles_labels()[0]
    if len(handles) > 4:  # the league: a legend under the panel, not over its lines
        left.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    elif handles:
        left.legend(fontsize=8)
    left.set_title("denoiser agreement per step", fontsize=9)
    for name, (abs_, ks) in calibrated_k.items():
        right.step([math.log(a / (1 - a)) for a in abs_], ks, where="mid", marker="o", ms=3, label=name.upper())
    right.set(xlabel="log SNR (noise falls to the right)", ylabel="calibrated patch size k")
    if right.get_legend_handles_labels()[0]:
        right.legend(fontsize=8)
    right.set_title("calibrated locality scale", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # keeps a legend under the panel
    plt.close(fig)
    return path
