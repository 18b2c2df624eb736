"""The discrete machines of theory section 12: IS, LS and ELS over token sequences, exact and fast.

Absorbing-state (masked) diffusion: ``x_t`` int64 ``[B, L]`` with tokens ``0 .. V-1`` and the mask token ``V``.
Every machine returns the posterior mean of the one-hot clean sequence, float ``[B, V, L]``::

    n(i)        = number of keys of K(i) consistent with the window P_i(x_t) (agreeing at every observed,
                  in-sequence position of the window), counted with multiplicity
    c_v(i)      = number of those whose centre token is v
    x0_hat[v,i] = (c_v(i) + s) / (n(i) + s V)        at a masked position; the one-hot of x_t[i] at an observed one

Key sets ``K(i)``: IS, the whole training sequences; LS, the training windows at position ``i``; ELS, the
training windows at every position (``circular``: the query window wraps and the keys are the windows that lie
inside the training sequences; ``zeros``: nothing outside the sequence is compared, and the keys are the
windows at the positions of ``i``'s boundary class: ``i`` itself within ``d = k // 2`` of an end, every interior
window otherwise).

**How it is fast.** A window's consistent keys depend only on its *observed pattern*: which of its ``k - 1``
non-centre offsets are observed (the centre is masked, or the answer is its one-hot) and the tokens there. For
each pattern mask that a query shows, a table is built once and kept: every key's set and tokens at the mask's
offsets encoded as one integer, sorted and counted per centre token. A group of queries with that mask is
then one binary search: ``n`` and ``c_v`` are the counts of the code each shows. A call costs ``O(B L log K)`` after its
tables exist, against ``O(B L K k)`` for comparing every query window with every training window
(``benchmarks/tokens.py`` measures both). IS needs no table: its consistent set is one per sequence, counted
by comparing each query with each training sequence at the query's observed positions.
"""
from __future__ import annotations

import copy
import dataclasses
from collections import OrderedDict
from typing import Any

import torch

MAX_CODE = 2**62  # a pattern whose codes could reach this is grouped by torch.unique instead (exact, not cached)
# past DIRECT_K a window has too many possible patterns (2**(k-1)) for most tables to be asked for twice: a pattern shown
# by fewer than MIN_TABLE_QUERIES queries, with no table yet, is counted by direct comparison instead
DIRECT_K = 7
MIN_TABLE_QUERIES = 16
TABLE_BYTES = 512 * 2**20  # the tables kept between calls, least recently used evicted first


def check_tokens(name: str, tokens: Any, vocab_size: int, masked: bool) -> torch.Tensor:
    """``tokens`` as int64 ``[N, L]``, or a one-line error: a float tensor, another rank, an id out of range (the
    mask id ``V`` only where ``masked``)."""
    if not isinstance(tokens, torch.Tensor):
        raise ValueError(f"{name} must be an int64 tensor [N, L] of token ids; got {type(tokens).__name__}")
    if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
        raise ValueError(f"{name} has dtype {tokens.dtype}: a token machine takes int64 token ids [N, L] "
                         "(images and signals are float; do not mix them)")
    if tokens.dim() != 2 or tokens.shape[1] == 0:
        raise ValueError(f"{name} must have shape [N, L] (one row per sequence); got {tuple(tokens.shape)}")
    tokens = tokens.long()
    top = vocab_size if masked else vocab_size - 1
    if len(tokens) and (int(tokens.min()) < 0 or int(tokens.max()) > top):
        bad = int(tokens.min()) if int(tokens.min()) < 0 else int(tokens.max())
        allowed = f"0..{vocab_size - 1}, and {vocab_size} for the mask" if masked else f"0..{vocab_size - 1}"
        raise ValueError(f"{name} holds token id {bad}; allowed: {allowed} (vocab_size={vocab_size})")
    return tokens


class TokenOracle:
    """A discrete machine (``ideal``, ``ls`` or ``els``) over training sequences ``tokens`` int64 ``[N, L]``.

    Build it with :func:`ablate.oracle.build_oracle` and an :class:`~ablate.oracle.OracleConfig` that sets
    ``vocab_size`` (and ``smoothing``). ``denoise(x_t, alpha)`` takes ``[B, L]`` int64 with the mask id
    ``vocab_size`` and returns float ``[B, V, L]``; ``alpha`` selects the patch size of a schedule only (an
    observed token is never corrupted, so the posterior does not depend on it)."""

    def __init__(self, config, tokens: torch.Tensor, device: str | torch.device | None = None) -> None:
        V = config.vocab_size
        tokens = check_tokens("train tokens", tokens, V, masked=False)
        if len(tokens) == 0:
            raise ValueError("train tokens are empty; the machine needs at least one training sequence")
        self.config = config
        self.V = V
        self.device = torch.device(device) if device is not None else tokens.device
        self.tokens = tokens.to(self.device)
        self.N, self.L = self.tokens.shape
        self.dtype = torch.float64 if config.dtype == "float64" else torch.float32
        config.check_image_size(self.L)
        # (k, boundary, machine) -> key windows [S, K, k] per key set and the key set of each position [L] (and
        # the derived families, IS's one-hot training tokens);
        # ((k, boundary, machine), set, mask) -> (codes [U] sorted, counts [U, V]); shared by with_knobs copies
        self.windows: dict[Any, Any] = {}
        self.tables: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (self.L,)

    @property
    def vocab_size(self) -> int:
        return self.V

    def with_knobs(self, **changes) -> "TokenOracle":
        """The same machine with other config values (``patch_size``, ``smoothing``), sharing every table."""
        config = dataclasses.replace(self.config, **changes)
        config.check_image_size(self.L)
        other = copy.copy(self)
        other.config = config
        return other

    def with_patch_size(self, patch_size) -> "TokenOracle":
        return self.with_knobs(patch_size=patch_size)

    # ------------------------------------------------------------------ interface
    def denoise(self, x_t: torch.Tensor, alpha: float | torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``x0_hat`` float ``[B, V, L]`` for ``x_t`` int64 ``[B, L]`` (mask id ``V``) at survival probability
        ``alpha`` (a float or ``[B]``; it picks the patch size of a schedule)."""
        if labels is not None:
            raise ValueError("token machines are unconditional; labels are not supported")
        x = check_tokens("x_t", x_t, self.V, masked=True).to(self.device)
        if x.shape[1] != self.L:
            raise ValueError(f"x_t has length {x.shape[1]} but the training sequences have L={self.L}")
        B = len(x)
        a = torch.as_tensor(alpha, dtype=torch.float64).flatten()
        if a.numel() == 1:
            a = a.expand(B)
        if a.numel() != B or not torch.isfinite(a).all() or (a < 0).any() or (a > 1).any():
            raise ValueError(f"alpha must be a float or [B] in [0, 1]; got {alpha!r}")
        counts = torch.zeros(B, self.L, self.V, dtype=torch.float64, device=self.device)  # c_v(i) per query
        if self.config.theory.tokens == "whole":
            counts = self._ideal(x)
        else:
            schedule = self.config.schedule()
            ks = torch.tensor([schedule.k_at(min(1.0, max(float(v), 1e-9))) for v in a])
            for k in torch.unique(ks).tolist():
                sel = torch.nonzero(ks == k).flatten().to(self.device)
                counts[sel] = self._windowed(x[sel], int(k))
        s = float(self.config.smoothing)
        n = counts.sum(-1, keepdim=True)
        post = (counts + s) / (n + s * self.V)
        post = torch.where(n + s * self.V > 0, post, torch.full_like(post, 1.0 / self.V))  # s = 0 and no key
        observed = x < self.V
        onehot = torch.nn.functional.one_hot(x.clamp(max=self.V - 1), self.V).to(post.dtype)
        post = torch.where(observed[..., None], onehot, post)
        return post.transpose(1, 2).to(self.dtype).contiguous()

    # ------------------------------------------------------------------ IS
    def _ideal(self, x: torch.Tensor) -> torch.Tensor:
        """Counts ``[B, L, V]``: over the training sequences that agree with ``x`` at every observed position,
        the token at each position."""
        if "onehot" not in self.windows:  # [N, L V], float32: counts are exact below 2**24 sequences
            self.windows["onehot"] = torch.nn.functional.one_hot(self.tokens, self.V).float().reshape(self.N, -1)
        onehot = self.windows["onehot"]
        observed = x < self.V
        out = torch.zeros(len(x), self.L * self.V, dtype=torch.float64, device=self.device)
        rows = max(1, 2**22 // max(1, len(x) * self.L))
        for s in range(0, self.N, rows):
            z = self.tokens[s:s + rows]
            mismatch = (observed[:, None, :] & (z[None] != x[:, None, :])).any(-1)  # [B, n]
            out += ((~mismatch).float() @ onehot[s:s + rows]).double()
        return out.reshape(len(x), self.L, self.V)

    # ------------------------------------------------------------------ LS and ELS
    def _key_windows(self, k: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Every key set's windows ``[K, k]`` (positions outside the sequence hold the mask id: never compared)
        and the key set of each position ``[L]``."""
        key = (k, self.config.boundary, self.config.theory.tokens)
        if key in self.windows:
            return self.windows[key]
        d, L = k // 2, self.L
        circular = self.config.boundary == "circular"
        padded = self._pad(self.tokens, d, circular)  # [N, L + 2d]
        at = padded.unfold(1, k, 1)  # [N, L, k]: the window centred on each position
        if self.config.theory.tokens == "position":
            sets = [at[:, i].contiguous() for i in range(L)]  # one key set per position: the N windows there
            of = torch.arange(L, device=self.device)
        elif circular:  # ELS, circular: the windows that lie inside the training sequences, one set
            sets = [self.tokens.unfold(1, k, 1).reshape(-1, k)]
            of = torch.zeros(L, dtype=torch.long, device=self.device)
        else:  # ELS, zeros: the interior windows, and each edge position's own windows
            edges = [i for i in range(L) if i < d or i >= L - d]
            interior = self.tokens.unfold(1, k, 1).reshape(-1, k) if L - 2 * d > 0 else self.tokens.new_zeros((0, k))
            sets = [interior] + [at[:, i].contiguous() for i in edges]
            of = torch.zeros(L, dtype=torch.long, device=self.device)
            for j, i in enumerate(edges):
                of[i] = j + 1
        self.windows[key] = (sets, of)
        return sets, of

    def _pad(self, t: torch.Tensor, d: int, circular: bool) -> torch.Tensor:
        if d == 0:
            return t
        if circular:
            reps = -(-d // t.shape[1])  # a window may wrap more than once (LS with k > L)
            ring = torch.cat([t] * (2 * reps + 1), dim=1)
            start = reps * t.shape[1] - d
            return ring[:, start:start + t.shape[1] + 2 * d]
        fill = torch.full((len(t), d), self.V, dtype=t.dtype, device=t.device)
        return torch.cat([fill, t, fill], dim=1)

    def _family(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Every key of every key set at patch size ``k``: windows ``[K, k]``, the set of each ``[K]``, the set of
        each position ``[L]`` and the number of sets (cached)."""
        key = ("family", k, self.config.boundary, self.config.theory.tokens)
        if key not in self.windows:
            sets, of = self._key_windows(k)
            ids = torch.cat([torch.full((len(w),), j, dtype=torch.long, device=self.device) for j, w in enumerate(sets)])
            self.windows[key] = (torch.cat(sets), ids, of, len(sets))
            self.windows[key + ("starts",)] = torch.tensor([0] + [len(w) for w in sets]).cumsum(0).tolist()
        return self.windows[key]

    def _windowed(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Counts ``[B, L, V]`` for LS or ELS at patch size ``k`` (observed positions: left 0, overwritten)."""
        B, L, V, d = len(x), self.L, self.V, k // 2
        _, _, of, count = self._family(k)
        q = self._pad(x, d, self.config.boundary == "circular").unfold(1, k, 1)  # [B, L, k]
        offsets = [o for o in range(k) if o != d]
        weights = torch.tensor([1 << j for j in range(len(offsets))], dtype=torch.long, device=self.device)
        need = x >= V  # only masked centres need counts
        b_idx, i_idx = torch.nonzero(need, as_tuple=True)
        out = torch.zeros(B, L, V, dtype=torch.float64, device=self.device)
        if len(b_idx) == 0:
            return out
        windows = q[b_idx, i_idx]  # [M, k]
        observed = windows[:, offsets] < V
        bits = (observed.long() * weights).sum(-1)  # each window's observed pattern
        span = (V + 2) ** len(offsets)
        if k > DIRECT_K or count * span >= MAX_CODE:  # one code per pattern mask (or none), mask by mask
            for mask in torch.unique(bits).tolist():
                sel = torch.nonzero(bits == mask).flatten()
                cols = [offsets[j] for j in range(len(offsets)) if mask >> j & 1]
                out[b_idx[sel], i_idx[sel]] = self._lookup(k, cols, windows[sel][:, cols], of[i_idx[sel]])
            return out
        # every query coded at once: its key set, then each offset's token + 1 where observed, 0 where masked
        powers = (V + 2) ** torch.arange(len(offsets), device=self.device, dtype=torch.long)
        codes = of[i_idx] * span + (torch.where(observed, windows[:, offsets] + 1, 0) * powers).sum(-1)
        order = torch.argsort(bits)
        masks, sizes = torch.unique_consecutive(bits[order], return_counts=True)
        counts = torch.empty(len(codes), V, dtype=torch.float64, device=self.device)
        start = 0
        for mask, size in zip(masks.tolist(), sizes.tolist()):
            idx = order[start:start + size]
            start += size
            unique, table = self._mask_table(k, mask, offsets, powers, span)
            c = codes[idx]
            pos = torch.searchsorted(unique, c).clamp(max=len(unique) - 1)
            counts[idx] = table[pos].double() * (unique[pos] == c)[:, None]
        out[b_idx, i_idx] = counts
        return out

    def _mask_table(self, k: int, mask: int, offsets: list[int], powers: torch.Tensor,
                    span: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The table of one pattern mask: every key's code (its set, then its token + 1 at the mask's offsets and 0
        elsewhere; a key's out-of-sequence token is the mask id, coded V + 1, which no observed token matches),
        sorted and unique, with the centre-token counts of each code ``[U, V]`` (float32: exact below 2**24)."""
        tkey = (k, self.config.boundary, self.config.theory.tokens, "mask", mask)
        if tkey not in self.tables:
            keys, ids, _, _ = self._family(k)
            on = torch.tensor([mask >> j & 1 for j in range(len(offsets))], dtype=torch.bool, device=self.device)
            codes = ids * span + (torch.where(on, keys[:, offsets] + 1, 0) * powers).sum(-1)
            self._keep(tkey, *self._count(codes, keys[:, k // 2]))
        self.tables.move_to_end(tkey)
        return self.tables[tkey]

    def _count(self, codes: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A table: the keys' codes sorted and unique ``[U]``, and each code's centre-token counts ``[U, V]``
        (float32: exact below 2**24 keys)."""
        unique, inverse = torch.unique(codes, sorted=True, return_inverse=True)
        table = torch.zeros(len(unique), self.V, dtype=torch.float32, device=self.device)
        table.index_put_((inverse, centres), torch.ones(len(codes), dtype=torch.float32, device=self.device),
                         accumulate=True)
        return unique, table

    def _keep(self, tkey: tuple, unique: torch.Tensor, table: torch.Tensor) -> None:
        """Cache a table, evicting the least recently used ones beyond :data:`TABLE_BYTES`."""
        self.tables[tkey] = (unique, table)
        used = sum(u.numel() * u.element_size() + t.numel() * t.element_size() for u, t in self.tables.values())
        while used > TABLE_BYTES and len(self.tables) > 1:
            u, t = self.tables.popitem(last=False)[1]
            used -= u.numel() * u.element_size() + t.numel() * t.element_size()

    def _lookup(self, k: int, cols: list[int], queries: torch.Tensor, sets: torch.Tensor) -> torch.Tensor:
        """Counts ``[m, V]`` of the keys of each query's key set (``sets`` ``[m]``) that agree with its tokens at
        ``cols`` (its observed offsets), from the table of this pattern mask, built on first use. A key's code is
        its set and its tokens at ``cols`` in base ``V + 1`` (a key's out-of-sequence offsets hold the mask id
        ``V``: such a key never matches an observed token, and no code carries into another)."""
        V, d = self.V, k // 2
        keys, ids, _, count = self._family(k)
        base = V + 1
        span = base ** len(cols)
        tkey = (k, self.config.boundary, self.config.theory.tokens, tuple(cols))
        if k > DIRECT_K and tkey not in self.tables and len(queries) < MIN_TABLE_QUERIES:
            return self._direct(k, cols, queries, sets)
        if count * span >= MAX_CODE:  # codes could overflow: group key and query rows together, exactly
            both = torch.cat([torch.cat([ids[:, None], keys[:, cols]], 1), torch.cat([sets[:, None], queries], 1)])
            _, inverse = torch.unique(both, dim=0, return_inverse=True)
            table = torch.zeros(int(inverse.max()) + 1, V, dtype=torch.float64, device=self.device)
            table.index_put_((inverse[:len(keys)], keys[:, d]), torch.ones(len(keys), dtype=torch.float64,
                                                                            device=self.device), accumulate=True)
            return table[inverse[len(keys):]]
        if tkey not in self.tables:
            self._keep(tkey, *self._count(ids * span + self._codes(keys[:, cols], base), keys[:, d]))
        self.tables.move_to_end(tkey)
        unique, table = self.tables[tkey]
        qc = sets * span + self._codes(queries, base)
        pos = torch.searchsorted(unique, qc).clamp(max=len(unique) - 1)
        hit = unique[pos] == qc
        return torch.where(hit[:, None], table[pos].double(), torch.zeros((), dtype=torch.float64, device=self.device))

    def _direct(self, k: int, cols: list[int], queries: torch.Tensor, sets: torch.Tensor) -> torch.Tensor:
        """Counts ``[m, V]`` by comparing each query with every key of its set at ``cols`` (a few queries: cheaper
        than building a table that no other query may ask for)."""
        V, d = self.V, k // 2
        keys = self._family(k)[0]
        starts = self.windows[("family", k, self.config.boundary, self.config.theory.tokens, "starts")]
        out = torch.zeros(len(queries), V, dtype=torch.float64, device=self.device)
        for s in torch.unique(sets).tolist():
            rows = torch.nonzero(sets == s).flatten()
            block = keys[starts[s]:starts[s + 1]]
            agree = (block[None, :, cols] == queries[rows][:, None]).all(-1)  # [r, K_s]
            out[rows] = agree.double() @ torch.nn.functional.one_hot(block[:, d], V).double()
        return out

    @staticmethod
    def _codes(rows: torch.Tensor, base: int) -> torch.Tensor:
        """One int64 per row of tokens ``0 .. base-1`` (callers check it cannot overflow)."""
        powers = base ** torch.arange(rows.shape[1], device=rows.device, dtype=torch.long)
        return (rows * powers).sum(-1)
