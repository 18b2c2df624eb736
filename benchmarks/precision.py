"""Would low precision pay? GEMM rates by dtype on the oracle's tile shapes, and how many keys exact
rescoring would have to revisit.

Part 1: the median seconds of ``[Q, D + 2] @ [D + 2, n]`` (the oracle's logits: ``Q`` query patches, a chunk of
``n`` keys, ``D = k^2``) in float32, float64, bfloat16 and float16, with GFlop/s and the ratio to float32. A
bf16 or fp16 GEMM followed by exact rescoring can only pay if it is faster than float32.

Part 2: split precision needs the *candidates*: keys whose float32 logit lies within the certified margin
``log(2 n / tol) + 2 delta`` of the query's best (``delta``: Higham's bound on the GEMM's rounding,
``gamma_{D+3} (s1 |q| |k| + s2 |k|^2 + |log c|)``; every other key's total weight is provably below ``tol / 2``).
Rescoring recomputes those logits in float64 (distance form); this part counts them per query on real
digits at low noise (where float32 is off by up to 2e-4) and times that rescoring against the float32 step.

    python benchmarks/precision.py                 # one thread, N = 400 digits at 28x28
    python benchmarks/precision.py --threads 2 --n 1000
"""
from __future__ import annotations

import argparse
import math

import torch
from oracle import digits  # benchmarks/oracle.py (the script's folder is on sys.path)
from timing import timed

from ablate.oracle import OracleConfig, build_oracle
from ablate.oracle.keys import augment_queries

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


def gemm_rates(queries: int, keys: int, ks: list[int], reps: int) -> None:
    print(f"GEMM [{queries}, D + 2] @ [D + 2, {keys}] (CPU capability {torch.backends.cpu.get_cpu_capability()})")
    print(f"{'k':>3} {'dtype':>9} {'ms':>9} {'GFlop/s':>8} {'vs float32':>10}")
    for k in ks:
        d = k * k + 2
        a32, b32 = torch.randn(queries, d), torch.randn(keys, d)
        base = None
        for name, dtype in DTYPES.items():
            a, b = a32.to(dtype), b32.to(dtype)
            a @ b.T  # warm
            t, _ = timed(lambda: a @ b.T, reps)
            base = base or t
            print(f"{k:>3} {name:>9} {t * 1e3:9.1f} {2 * queries * keys * d / t / 1e9:8.1f} {base / t:9.2f}x",
                  flush=True)


def rescoring(n: int, ks: list[int], alpha_bar: float, tol: float, reps: int) -> None:
    train = digits(n, 28)
    x0 = digits(n + 10, 28)[-2:]
    g = torch.Generator().manual_seed(0)
    x_t = math.sqrt(alpha_bar) * x0 + math.sqrt(1 - alpha_bar) * torch.randn(x0.shape, generator=g)
    print(f"\nexact rescoring at alpha_bar {alpha_bar}, circular, N = {n}, batch 2, tol {tol:g}")
    print(f"{'k':>3} {'keys':>8} {'candidates/query':>17} {'share':>7} {'f32 step s':>10} {'rescore s':>10} "
          f"{'f32 dev':>8} {'rescored dev':>12}")
    for k in ks:
        o32 = build_oracle(OracleConfig(patch_size=k, boundary="circular"), train)
        exact = build_oracle(OracleConfig(patch_size=k, boundary="circular", dtype="float64"), train).denoise(
            x_t, alpha_bar).reshape(2, -1)
        o32.denoise(x_t, alpha_bar)  # builds the key set
        t32, r32 = timed(lambda: o32.denoise(x_t, alpha_bar), reps)
        (keyset,) = o32.engine.keysets.values()  # circular ELS: one pixel group
        q = o32.engine.query_patches(x_t, (k, k), "circular").reshape(-1, k * k)
        t, (res, pairs, n_keys) = timed(lambda: _rescored(q, keyset, alpha_bar, tol), 1)
        print(f"{k:>3} {n_keys:>8} {pairs / len(q):>17.0f} {pairs / len(q) / n_keys:>7.2%} {t32:>10.2f} {t:>10.2f} "
              f"{float((r32.reshape(2, -1) - exact).abs().max()):>8.1e} "
              f"{float((res.reshape(2, -1) - exact).abs().max()):>12.1e}", flush=True)


def _rescored(q: torch.Tensor, keyset, alpha_bar: float, tol: float):
    """Candidates from float32 logits (certified margin), rescored in float64; their softmax mean."""
    a64 = torch.full((len(q),), math.sqrt(alpha_bar), dtype=torch.float64)
    b2 = torch.full_like(a64, 1 - alpha_bar)
    s1, s2 = (a64 / b2).float(), (a64 * a64 / (2 * b2)).float()
    keys, D = keyset.augmented, q.shape[1]
    u = 2.0 ** -24
    gamma = (D + 3) * u / (1 - (D + 3) * u)
    kmax = float(keys[:, :D].norm(dim=1).max())
    delta = gamma * float(s1.max() * q.norm(dim=1).max() * kmax + s2.max() * kmax ** 2 + keys[:, -1].abs().max())
    margin = math.log(2 * len(keys) / tol) + 2 * delta
    qa = augment_queries(q, s1, s2)
    best = torch.full((len(q),), -math.inf)
    cq, ck = [], []
    for c0 in range(0, len(keys), 4096):
        logits = qa @ keys[c0:c0 + 4096].T
        best = torch.maximum(best, logits.amax(1))
        idx = (logits >= (best - margin)[:, None]).nonzero()
        cq.append(idx[:, 0])
        ck.append(idx[:, 1] + c0)
    cq, ck = torch.cat(cq), torch.cat(ck)
    keep = (qa[cq] * keys[ck]).sum(1) >= best[cq] - margin  # against the final best
    cq, ck = cq[keep], ck[keep]
    diff = q[cq].double() - a64[cq, None] * keys[ck, :D].double()
    logit = -(diff * diff).sum(1) / (2 * b2[cq]) + keys[ck, -1].double()
    top = torch.full((len(q),), -math.inf, dtype=torch.float64).scatter_reduce(0, cq, logit, "amax")
    w = torch.exp(logit - top[cq])
    z = torch.zeros(len(q), dtype=torch.float64).index_add_(0, cq, w)
    num = torch.zeros(len(q), dtype=torch.float64).index_add_(0, cq, w * keyset.values[ck, 0].double())
    return num / z, len(cq), len(keys)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n", type=int, default=400, help="training digits for the rescoring part")
    p.add_argument("--ks", type=int, nargs="+", default=[3, 9, 15])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--alpha-bar", type=float, default=0.976, help="the grid's low noise")
    p.add_argument("--tol", type=float, default=1e-5)
    p.add_argument("--skip-rescoring", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    gemm_rates(784 * 2, 16384, a.ks, a.reps)
    if not a.skip_rescoring:
        rescoring(a.n, [k for k in a.ks if k >= 9] or a.ks, a.alpha_bar, a.tol, a.reps)


if __name__ == "__main__":
    main()
