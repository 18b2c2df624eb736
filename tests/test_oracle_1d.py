"""The oracle on 1-D signals (theory section 11) against a reference written here for one axis, independently
of the 2-D code (signals ``[N, C, L]``, patches of ``k`` consecutive samples), and the theory's known answers."""
import math

import pytest
import torch

from ablate.oracle import OracleConfig, build_oracle

F64 = dict(dtype="float64")


def signals(n=4, c=2, length=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, length, generator=g, dtype=torch.float64) * 2 - 1


def noisy(b=2, c=2, length=9, seed=1):
    return torch.randn(b, c, length, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def window(sig, i, k, boundary):
    """The k samples centred on i (zero-padded or wrapped): ``[C * k]``."""
    C, L = sig.shape
    d = k // 2
    out = torch.zeros(C, k, dtype=sig.dtype)
    for u in range(-d, d + 1):
        if boundary == "circular":
            out[:, u + d] = sig[:, (i + u) % L]
        elif 0 <= i + u < L:
            out[:, u + d] = sig[:, i + u]
    return out.flatten()


def sample_class(i, L, d):
    return i if i < d else (i - L if i >= L - d else "interior")


def positions_1d(i, L, k, boundary, machine, radius, stride, sigma):
    """[(i', bias)] the sample i takes keys from (theory sections 4, 5 and 11 on one axis)."""
    d = k // 2
    if machine == "ls":
        return [(i, 0.0)]
    knobs = radius is not None or stride > 1 or sigma is not None
    out = []
    for i2 in range(L):
        if boundary == "circular" and not knobs and not d <= i2 < L - d:
            continue
        if boundary == "zeros" and sample_class(i2, L, d) != sample_class(i, L, d):
            continue
        dist = min((i2 - i) % L, (i - i2) % L) if boundary == "circular" else abs(i2 - i)
        if radius is not None and dist > radius:
            continue
        if stride > 1 and (i2 - i) % stride:
            continue
        out.append((i2, 0.0 if sigma is None else -dist * dist / (2 * sigma * sigma)))
    return out


def reference(x, ab, train, machine="els", k=3, boundary="zeros", radius=None, stride=1, sigma=None):
    a, b2 = math.sqrt(ab), 1 - ab
    B, C, L = x.shape
    out = torch.zeros_like(x)

    def mean(q, keys, values, biases):
        logits = torch.stack([-((q - a * kk) ** 2).sum() / (2 * b2) + bb for kk, bb in zip(keys, biases)])
        return (torch.softmax(logits, 0)[:, None] * torch.stack(values)).sum(0)

    for b in range(B):
        if machine in ("ideal", "es"):
            shifts = [0] if machine == "ideal" else range(L)
            keys = [torch.roll(z, s, 1).flatten() for z in train for s in shifts]
            out[b] = mean(x[b].flatten(), keys, keys, [0.0] * len(keys)).reshape(C, L)
            continue
        for i in range(L):
            keys, values, biases = [], [], []
            for i2, bias in positions_1d(i, L, k, boundary, machine, radius, stride, sigma):
                for z in train:
                    keys.append(window(z, i2, k, boundary))
                    values.append(z[:, i2])
                    biases.append(bias)
            out[b, :, i] = mean(window(x[b], i, k, boundary), keys, values, biases)
    return out


KNOBS = [{}, {"shift_radius": 0}, {"shift_radius": 2}, {"stride": 2}, {"stride": 3}, {"position_bandwidth": 1.5}]


@pytest.mark.parametrize("boundary", ["zeros", "circular"])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("knobs", KNOBS, ids=lambda d: ",".join(f"{a}={b}" for a, b in d.items()) or "plain")
def test_1d_els_matches_the_one_axis_reference(boundary, k, knobs):
    z, x = signals(), noisy()
    oracle = build_oracle(OracleConfig(machine="els", patch_size=k, boundary=boundary, **knobs, **F64), z)
    for ab in (0.3, 0.95):
        want = reference(x, ab, z, "els", k, boundary, knobs.get("shift_radius"), knobs.get("stride", 1),
                         knobs.get("position_bandwidth"))
        got = oracle.denoise(x, ab)
        assert got.shape == x.shape and torch.allclose(got, want, atol=1e-10, rtol=0)


@pytest.mark.parametrize("machine, k, boundary", [("ideal", 3, "zeros"), ("es", 3, "circular"), ("ls", 3, "zeros"),
                                                  ("ls", 5, "circular"), ("ls", 17, "zeros")])
def test_1d_is_ls_es_match_the_one_axis_reference(machine, k, boundary):
    z, x = signals(), noisy()
    got = build_oracle(OracleConfig(machine=machine, patch_size=k, boundary=boundary, **F64), z).denoise(x, 0.6)
    assert torch.allclose(got, reference(x, 0.6, z, machine, k, boundary), atol=1e-10, rtol=0)


def test_1d_schedules_float32_and_conditional_use():
    z, x = signals(n=6), noisy(b=3)
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    from ablate.oracle import PatchSchedule

    sched = PatchSchedule.from_list([3, 5], alpha_bars=[0.9, 0.2])
    oracle = build_oracle(OracleConfig(patch_size=sched, **F64), z, labels)
    ab = torch.tensor([0.95, 0.1, 0.9], dtype=torch.float64)
    got = oracle.denoise(x, ab, labels=torch.tensor([1, 0, 0]))
    for i, (k, lab) in enumerate([(3, 1), (5, 0), (3, 0)]):
        want = reference(x[i:i + 1], float(ab[i]), z[labels == lab], "els", k, "zeros")
        assert torch.allclose(got[i:i + 1], want, atol=1e-10)
    f32 = build_oracle(OracleConfig(patch_size=3), z.float()).denoise(x.float(), 0.5)
    assert f32.dtype == torch.float32 and torch.allclose(f32.double(), reference(x, 0.5, z, "els", 3), atol=1e-5)


@pytest.mark.parametrize("machine, boundary", [("ls", "zeros"), ("els", "zeros")])
def test_1d_tiny_noise_returns_each_samples_own_value(machine, boundary):
    z = signals(n=5, length=12)
    x = (1 - 1e-8) ** 0.5 * z[:3] + 1e-4 * noisy(b=3, length=12)
    got = build_oracle(OracleConfig(machine=machine, patch_size=5, boundary=boundary, **F64), z).denoise(x, 1 - 1e-8)
    assert torch.allclose(got, z[:3], atol=1e-6)


def test_1d_circular_els_is_exactly_shift_equivariant():
    z, x = signals(length=11), noisy(length=11)
    oracle = build_oracle(OracleConfig(machine="els", patch_size=5, boundary="circular", **F64), z)
    for s in (1, 4, 7):
        assert torch.allclose(oracle.denoise(torch.roll(x, s, 2), 0.4), torch.roll(oracle.denoise(x, 0.4), s, 2),
                              atol=1e-12)


def test_1d_ls_with_the_widest_patch_is_is():
    z, x = signals(length=7), noisy(length=7)
    ls = build_oracle(OracleConfig(machine="ls", patch_size=13, **F64), z).denoise(x, 0.5)
    assert torch.allclose(ls, build_oracle(OracleConfig(machine="ideal", **F64), z).denoise(x, 0.5), atol=1e-10)


def test_1d_rivals_equal_their_formulas_on_one_axis():
    """Equivariant Wiener equals Wiener on a shift-closed set of signals; equivariant PCA locality's shape
    lies on the axis, and with tau = 1 the machine is ELS k = 1."""
    from ablate.oracle import statistics

    base = signals(n=3, c=1, length=6)
    closed = torch.cat([torch.roll(base, s, 2) for s in range(6)])
    x = noisy(b=2, c=1, length=6)
    w = build_oracle(OracleConfig(machine="wiener", **F64), closed).denoise(x, 0.5)
    ew = build_oracle(OracleConfig(machine="equivariant_wiener", **F64), closed).denoise(x, 0.5)
    assert w.shape == x.shape and torch.allclose(w, ew, atol=1e-9)
    st = statistics.Statistics.of(closed[:, :, None, :], spectral_only=True)
    shape = statistics.pca_shape(st, 0.7, 0.51, 0.05)
    assert all(u == 0 for u, _ in shape) and len(shape) > 1
    point = build_oracle(OracleConfig(machine="equivariant_pca_locality", mask_threshold=1.0, **F64), closed)
    els1 = build_oracle(OracleConfig(machine="els", patch_size=1, **F64), closed)
    assert torch.allclose(point.denoise(x, 0.5), els1.denoise(x, 0.5), atol=1e-12)


@pytest.mark.parametrize("kw, message", [
    (dict(machine="els", patch_size=19), "patch size 19 is too large .* on 9-sample signals; allowed: odd k <= 17"),
    (dict(machine="ls", patch_size=19), "allowed: odd k <= 17"),
    (dict(machine="els", patch_size=11, boundary="circular"), "allowed: odd k <= 9"),
])
def test_1d_patch_sizes_past_what_the_machine_allows_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        build_oracle(OracleConfig(**kw), signals())


def test_1d_bad_inputs_are_clear_errors():
    oracle = build_oracle(OracleConfig(patch_size=3), signals().float())
    with pytest.raises(ValueError, match=r"x_t must be a tensor \[B, C, L\] \(this oracle holds signals\)"):
        oracle.denoise(torch.zeros(2, 2, 1, 9), 0.5)
    with pytest.raises(ValueError, match=r"per-item shape \(2, 8\) but the training data are \(2, 9\)"):
        oracle.denoise(torch.zeros(2, 2, 8), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        oracle.denoise(torch.full((1, 2, 9), float("nan")), 0.5)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\] \(images\) or \[N, C, L\] \(signals\)"):
        build_oracle(OracleConfig(), torch.zeros(4, 9))
    with pytest.raises(ValueError, match="lie in"):
        build_oracle(OracleConfig(), torch.full((3, 1, 9), 3.0))
