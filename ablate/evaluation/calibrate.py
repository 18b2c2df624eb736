"""Calibration of the oracle's patch size to a trained network (theory section 6).

Along the network's own DDIM trajectories from a handful of seeds, at every
step, each candidate machine (one odd ``k``) denoises the network's state
``x_t``; the score ``-(x_t - a x0_hat) / b2`` of each is compared with the
network's by cosine similarity, each seed votes for its best ``k``, and the
step's ``k`` is the median vote. The result is one ``k`` per step: a
:class:`~ablate.oracle.PatchSchedule` saved as JSON beside the checkpoint.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ablate.oracle import Oracle, PatchSchedule
from ablate.sampling import Denoiser, Schedule, release, sample
from ablate.sampling.plans import announce_plan, report_plan


@dataclass(frozen=True)
class Calibration:
    """ks ``[T]``: the calibrated k per sampler step (first step = highest noise); alpha_bars ``[T]``;
    candidates ``[K]``; similarity ``[T, K]``: median over seeds of the score cosine similarity;
    votes ``[T, S]``: each seed's best k."""

    machine: str
    boundary: str
    ks: tuple[int, ...]
    alpha_bars: tuple[float, ...]
    candidates: tuple[int, ...]
    seeds: tuple[int, ...]
    similarity: list[list[float]]
    votes: list[list[int]]

    def schedule(self) -> PatchSchedule:
        return PatchSchedule.from_list(self.ks, self.alpha_bars)

    def save(self, path: str | Path) -> Path:
        """JSON that :meth:`PatchSchedule.load` reads (``k`` and ``alpha_bar``) plus how it was made."""
        path = Path(path)
        path.write_text(json.dumps({"k": list(self.ks), "alpha_bar": list(self.alpha_bars), "machine": self.machine,
                                    "boundary": self.boundary, "candidates": list(self.candidates),
                                    "seeds": list(self.seeds), "similarity": self.similarity,
                                    "votes": self.votes}, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path, steps: int | None = None) -> "Calibration":
        """Read a saved calibration; ``steps`` (if given) must equal its length."""
        try:
            d = json.loads(Path(path).read_text())
            cal = cls(d["machine"], d["boundary"], tuple(d["k"]), tuple(d["alpha_bar"]), tuple(d["candidates"]),
                      tuple(d["seeds"]), d["similarity"], d["votes"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"cannot read calibration {str(path)!r}: {err}") from err
        if len(cal.ks) != len(cal.alpha_bars):
            raise ValueError(f"calibration {path} has {len(cal.ks)} ks but {len(cal.alpha_bars)} noise levels")
        if steps is not None and len(cal.ks) != steps:
            raise ValueError(f"calibration {path} holds {len(cal.ks)} steps but the sampler runs {steps}; "
                             f"recalibrate for {steps} steps")
        if cal.machine in ("ls", "els"):
            cal.schedule()  # validates every k
        return cal


def score(x_t: torch.Tensor, x0_hat: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """``-(x_t - sqrt(ab) x0_hat) / (1 - ab)`` (theory section 1), flattened per image ``[B, D]``."""
    return (-(x_t - alpha_bar ** 0.5 * x0_hat) / (1 - alpha_bar)).flatten(1)


def calibrate(network: Denoiser, oracle: Oracle, candidates: Sequence[int], seeds: Sequence[int],
              shape: tuple[int, int, int], steps: int = 20, noise_schedule: Schedule = "cosine",
              labels: torch.Tensor | None = None, progress: bool = False,
              device: str | torch.device = "cpu") -> Calibration:
    """Choose one k per step for ``oracle``'s machine (its boundary and knobs are kept; only the
    patch size varies over ``candidates``). The candidates share the oracle's key caches. The
    trajectories are drawn on ``device`` (where the network and the oracle live)."""
    if not candidates:
        raise ValueError("calibration needs at least one candidate patch size")
    return calibrate_variants(network, {k: oracle.with_patch_size(k) for k in candidates}, oracle.config.machine,
                              oracle.config.boundary, seeds, shape, steps, noise_schedule, labels, progress, device)


def calibrate_variants(network: Denoiser, variants: dict, machine: str, boundary: str, seeds: Sequence[int],
                       shape: tuple[int, int, int], steps: int = 20, noise_schedule: Schedule = "cosine",
                       labels: torch.Tensor | None = None, progress: bool = False,
                       device: str | torch.device = "cpu") -> Calibration:
    """The same choice over any family of machines keyed by their scale (``k`` for LS/ELS,
    ``mask_threshold`` for PCA locality): one value per step, the median of the seeds' votes."""
    candidates = list(variants)
    traj = sample(network, seeds, shape, steps=steps, schedule=noise_schedule, labels=labels, keep_trajectory=True,
                  device=device)
    planned = announce_plan(list(variants.values()), traj.alpha_bars.tolist(), len(seeds), labels, progress,
                            f"calibrating {machine} over {len(candidates)} candidates")
    loop = range(steps)
    if progress:
        from tqdm.auto import tqdm
        loop = tqdm(loop, desc=f"calibrating {machine}", unit="step", leave=False)
    sims = torch.empty(steps, len(candidates), len(seeds), dtype=torch.float64)
    for i in loop:
        x, ab = traj.xs[i], float(traj.alpha_bars[i])
        target = score(x, traj.x0_hats[i], ab).double()
        for j, value in enumerate(candidates):
            guess = score(x, variants[value].denoise(x, ab, labels), ab).double()
            sims[i, j] = torch.nn.functional.cosine_similarity(guess, target, dim=1).cpu()
    if progress:
        report_plan(planned)
    cand = torch.tensor(candidates, dtype=torch.float64)
    votes = cand[sims.argmax(1)]  # [T, S]
    chosen = votes.median(dim=1).values  # an actual vote
    as_type = int if all(float(c).is_integer() for c in candidates) else float
    return Calibration(machine, boundary, tuple(as_type(v) for v in chosen),
                       tuple(float(a) for a in traj.alpha_bars), tuple(as_type(c) for c in candidates),
                       tuple(int(s) for s in seeds), sims.median(dim=2).values.tolist(),
                       [[as_type(v) for v in row] for row in votes.tolist()])


class PerLevel:
    """A denoiser that answers each query with the variant calibrated for the nearest noise level (in log
    SNR): ``variants`` value -> denoiser, ``values[i]`` chosen at ``alpha_bars[i]``."""

    def __init__(self, variants: dict, alpha_bars: Sequence[float], values: Sequence) -> None:
        self.variants, self.values = variants, list(values)
        self.logsnr = torch.tensor([math.log(a / (1 - a)) for a in alpha_bars], dtype=torch.float64)

    def denoise(self, x_t: torch.Tensor, alpha_bar, labels: torch.Tensor | None = None) -> torch.Tensor:
        ab = torch.as_tensor(alpha_bar, dtype=torch.float64).cpu()
        ab = ab.expand(len(x_t)) if ab.dim() == 0 else ab
        which = (torch.log(ab / (1 - ab))[:, None] - self.logsnr[None]).abs().argmin(1)
        out = torch.empty_like(x_t)
        for i in torch.unique(which).tolist():
            sel = torch.nonzero(which == i).flatten()
            lab = None if labels is None else torch.as_tensor(labels).expand(len(x_t))[sel]
            out[sel] = self.variants[self.values[i]].denoise(x_t[sel], ab[sel], lab).to(x_t.dtype)
        return out

    def release(self) -> int:
        """Free every variant's caches (:func:`release`); the bytes freed."""
        return sum(release(v) for v in self.variants.values())

    __call__ = denoise
