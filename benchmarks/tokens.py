"""The discrete machines (theory section 12) against a straightforward vectorised counter, side by side.

The counter compares every query window with every training window of its key set at once (a ``[queries, keys,
k]`` comparison in chunks, then a matrix product with the keys' one-hot centres): exact, vectorised, and
``O(B L K k)`` per call. ablate's machine (:mod:`ablate.oracle.tokens`) looks each window's observed pattern up
in a table built once per (key set, pattern mask). Both run the calls of one 20-step unmasking trajectory:
``B`` held-out words masked at the sampler's survival probabilities. Printed per machine and k: the seconds
per call (median), the first pass (tables built) and later passes (tables kept), the ratio, and the largest
difference between the two answers.

    python benchmarks/tokens.py                   # N = 10,000 words, B = 64, k = 3, 5, 7
    python benchmarks/tokens.py --n 2000 --ks 3   # smaller
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from ablate.data import load_dataset
from ablate.oracle import OracleConfig, build_oracle


def counter(oracle, x: torch.Tensor, k: int, chunk: int = 2**26) -> torch.Tensor:
    """The straightforward counter: every query window against every key window of its key set."""
    V, L, d = oracle.V, oracle.L, k // 2
    sets, of = oracle._key_windows(k)  # the same key sets as the machine: only the counting differs
    q = oracle._pad(x, d, oracle.config.boundary == "circular").unfold(1, k, 1)  # [B, L, k]
    counts = torch.zeros(len(x), L, V, dtype=torch.float64)
    for s, keys in enumerate(sets):
        positions = torch.nonzero(of == s).flatten()
        if len(positions) == 0 or len(keys) == 0:
            continue
        qs = q[:, positions].reshape(-1, k)  # [Q, k]
        obs = qs < V
        centres = torch.nn.functional.one_hot(keys[:, d], V).double()
        rows = max(1, chunk // (len(keys) * k))
        out = torch.empty(len(qs), V, dtype=torch.float64)
        for r in range(0, len(qs), rows):
            agree = (keys[None] == qs[r:r + rows, None]) | ~obs[r:r + rows, None]  # [rows, K, k]
            out[r:r + rows] = agree.all(-1).double() @ centres
        counts[:, positions] = out.reshape(len(x), len(positions), V)
    s_ = float(oracle.config.smoothing)
    post = (counts + s_) / (counts.sum(-1, keepdim=True) + s_ * V)
    observed = x < V
    post = torch.where(observed[..., None], torch.nn.functional.one_hot(x.clamp(max=V - 1), V).double(), post)
    return post.transpose(1, 2)


def trajectory(held: torch.Tensor, V: int, batch: int, steps: int, seed: int) -> list[tuple[torch.Tensor, float]]:
    """The inputs of a ``steps``-step unmasking run (cosine schedule): ``batch`` held-out words, each position
    kept with probability alpha."""
    g = torch.Generator().manual_seed(seed)
    words = held[torch.randperm(len(held), generator=g)[:batch]]
    out = []
    for i in range(steps, 0, -1):
        alpha = max(0.0, math.cos(i / steps * math.pi / 2))
        x = words.clone()
        x[torch.rand(x.shape, generator=g) > alpha] = V
        out.append((x, alpha))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000, help="training words")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--ks", type=int, nargs="+", default=[3, 5, 7])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--counter-calls", type=int, default=5, help="calls the counter is timed on (it is slow)")
    a = p.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("words", n=a.n)
    V = data.vocab_size
    calls = trajectory(data.heldout, V, a.batch, a.steps, 0)
    print(f"words: N = {len(data.train)}, L = {data.shape[0]}, V = {V}; B = {a.batch}, {a.steps} calls "
          f"(one unmasking run); 1 thread")
    print(f"{'machine':<14}{'k':>3}{'keys':>9}{'first pass s/call':>19}{'later s/call':>14}"
          f"{'counter s/call':>16}{'ratio (later)':>15}{'ratio (first)':>15}{'max |diff|':>12}")
    for machine, boundary in (("els", "circular"), ("els", "zeros"), ("ls", "zeros")):
        for k in a.ks:
            oracle = build_oracle(OracleConfig(machine=machine, patch_size=k, boundary=boundary, vocab_size=V,
                                               dtype="float64"), data.train)
            first, later = [], []
            for timing in (first, later):
                for x, alpha in calls:
                    t = time.perf_counter()
                    oracle.denoise(x, alpha)
                    timing.append(time.perf_counter() - t)
            slow, diff = [], 0.0
            picks = calls[:: max(1, len(calls) // a.counter_calls)][:a.counter_calls]
            for x, alpha in picks:
                t = time.perf_counter()
                ref = counter(oracle, x, k)
                slow.append(time.perf_counter() - t)
                diff = max(diff, float((ref - oracle.denoise(x, alpha)).abs().max()))
            keys = len(oracle._family(k)[0])
            f, l_, c = sum(first) / len(first), statistics.median(later), statistics.median(slow)
            print(f"{machine + ' ' + boundary:<14}{k:>3}{keys:>9}{f:>19.4f}{l_:>14.4f}{c:>16.3f}{c / l_:>14.0f}x"
                  f"{c / f:>14.0f}x{diff:>12.1e}")


if __name__ == "__main__":
    main()
