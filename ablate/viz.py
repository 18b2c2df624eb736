"""Pictures: image grids saved as PNG (matplotlib, headless)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch

DIFF_CMAP = "magma"


def save_grid(rows: Sequence[torch.Tensor], row_titles: Sequence[str], path: str | Path,
              title: str | None = None, cell_titles: Mapping[int, Sequence[str]] | None = None,
              diff_rows: Sequence[int] = ()) -> Path:
    """One row per tensor ``[B, C, H, W]`` (columns = seeds), titled, as a PNG. Image rows are in [-1, 1]
    (grey scale); rows listed in ``diff_rows`` are absolute differences in [0, 2] drawn in a colour map
    with a colour bar. ``cell_titles[r]``: a small caption above each image of row ``r`` (e.g. seed, r²)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
            if r in diff_rows:
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
