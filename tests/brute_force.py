"""A deliberately naive reference for the score machines: enumerate every key of every pixel
(theory sections 3-5), materialise all logits, softmax, average. Tiny sizes only."""
from __future__ import annotations

import math

import torch


def patch(img: torch.Tensor, i: int, j: int, k: int, boundary: str, shape=None) -> torch.Tensor:
    """The k x k patch at (i, j) (``k = (kh, kw)``: a kh x kw one), or only its offsets ``shape`` [(u, v)]
    (a shaped patch, theory section 9)."""
    C, H, W = img.shape
    dh, dw = (k // 2, k // 2) if isinstance(k, int) else (k[0] // 2, k[1] // 2)
    offsets = [(u, v) for u in range(-dh, dh + 1) for v in range(-dw, dw + 1)] if shape is None else shape
    out = torch.zeros(len(offsets), C, dtype=img.dtype)
    for n, (u, v) in enumerate(offsets):
        ii, jj = i + u, j + v
        if boundary == "circular":
            out[n] = img[:, ii % H, jj % W]
        elif 0 <= ii < H and 0 <= jj < W:
            out[n] = img[:, ii, jj]
    return out.flatten()


def row_class(i: int, size: int, d: int):
    if i < d:
        return i
    if i >= size - d:
        return i - size
    return "interior"


def torus(a: int, b: int, size: int) -> int:
    return min((a - b) % size, (b - a) % size)


def key_positions(p, H, W, k, boundary, machine, radius, stride, sigma):
    """[(p', bias)] of pixel p; ``k`` one odd size or ``(kh, kw)``."""
    i, j = p
    dh, dw = (k // 2, k // 2) if isinstance(k, int) else (k[0] // 2, k[1] // 2)
    if machine == "ls":
        return [((i, j), 0.0)]
    knobs = radius is not None or stride > 1 or sigma is not None
    out = []
    for i2 in range(H):
        for j2 in range(W):
            if boundary == "circular" and not knobs:
                if not (dh <= i2 < H - dh and dw <= j2 < W - dw):
                    continue
            if boundary == "zeros":
                if row_class(i2, H, dh) != row_class(i, H, dh) or row_class(j2, W, dw) != row_class(j, W, dw):
                    continue
            if boundary == "circular":
                di, dj = torus(i2, i, H), torus(j2, j, W)
            else:
                di, dj = abs(i2 - i), abs(j2 - j)
            if radius is not None and max(di, dj) > radius:
                continue
            if stride > 1 and ((i2 - i) % stride or (j2 - j) % stride):
                continue
            bias = 0.0 if sigma is None else -(di * di + dj * dj) / (2 * sigma * sigma)
            out.append(((i2, j2), bias))
    return out


def softmax_mean(query, keys, values, biases, a, b2):
    logits = torch.stack([-((query - a * kk) ** 2).sum() / (2 * b2) + bb for kk, bb in zip(keys, biases)])
    w = torch.softmax(logits, 0)
    return (w[:, None] * torch.stack(values)).sum(0)


def brute_force(x, alpha_bar, train, machine="els", k=3, boundary="zeros", radius=None, stride=1, sigma=None,
                shape=None):
    """x [B, C, H, W]; returns x0_hat [B, C, H, W] in float64. ``shape``: the offsets [(u, v)] of a shaped
    patch (its bounding rectangle, which sets the boundary classes, replaces k)."""
    if shape is not None:
        k = (2 * max(abs(u) for u, _ in shape) + 1, 2 * max(abs(v) for _, v in shape) + 1)
    x, train = x.double(), train.double()
    a, b2 = math.sqrt(alpha_bar), 1.0 - alpha_bar
    B, C, H, W = x.shape
    out = torch.zeros_like(x)
    for b in range(B):
        if machine in ("ideal", "es"):
            keys = []
            for z in train:
                shifts = [(0, 0)] if machine == "ideal" else [(s, t) for s in range(H) for t in range(W)]
                keys += [torch.roll(z, (s, t), (1, 2)) for s, t in shifts]
            out[b] = softmax_mean(x[b].flatten(), [kk.flatten() for kk in keys], [kk.flatten() for kk in keys],
                                  [0.0] * len(keys), a, b2).reshape(C, H, W)
            continue
        pad_mode = boundary
        for i in range(H):
            for j in range(W):
                q = patch(x[b], i, j, k, pad_mode, shape)
                keys, values, biases = [], [], []
                for (i2, j2), bias in key_positions((i, j), H, W, k, boundary, machine, radius, stride, sigma):
                    for z in train:
                        keys.append(patch(z, i2, j2, k, pad_mode, shape))
                        values.append(z[:, i2, j2])
                        biases.append(bias)
                out[b, :, i, j] = softmax_mean(q, keys, values, biases, a, b2)
    return out


def token_brute_force(x, train, V, machine="els", k=3, boundary="zeros", smoothing=1.0):
    """Theory section 12 read literally: for every masked position of every query, list the keys of ``K(i)``
    one by one, test each for consistency offset by offset, count, smooth. ``x`` ``[B, L]`` (mask id ``V``),
    ``train`` ``[N, L]``; returns float64 ``[B, V, L]``."""
    B, L = x.shape
    N = len(train)
    d = k // 2
    out = torch.zeros(B, V, L, dtype=torch.float64)

    def cls(i):
        return i if i < d else (i - L if i >= L - d else "interior")

    def at(seq, centre, o, wrap):
        """The token at offset o of the window centred on ``centre`` (None: outside the sequence, not compared)."""
        p = centre + o
        if wrap:
            return int(seq[p % L])
        return int(seq[p]) if 0 <= p < L else None

    for b in range(B):
        for i in range(L):
            if x[b, i] < V:
                out[b, int(x[b, i]), i] = 1.0
                continue
            counts = [0] * V
            if machine == "ideal":
                for n in range(N):
                    if all(x[b, j] == V or x[b, j] == train[n, j] for j in range(L)):
                        counts[int(train[n, i])] += 1
            else:
                wrap = boundary == "circular"
                if machine == "ls":
                    keys = [(n, i) for n in range(N)]
                elif wrap:  # ELS circular: the windows inside the training sequences
                    keys = [(n, j) for n in range(N) for j in range(L) if j - d >= 0 and j + d < L]
                else:  # ELS zeros: the windows at the positions of i's boundary class
                    keys = [(n, j) for n in range(N) for j in range(L) if cls(j) == cls(i)]
                for n, j in keys:
                    ok = True
                    for o in range(-d, d + 1):
                        q = at(x[b], i, o, wrap)
                        if q is None or q == V:
                            continue  # outside the sequence, or masked: not compared
                        key = at(train[n], j, o, wrap and machine == "ls")
                        if key is not None and key != q:
                            ok = False
                            break
                    if ok:
                        counts[at(train[n], j, 0, False)] += 1
            total = sum(counts)
            for v in range(V):
                out[b, v, i] = (counts[v] + smoothing) / (total + smoothing * V) if total + smoothing * V > 0 \
                    else 1.0 / V
    return out
