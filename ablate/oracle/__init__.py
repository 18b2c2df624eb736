"""The score-machine oracle (``docs/theory.md``): every theory of the registry behind one denoiser interface.

>>> oracle = build_oracle(OracleConfig(machine="els", patch_size=7, boundary="zeros"), train_images)
>>> x0_hat = oracle.denoise(x_t, alpha_bar)   # [B, C, H, W]
"""
from __future__ import annotations

import torch

from ablate.oracle.config import BOUNDARIES, OracleConfig, PatchSchedule, cosine_alpha_bar, nearest_odd
from ablate.oracle.machines import Oracle
from ablate.oracle.registry import Theory, all_theories, machine_names, register_theory, theory

MACHINES = tuple(n for n, t in all_theories().items() if t.league)  # evaluate.py's league, in order

__all__ = ["OracleConfig", "PatchSchedule", "Oracle", "build_oracle", "MACHINES", "BOUNDARIES",
           "cosine_alpha_bar", "nearest_odd", "Theory", "register_theory", "all_theories", "theory", "machine_names"]


def build_oracle(config: OracleConfig, train_images: torch.Tensor, labels: torch.Tensor | None = None,
                 device: str | torch.device | None = None) -> Oracle:
    """A score machine over ``train_images`` (float ``[N, C, H, W]`` in [-1, 1]).

    ``labels`` (int ``[N]``) enables conditional denoising; ``device`` defaults
    to the training images' device (pass ``"cuda"`` to use a GPU).
    """
    if not isinstance(config, OracleConfig):
        raise ValueError(f"config must be an OracleConfig, got {type(config).__name__}")
    return Oracle(config, train_images, labels, device)
