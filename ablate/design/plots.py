"""The design report's pictures: predicted against trained per metric (with the diagonal), the data-size axis,
which noise levels the calibrated ELS explains per architecture, and the samples before and after training."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from ablate.design.compare import Comparison
from ablate.viz import pyplot

RATES = ("coherence", "artefact_rate", "memorisation_rate")  # fractions of samples


def save(plt, fig, path: Path, dpi: int = 100) -> Path:
    """Lay out, write ``path`` (its folder made) and close the figure."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def binomial_se(p: float, n: Any) -> float:
    return math.sqrt(max(p * (1 - p), 0.0) / n) if isinstance(n, (int, float)) and n > 0 and not math.isnan(p) else 0.0


def scatter_plot(c: Comparison, path: Path) -> Path:
    """One panel per metric: predicted (x) against trained (y), each architecture labelled; rates carry
    +-1 binomial standard error bars (from the number of samples each side scored)."""
    plt = pyplot()
    metrics = list(c.correlations)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.0 * len(metrics), 3.9), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        xs = [r.get(f"predicted_{m}", float("nan")) for r in c.rows]
        ys = [r.get(m, float("nan")) for r in c.rows]
        ax.scatter(xs, ys, s=28, c=["tab:red" if r.get("boundary") == "circular" else "tab:blue" for r in c.rows],
                   zorder=3)
        fit = [i for i, r in enumerate(c.rows) if r.get("role") == "fit"]
        if fit:  # the fit set's rows, predicted in-sample: hollow rings around them
            ax.scatter([xs[i] for i in fit], [ys[i] for i in fit], s=110, facecolors="none", edgecolors="0.3",
                       zorder=4, label="fit set (in-sample)")
            ax.legend(fontsize=7, loc="best")
        if m in RATES:  # a rate from n samples: +-1 binomial standard error on each axis
            for x, y, r in zip(xs, ys, c.rows):
                ax.errorbar(x, y, xerr=binomial_se(x, r.get("prediction_seeds")),
                            yerr=binomial_se(y, r.get("measure_seeds", r.get("prediction_seeds"))),
                            fmt="none", ecolor="0.6", lw=0.8, zorder=2)
        for x, y, r in zip(xs, ys, c.rows):
            ax.annotate(r.get("label", r["arch"]), (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        finite = [v for v in xs + ys if isinstance(v, (int, float)) and not math.isnan(v)]
        if finite:  # the diagonal: a prediction right in level, not only in rank
            lo, hi = min(finite), max(finite)
            pad = 0.05 * (hi - lo or 1.0)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], ":", color="0.5", lw=0.8, zorder=1)
        rho = c.correlations[m].rho
        which = "held-out " if c.headline == "held-out" else ""
        undefined = "fewer than 3 architectures" if c.correlations[m].n < 3 else "constant"
        ax.set_title(f"{m}: {which}Spearman ρ = {rho:.2f}" if not math.isnan(rho) else
                     f"{m}: ρ undefined ({undefined})",
                     fontsize=9)
        ax.set(xlabel="predicted by the oracle (no training)", ylabel="measured on the trained network")
    fig.suptitle(f"{c.study}: predicted vs measured across {len(c.rows)} architectures "
                 "(red: circular padding; rings: the fit set; bars: ±1 binomial standard error; dotted: y = x)",
                 fontsize=10)
    return save(plt, fig, path)


def axis_plot(c: Comparison, path: Path) -> Path | None:
    """The data-size axis: per metric, each axis architecture's predicted (dashed) and trained (solid) figure
    against the training-set size n (log scale); rates with +-1 binomial standard error bars."""
    if not c.axis:
        return None
    plt = pyplot()
    metrics = ["novelty", "memorisation_rate", "coherence", "artefact_rate"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.4), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, m in zip(axes[0], metrics):
        for i, arch in enumerate(c.axis):
            rows = sorted((r for r in c.rows if r["arch"] == arch and isinstance(r.get("n"), int)), key=lambda r: r["n"])
            ns = [r["n"] for r in rows]
            for key, style, label in ((f"predicted_{m}", "--", "oracle"), (m, "-", "trained")):
                ys = [r.get(key, float("nan")) for r in rows]
                seeds = "prediction_seeds" if key.startswith("predicted_") else "measure_seeds"
                err = [binomial_se(y, r.get(seeds)) for y, r in zip(ys, rows)] if m in RATES else None
                ax.errorbar(ns, ys, yerr=err, fmt=style + "o", ms=3, color=cmap(i), lw=1.2, capsize=2,
                            label=f"{arch}, {label}")
        ax.set_xscale("log")
        sizes = sorted({r["n"] for r in c.rows if r["arch"] in c.axis and isinstance(r.get("n"), int)})
        ax.minorticks_off()
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.set(xlabel="training-set size n", title=m.replace("_", " "))
        ax.title.set_fontsize(9)
    axes[0][0].legend(fontsize=6)
    fig.suptitle(f"{c.study}: the data-size axis, predicted before training (dashed) and trained (solid)",
                 fontsize=10)
    return save(plt, fig, path)


def floats(row: dict[str, Any], key: str) -> list[float]:
    """A row's space-separated figures (per step, per candidate); [] when absent or unreadable."""
    try:
        return [float(v) for v in str(row.get(key) or "").split()]
    except ValueError:
        return []


def per_step_plot(c: Comparison, path: Path) -> Path | None:
    """Which noise levels the calibrated ELS explains, per architecture: the median per-step r² of its x0_hat
    against the network's on the network's own trajectory (high noise first), ES and IS dotted beside the
    architectures whose ELS r is below 0.8 (what the network does instead, if either explains it better)."""
    rows = [r for r in c.rows if r.get("els_r2_by_step")]
    if not rows:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    cmap = plt.get_cmap("tab20")
    for i, r in enumerate(rows):
        values = floats(r, "els_r2_by_step")
        low = isinstance(r.get("els_r"), float) and r["els_r"] < 0.8
        ax.plot(range(1, len(values) + 1), values, color=cmap(i % 20), lw=2.2 if low else 1.0,
                label=f"{r['arch']} (ELS r {r.get('els_r', float('nan')):.2f})")
        for key, style in (("es_r2_by_step", ":"), ("is_r2_by_step", "--")):
            if low and r.get(key):
                other = floats(r, key)
                ax.plot(range(1, len(other) + 1), other, style, color=cmap(i % 20), lw=1.0)
    ax.set(xlabel="sampler step (1 = highest noise)", ylabel="median per-step r² of x0_hat",
           title=f"{c.study}: where the calibrated ELS explains each network (thick: ELS r < 0.8; dotted ES, "
                 "dashed IS)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=6, ncol=2, loc="lower left")
    return save(plt, fig, path)


def samples_plot(c: Comparison, root: Path, path: Path, seeds: int = 10) -> Path | None:
    """Two rows per architecture (oracle, trained) of the first ``seeds`` seeds (each row's ``samples_path``,
    relative to ``root``)."""
    plt = pyplot()
    pairs = []
    for r in c.rows:
        f = root / r["samples_path"] if r.get("samples_path") else None
        if f is not None and f.is_file():
            pairs.append((r.get("label", r["arch"]), torch.load(f, weights_only=True)))
    if not pairs:
        return None
    n = min(seeds, len(pairs[0][1]["trained"]))
    fig, axes = plt.subplots(2 * len(pairs), n, figsize=(0.9 * n + 1.8, 0.95 * 2 * len(pairs) + 0.5), squeeze=False)
    for i, (arch, s) in enumerate(pairs):
        for j, (kind, images) in enumerate((("oracle", s["predicted"]), ("trained", s["trained"]))):
            for col in range(n):
                ax = axes[2 * i + j][col]
                if images.dim() == 3:  # signals [S, C, L]: a line plot
                    ax.plot(images[col, 0].float().numpy(), lw=0.8)
                    ax.set_ylim(-1.05, 1.05)
                else:
                    ax.imshow(((images[col, 0].float().clamp(-1, 1) + 1) / 2).numpy(), cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
            axes[2 * i + j][0].set_ylabel(f"{arch}\n{kind}", rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(f"{c.study}: oracle prediction (before training) above the trained network, same seeds",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
