"""1-D signals (theory section 11): ``pulses``, a procedural set with a known global rule, and the UCR
time-series sets that ship inside ``aeon``. Signals are float32 ``[N, C, L]`` in [-1, 1].

``pulses``: each signal holds exactly P pulses (Gaussian bumps of random position, width and height) on a
smooth, slowly varying baseline; :func:`count_pulses` recovers P exactly on every generated signal. A
generated signal with another count is the 1-D analogue of an extra finger: a local decision made without
the global count. Geometry, in units of the length ``L`` (so the rule holds at every length):

* baseline ``-0.8 + 0.08 sin(2 pi f x / L + phi)``, ``f`` in [0.5, 1.5] cycles: it stays in [-0.88, -0.72];
* pulse heights 0.9..1.6 above it, widths (Gaussian sigma) ``0.75 L / 64`` .. ``2 L / 64`` and never below
  0.75 samples, so the highest sample of a pulse (at most half a sample from its centre) reaches at least
  -0.16 and at most 0.88;
* centres at least ``6 sigma_max`` apart and ``2 sigma_max + 1`` from the ends: halfway between two pulses
  each adds at most ``1.6 exp(-4.5) = 0.018``, so the signal stays below -0.68, far under the counting
  threshold ``-0.3``. Up to 5 pulses fit at any length >= 64.

``count_pulses`` counts the runs of samples above ``-0.3``: each pulse makes exactly one (a Gaussian on a
baseline this flat crosses the threshold once each way), and nothing else crosses it.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

BASELINE, WOBBLE = -0.8, 0.08
HEIGHT = (0.9, 1.6)
WIDTH = (0.75 / 64, 2.0 / 64)  # Gaussian sigma, in units of the length
MIN_SIGMA = 0.75  # samples: a narrower pulse could fall between samples and stay under the threshold
SEPARATION = 6.0  # centre distance, in sigma_max
THRESHOLD = -0.3  # count_pulses' level

# the UCR sets that ship inside aeon's package data (no download): ablate name -> aeon name
UCR_SETS = {"gunpoint": "GunPoint", "arrowhead": "ArrowHead", "osuleaf": "OSULeaf"}


def pulse_geometry(length: int, pulses: int) -> tuple[float, float, float]:
    """``(sigma_max, margin, room)`` in samples: the widest pulse, the distance of a centre from the ends,
    and the free span left for the centres once the separations are taken out (negative: they do not fit)."""
    sigma_max = WIDTH[1] * length
    margin = 2 * sigma_max + 1
    return sigma_max, margin, length - 2 * margin - (pulses - 1) * SEPARATION * sigma_max


def max_pulses(length: int) -> int:
    """The most pulses that fit a signal of ``length`` samples (one pulse leaves ``room``; each more takes
    ``SEPARATION * sigma_max`` of it)."""
    sigma_max, _, room = pulse_geometry(length, 1)
    return int(room // (SEPARATION * sigma_max)) + 1


def make_pulses(n: int, length: int = 64, pulses: int = 3, seed: int = 0) -> torch.Tensor:
    """``n`` signals with exactly ``pulses`` pulses: float32 ``[n, 1, length]`` in [-1, 1]."""
    if n < 0:
        raise ValueError(f"n={n} must be >= 0")
    if length < 32:
        raise ValueError(f"length={length} is too short to draw separable pulses; allowed: >= 32")
    if not 1 <= pulses <= max_pulses(length):
        raise ValueError(f"pulses={pulses} does not fit {length} samples; allowed: 1..{max_pulses(length)} "
                         "(pulses are kept 6 widths apart)")
    rng = np.random.default_rng(seed)
    sigma_max, margin, room = pulse_geometry(length, pulses)
    x = np.arange(length, dtype=np.float64)
    out = np.empty((n, length), dtype=np.float64)
    for i in range(n):
        cycles, phase = rng.uniform(0.5, 1.5), rng.uniform(0, 2 * math.pi)
        signal = BASELINE + WOBBLE * np.sin(2 * math.pi * cycles * x / length + phase)
        offsets = np.sort(rng.uniform(0, room, size=pulses))
        centres = margin + offsets + np.arange(pulses) * SEPARATION * sigma_max
        sigmas = rng.uniform(max(WIDTH[0] * length, MIN_SIGMA), WIDTH[1] * length, size=pulses)
        heights = rng.uniform(*HEIGHT, size=pulses)
        for c, s, h in zip(centres, sigmas, heights):
            signal += h * np.exp(-((x - c) ** 2) / (2 * s * s))
        out[i] = signal
    return torch.from_numpy(out.astype(np.float32))[:, None]


def pulse_runs(signal: torch.Tensor) -> list[tuple[int, int]]:
    """``[(start, stop)]`` of the runs of samples above the threshold in one signal ``[L]`` or ``[1, L]``."""
    s = torch.as_tensor(signal).detach().cpu().double()
    if s.dim() == 2 and s.shape[0] == 1:
        s = s[0]
    if s.dim() != 1:
        raise ValueError(f"count_pulses takes one signal [L] or [1, L]; got shape {tuple(s.shape)}")
    above = np.concatenate([[False], (s > THRESHOLD).numpy(), [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def count_pulses(signal: torch.Tensor) -> int:
    """The number of pulses of one signal ``[L]`` or ``[1, L]`` in [-1, 1]: runs above -0.3."""
    return len(pulse_runs(signal))


def resample(signals: torch.Tensor, length: int) -> torch.Tensor:
    """Linear resampling of ``[N, C, L]`` to ``[N, C, length]`` (end points kept)."""
    return torch.nn.functional.interpolate(signals, size=length, mode="linear", align_corners=True)


def scale_each(signals: np.ndarray) -> torch.Tensor:
    """Every series min-max scaled to [-1, 1] (UCR series are z-normalised per series already; a constant
    series becomes 0): ``[N, C, L]`` float32."""
    x = np.asarray(signals, dtype=np.float64)
    low, high = x.min(axis=(1, 2), keepdims=True), x.max(axis=(1, 2), keepdims=True)
    span = np.where(high > low, high - low, 1.0)
    return torch.from_numpy((2 * (x - low) / span - 1).astype(np.float32))


def class_indices(labels: np.ndarray) -> torch.Tensor:
    """UCR class names (strings) as int64 0..K-1, in sorted order of the names."""
    names = sorted(set(labels.tolist()), key=lambda v: (len(str(v)), str(v)))
    index = {name: i for i, name in enumerate(names)}
    return torch.tensor([index[v] for v in labels.tolist()], dtype=torch.int64)


def read_ucr(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A UCR set that ships inside aeon (train and test splits together: ablate splits them itself):
    ``([N, C, L] in [-1, 1], labels [N])``."""
    from aeon.datasets import load_classification

    parts = [load_classification(UCR_SETS[name], split=split) for split in ("train", "test")]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return scale_each(x), class_indices(y)


def read_ts_file(path: str | Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Any series file in the UCR/aeon ``.ts`` format (equal-length series), read by aeon:
    ``([N, C, L] in [-1, 1], labels [N] or None)``."""
    from aeon.datasets import load_from_ts_file

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"signal file {str(path)!r} does not exist")
    try:
        loaded = load_from_ts_file(str(path))
    except Exception as err:  # aeon raises IOError, ValueError, TsFileParseException...
        raise ValueError(f"cannot read {str(path)!r} as a .ts series file: {err}") from err
    x, y = loaded if isinstance(loaded, tuple) else (loaded, None)
    if not isinstance(x, np.ndarray) or x.ndim != 3:
        raise ValueError(f"{str(path)!r} holds series of unequal length; ablate needs equal-length series")
    if len(x) == 0:
        raise ValueError(f"{str(path)!r} holds no series")
    labels = None if y is None or len(y) == 0 else class_indices(np.asarray(y))
    return scale_each(x), labels
