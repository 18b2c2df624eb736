"""Pictures: grids of images (or of signals, drawn as line plots) saved as PNG (matplotlib, headless)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch

DIFF_CMAP = "magma"


def pyplot():
    """matplotlib's pyplot on the headless Agg backend (imported on first use: it takes a second)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_grid(rows: Sequence[torch.Tensor], row_titles: Sequence[str], path: str | Path,
              title: str | None = None, cell_titles: Mapping[int, Sequence[str]] | None = None,
              diff_rows: Sequence[int] = ()) -> Path:
    """One row per tensor ``[B, C, H, W]`` (columns = seeds), titled, as a PNG. Image rows are in [-1, 1]
    (grey scale); rows listed in ``diff_rows`` are absolute differences in [0, 2] drawn in a colour map
    with a colour bar. ``cell_titles[r]``: a small caption above each image of row ``r`` (e.g. seed, r²).
    Signals ``[B, C, L]`` are drawn as line plots (one line per channel) on [-1, 1] (diff rows on [0, 2])."""
    plt = pyplot()

    cols = max(len(r) for r in rows)
    cell_titles = cell_titles or {}
    extra = 0.25 * sum(1 for r in cell_titles)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.1 * cols + 1.8, 1.15 * len(rows) + 0.4 + extra),
                             squeeze=False)
    shown = None
    for r, (images, name) in enumerate(zip(rows, row_titles)):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(images):
                ax.axis("off")
                continue
            img = images[c].detach().cpu().float()
            if img.dim() == 2:  # a signal [C, L]
                for channel in img:
                    ax.plot(channel.numpy(), lw=0.8, color="tab:red" if r in diff_rows else None)
                ax.set_ylim((0, 2) if r in diff_rows else (-1.05, 1.05))
            elif r in diff_rows:
                shown = ax.imshow(img.mean(0).numpy(), cmap=DIFF_CMAP, vmin=0, vmax=2)
            else:
                img = ((img.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
                ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            if r in cell_titles and c < len(cell_titles[r]):
                ax.set_title(cell_titles[r][c], fontsize=6, pad=2)
        axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if shown is not None:  # a colour scale in a margin of its own, right of the grid
        fig.subplots_adjust(right=1 - 0.7 / fig.get_figwidth())
        bar = fig.colorbar(shown, cax=fig.add_axes((1 - 0.45 / fig.get_figwidth(), 0.15, 0.12 / fig.get_figwidth(), 0.7)))
        bar.set_label("|difference|", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_overlays(series: Mapping[str, torch.Tensor], path: str | Path, title: str | None = None,
                  cell_titles: Sequence[str] | None = None, diff: tuple[str, torch.Tensor] | None = None,
                  columns: int = 8) -> Path:
    """Signals ``[B, C, L]`` from several sources overlaid, one cell per seed (one colour per source, the first
    drawn thickest, a legend in the first cell), ``columns`` cells per row; ``diff = (label, [B, C, L])`` adds
    a row of that difference (on [0, 2]) under each row of cells."""
    plt = pyplot()

    names = list(series)
    B = len(series[names[0]])
    cols = min(columns, B)
    blocks = -(-B // cols)
    per_block = 2 if diff is not None else 1
    fig, axes = plt.subplots(blocks * per_block, cols, figsize=(1.9 * cols + 1.2, 1.5 * blocks * per_block + 0.6),
                             squeeze=False)
    for i in range(blocks * cols):
        block, c = divmod(i, cols)
        ax = axes[block * per_block][c]
        below = axes[block * per_block + 1][c] if diff is not None else None
        for a in (ax, below):
            if a is not None:
                a.set_xticks([])
                a.tick_params(labelsize=6)
        if i >= B:
            ax.axis("off")
            if below is not None:
                below.axis("off")
            continue
        for n, name in enumerate(names):
            for ch, line in enumerate(series[name][i].detach().cpu().float()):
                ax.plot(line.numpy(), lw=1.6 if n == 0 else 0.9, alpha=1.0 if n == 0 else 0.85, color=f"C{n}",
                        label=name if ch == 0 else None)
        ax.set_ylim(-1.05, 1.05)
        if cell_titles is not None:
            ax.set_title(cell_titles[i], fontsize=6, pad=2)
        if i == 0:
            ax.legend(fontsize=6, loc="upper right", frameon=False)
        if below is not None:
            for line in diff[1][i].detach().cpu().float():
                below.plot(line.numpy(), lw=0.8, color="tab:red")
            below.set_ylim(0, 2)
            if c == 0:
                below.set_ylabel(diff[0], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
