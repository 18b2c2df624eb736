"""The run planner: time and memory of an oracle job, estimated before it runs.

A job is a list of denoising calls ``(alpha_bar, batch, label)`` (a full sample: one per step; a
calibration: one per step and candidate). For the shared-key ELS path (theory sections 2-4, the
expensive one) a call costs, per pixel group, ``queries x distinct keys`` logits, each a GEMM column
of ``D + 2`` numbers and one fused ``exp`` (:mod:`ablate.oracle.softmax`); the first call of a patch
size also extracts and merges its keys. The planner takes the key counts from the oracle's cached key
sets where they exist, and otherwise estimates them from a sample of images (distinct patches among
``SAMPLE_IMAGES`` images; patches seen once there are counted as growing with N, repeated ones, such
as the background, as already all seen); it takes the seconds per logit, per group and per extracted
key number from timing this machine on those very shapes (:func:`throughput`, cached per process).
The position-aware machines (LS, ELS with knobs) cost ``queries x positions x N`` logits the same way.
The other machines (IS, ES, the rival theories) take a fraction of a second per step at these sizes; their
estimate is a rough one from the same rates.

Memory: the training images, their padded copy, the key cache (at most ``cache_bytes``, and at most
what the keys need), the query patches and a few tiles. :func:`check_memory` refuses a job whose
estimate exceeds what the machine has available, before any work is done.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from ablate.oracle.keys import KeySet, augment_queries, build_key_set
from ablate.oracle.patches import offset_table, pad
from ablate.oracle.prune import dense_softmax
from ablate.oracle.softmax import StreamingSoftmax

SAMPLE_IMAGES = 64  # images whose keys are extracted to estimate how many distinct keys N images hold
_RATES: dict = {}  # (device, dtype, threads, D) -> (seconds per logit, seconds per group call)
_BUILD: dict = {}  # (device, dtype, threads) -> seconds per extracted key number


@dataclass(frozen=True)
class Estimate:
    """What a job is expected to take: wall ``seconds``, ``peak_bytes`` of memory it adds beyond the
    interpreter, the number of ``logits`` (query x key pairs) and of denoising ``calls``; ``parts`` names
    the memory's main items (bytes)."""

    seconds: float
    peak_bytes: int
    logits: float
    calls: int
    parts: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return (f"about {format_seconds(self.seconds)} and {self.peak_bytes / 2**30:.2f} GiB "
                f"({self.logits:.2g} logits over {self.calls} calls)")


def format_seconds(s: float) -> str:
    if s < 90:
        return f"{s:.1f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def available_memory() -> int | None:
    """Bytes this process may still use: the smaller of the kernel's ``MemAvailable`` and what the
    cgroup's limit leaves; None where neither can be read (not Linux)."""
    found = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max":
            found.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def _time(fn, reps: int = 3) -> float:
    fn()  # warm
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def throughput(D: int, device: torch.device, dtype: torch.dtype, tile: int) -> tuple[float, float]:
    """``(seconds per logit, seconds per group call)`` of this machine for keys of ``D`` numbers: a dense
    streaming softmax of 1,024 queries over 16,384 keys, and of 8 queries over 64 keys (the overhead of one
    small pixel group), timed here once per process and shape."""
    key = (str(device), dtype, torch.get_num_threads(), D, tile)
    if key not in _RATES:
        g = torch.Generator().manual_seed(0)

        def run(Q, n):
            q = torch.randn(Q, D, generator=g).to(device, dtype)
            keys = torch.randn(n, D + 2, generator=g).to(device, dtype)
            values = torch.randn(n, 1, generator=g).to(device, dtype)
            s = torch.full((Q,), 0.1, dtype=dtype, device=device)
            qa = augment_queries(q, s, s)

            rows = max(1, tile // min(Q, 1024))  # key chunks as the oracle cuts them (Engine.shared_keys)
            chunks = [(keys[s:s + rows], values[s:s + rows]) for s in range(0, n, rows)]

            def go():
                state = StreamingSoftmax((Q,), 1, dtype, device)
                dense_softmax(state, qa, chunks, tile)
                state.result()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
            return _time(go)
        small = run(8, 64)
        big = run(1024, 16384)
        _RATES[key] = (max(big - small, 1e-12) / (1024 * 16384), small)
    return _RATES[key]


def _distinct(oracle, k, images, group) -> tuple[float, float, float]:
    """``(distinct keys, build seconds per key, build seconds per set)`` of one pixel group over ``images``,
    estimated from :data:`SAMPLE_IMAGES` of them (all of them when there are no more): the time per key is
    the slope between half the sample and all of it, the time per set what one image's set costs beyond
    its keys."""
    m = min(len(images), SAMPLE_IMAGES)
    pick = torch.linspace(0, len(images) - 1, m).round().long().to(images.device)
    padded = pad(images[pick], (k[0] // 2, k[1] // 2), oracle.config.boundary)
    positions = group.key_pos.to(images.device)
    rows = oracle.engine.chunk_rows(oracle.C * k[0] * k[1])  # as the oracle builds
    times = []
    build_key_set(padded[:2], k, positions, oracle.W, rows)  # warm: first-call costs are not per key
    for part in (padded[:1], padded[:max(1, m // 2)], padded):
        start = time.perf_counter()
        keyset: KeySet = build_key_set(part, k, positions, oracle.W, rows)
        times.append(time.perf_counter() - start)
    per_image = len(positions)
    raw = m * per_image  # keys in the sample, before merging
    half_raw = max(1, m // 2) * per_image
    per_key = max((times[2] - times[1]) / max(raw - half_raw, 1), 0.25 * times[2] / raw)
    fixed = max(0.0, times[0] - per_key * per_image)  # what one build costs whatever its size
    once = float((keyset.log_counts == 0).sum())
    distinct = len(keyset.augmented)
    scale = len(images) / m
    return min(raw * scale, (distinct - once) + once * scale), per_key, fixed


def estimate(oracle, calls: Sequence[tuple[float, int, int | None]], timing: bool = True) -> Estimate:
    """The time and memory of ``calls`` ``(alpha_bar, batch, label or None)`` on ``oracle``, in order
    (key sets cached by an earlier call are free later, as the oracle's cache keeps them; a set that does
    not fit ``cache_bytes`` is streamed, i.e. extracted on every call, and not merged). ``timing=False``
    skips what costs time to measure (the throughput, the distinct-key sample): ``seconds`` is then NaN and
    the key cache is bounded by the keys before merging (an upper bound: enough for :func:`check_memory`)."""
    cfg = oracle.config
    el = oracle.images.element_size()
    images_bytes = oracle.images.numel() * el
    C, H, W, HW = oracle.C, oracle.H, oracle.W, oracle.H * oracle.W
    seconds, logits, peak_extra = 0.0, 0.0, 0
    built: dict = {}  # (k, label) -> (distinct per group, build seconds per group) of sets that were built
    sets: dict = {}  # (extent, label) -> bytes of its cached key sets
    build_peak = 0
    tile = oracle.engine.chunk_rows(1)
    offsets: dict = {}  # patch extent -> query positions per offset of the position-aware path (computed once)
    for alpha_bar, batch, label in calls:
        k = cfg.schedule().k_at(float(alpha_bar))
        images = oracle.images if label is None or label < 0 else oracle.images[oracle.labels == label]
        N = len(images)
        ext = oracle.extent(k)
        D = C * ext[0] * ext[1]
        padded_bytes = N * C * (H + 2 * (ext[0] // 2)) * (W + 2 * (ext[1] // 2)) * el
        queries_bytes = batch * HW * (D + 2) * el * 2
        cost, own_position = cfg.theory.cost, cfg.theory.own_position
        if cost != "patches":
            n_logits = batch * N * (HW if cost == "every_shift" else 1)
            rate, overhead = throughput(min(D, 64), oracle.device, oracle.dtype, tile) if timing else (math.nan, 0.0)
            seconds += n_logits * rate * (HW if cost == "whole_image" else 4) + overhead
            logits += n_logits
            peak_extra = max(peak_extra, queries_bytes + 4 * oracle.chunk_bytes)
            continue
        if own_position or cfg.shift_radius is not None or cfg.position_bandwidth is not None:
            if ext not in offsets:
                table = offset_table(H, W, ext, cfg.boundary, cfg.shift_radius, cfg.stride, cfg.position_bandwidth,
                                     own_position)
                offsets[ext] = [len(o.query_pos) for o in table]
            table = offsets[ext]
            n_logits = batch * N * sum(table)
            rate, overhead = throughput(D, oracle.device, oracle.dtype, tile) if timing else (math.nan, 0.0)
            seconds += n_logits * rate + overhead * len(table) * math.ceil(N * HW * D * el / (16 * oracle.chunk_bytes))
            logits += n_logits
            peak_extra = max(peak_extra, padded_bytes + queries_bytes + 48 * oracle.chunk_bytes)
            continue
        groups = oracle.groups(ext)
        rate, overhead = throughput(D, oracle.device, oracle.dtype, tile) if timing else (math.nan, 0.0)
        raw = [N * len(g.key_pos) for g in groups]
        per_key_bytes = (D + 2 + C) * el
        fits = sum(raw) * (per_key_bytes + 32) <= cfg.cache_bytes
        cache_key = (ext, label)
        big = max(range(len(groups)), key=lambda i: len(groups[i].key_pos))  # it stands for all groups
        if fits and cache_key not in built:
            cached = {key[2]: s for key, s in oracle.engine.keysets.items() if key[0] == (ext, None) and key[1] == (
                -1 if label is None else label)}
            if not timing:
                built[cache_key] = (raw, [math.nan] * len(groups))
            elif len(cached) == len(groups):
                built[cache_key] = ([len(s.augmented) for _, s in sorted(cached.items())], [0.0] * len(groups))
            else:
                # the largest group's share of distinct keys and build time per key, for every group
                distinct, per_key, fixed = _distinct(oracle, ext, images, groups[big])
                share = distinct / max(raw[big], 1)
                built[cache_key] = ([r * share for r in raw], [fixed + r * per_key for r in raw])
                seconds += sum(built[cache_key][1])  # the first call extracts and merges
            counts = built[cache_key][0]
            sets[cache_key] = sum(counts) * per_key_bytes  # what the cache keeps of this patch size
            build_peak = max(build_peak, max(raw) * (per_key_bytes + 32))  # one group's set while it is built
        else:
            counts = raw  # streamed: every key, every call, plus its extraction
            if not fits and timing:
                where = (str(oracle.device), oracle.dtype, torch.get_num_threads())
                if where not in _BUILD:
                    _BUILD[where] = _distinct(oracle, ext, images, groups[big])[1] / 2  # streaming: no merging
                seconds += sum(raw) * _BUILD[where]
        n_logits = sum(batch * len(g.query_pos) * c for g, c in zip(groups, counts))
        seconds += n_logits * rate + overhead * len(groups)
        logits += n_logits
        peak_extra = max(peak_extra, padded_bytes + queries_bytes + 4 * oracle.chunk_bytes)
    # the cache keeps sets of every patch size while they fit in cache_bytes, evicting the least recently used
    cache_peak = int(min(sum(sets.values()), cfg.cache_bytes) + build_peak)
    parts = {"training images": images_bytes, "key cache": cache_peak, "working set": peak_extra}
    return Estimate(seconds, images_bytes + cache_peak + peak_extra, logits, len(calls), parts)


def memory_budget(budget: int | None = None) -> int | None:
    """``budget`` where given, else ``ABLATE_MEMORY_BUDGET`` where set, else :func:`available_memory`
    (None where none is known)."""
    if budget is None:
        budget = env_budget()
    return available_memory() if budget is None else budget


def check_memory(est: Estimate, budget: int | None = None, what: str = "this job") -> None:
    """Raise ``MemoryError`` with the estimate's parts and what to change when ``est`` needs more than
    ``budget`` bytes (default: :func:`memory_budget`; nothing is checked where none is known)."""
    budget = memory_budget(budget)
    if budget is None or est.peak_bytes <= budget:
        return
    parts = ", ".join(f"{name} {b / 2**30:.2f} GiB" for name, b in est.parts.items())
    raise MemoryError(f"{what} needs about {est.peak_bytes / 2**30:.2f} GiB at its peak ({parts}) but only "
                      f"{budget / 2**30:.2f} GiB is available; lower OracleConfig.cache_bytes (key sets that do "
                      "not fit are streamed: slower, little memory), the batch, the patch size or the number of "
                      "training images")


def sample_calls(oracle, batch: int, alpha_bars: Sequence[float], labels: torch.Tensor | None = None):
    """The calls of a sample: one per step (``alpha_bars``), split by label as the oracle splits them."""
    if labels is None:
        return [(float(a), batch, None) for a in alpha_bars]
    per = torch.bincount(torch.as_tensor(labels).long().flatten())
    return [(float(a), int(c), int(lab)) for a in alpha_bars for lab, c in enumerate(per.tolist()) if c]


def env_budget() -> int | None:
    """``ABLATE_MEMORY_BUDGET`` (bytes, or with a ``G``/``M`` suffix) where it is set."""
    raw = os.environ.get("ABLATE_MEMORY_BUDGET")
    if not raw:
        return None
    mult = {"G": 2**30, "M": 2**20}.get(raw[-1].upper(), 1)
    try:
        return int(float(raw[:-1] if mult > 1 else raw) * mult)
    except ValueError as err:
        raise ValueError(f"ABLATE_MEMORY_BUDGET={raw!r} is not a size; give bytes or e.g. 8G, 512M") from err
