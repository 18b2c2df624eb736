"""Pictures: image grids saved as PNG (matplotlib, headless)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch


def save_grid(rows: Sequence[torch.Tensor], row_titles: Sequence[str], path: str | Path,
              title: str | None = None) -> Path:
    """One row per tensor ``[B, C, H, W]`` in [-1, 1] (columns = seeds), titled, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.1 * cols + 1.2, 1.15 * len(rows) + 0.4), squeeze=False)
    for r, (images, name) in enumerate(zip(rows, row_titles)):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                img = ((images[c].detach().cpu().float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
                ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            else:
                ax.axis("off")
        axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
