"""The score-machine oracle (``docs/theory.md``): every theory of the registry behind one denoiser interface.

>>> oracle = build_oracle(OracleConfig(machine="els", patch_size=7, boundary="zeros"), train_images)
>>> x0_hat = oracle.denoise(x_t, alpha_bar)   # [B, C, H, W]
"""
from __future__ import annotations

import torch

from ablate.oracle.config import BOUNDARIES, OracleConfig, PatchSchedule, cosine_alpha_bar, nearest_odd
from ablate.oracle.machines import Oracle
from ablate.oracle.tokens import TokenOracle
from ablate.oracle.registry import Theory, all_theories, machine_names, register_theory, theory

MACHINES = tuple(n for n, t in all_theories().items() if t.league)  # evaluate.py's league, in order

__all__ = ["OracleConfig", "PatchSchedule", "Oracle", "TokenOracle", "build_oracle", "MACHINES", "BOUNDARIES",
           "cosine_alpha_bar", "nearest_odd", "Theory", "register_theory", "all_theories", "theory", "machine_names"]


def build_oracle(config: OracleConfig, train_images: torch.Tensor, labels: torch.Tensor | None = None,
                 device: str | torch.device | None = None) -> Oracle | TokenOracle:
    """A score machine over ``train_images`` (float ``[N, C, H, W]`` in [-1, 1], or ``[N, C, L]`` signals), or,
    with ``config.vocab_size`` set, a token machine over int64 sequences ``[N, L]`` (theory section 12).

    ``labels`` (int ``[N]``) enables conditional denoising; ``device`` defaults
    to the training images' device (pass ``"cuda"`` to use a GPU).
    """
    if not isinstance(config, OracleConfig):
        raise ValueError(f"config must be an OracleConfig, got {type(config).__name__}")
    is_float = isinstance(train_images, torch.Tensor) and train_images.is_floating_point()
    if config.vocab_size is not None:
        if is_float:
            raise ValueError(f"vocab_size={config.vocab_size} asks for a token machine, but the training data are "
                             f"float {tuple(train_images.shape)}; give int64 token ids [N, L], or drop vocab_size")
        if labels is not None:
            raise ValueError("token machines are unconditional; drop labels")
        return TokenOracle(config, train_images, device)
    if isinstance(train_images, torch.Tensor) and not is_float and train_images.dim() == 2:
        raise ValueError(f"the training data are {train_images.dtype} sequences {tuple(train_images.shape)}: a token "
                         "machine needs vocab_size=V in its OracleConfig")
    return Oracle(config, train_images, labels, device)
