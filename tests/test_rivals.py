"""The rival theories (theory section 9) against their formulas, computed independently here in float64, and
against the known answers the theory gives (a Gaussian's posterior, shift-closed data, IS and LS limits)."""
import math
import numpy as np
import pytest
import torch

from ablate.oracle import OracleConfig, build_oracle
from ablate.oracle import statistics
from ablate.oracle.theories import equivariant_pca_locality, pca_locality

F64 = dict(dtype="float64")


def images(n=12, c=1, h=4, w=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g, dtype=torch.float64) * 2 - 1


def queries(b=3, c=1, h=4, w=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, h, w, generator=g, dtype=torch.float64)


AB = torch.tensor([0.2, 0.6, 0.95], dtype=torch.float64)


def wiener_formula(z, x, ab, mean=None, cov=None):
    """``mu + a Sigma (a^2 Sigma + b2 I)^-1 (x - a mu)`` with linear solves, per query."""
    flat = None if z is None else z.reshape(len(z), -1)
    mu = flat.mean(0) if mean is None else mean
    sigma = torch.from_numpy(np.cov(flat.numpy(), rowvar=False)) if cov is None else cov
    out = []
    for xi, abi in zip(x.reshape(len(x), -1), ab):
        a, b2 = abi.sqrt(), 1 - abi
        out.append(mu + a * sigma @ torch.linalg.solve(a * a * sigma + b2 * torch.eye(len(mu), dtype=torch.float64),
                                                       xi - a * mu))
    return torch.stack(out).reshape(x.shape)


@pytest.mark.parametrize("c", [1, 2])
def test_wiener_is_the_gaussian_posterior_of_the_empirical_statistics(c):
    z, x = images(c=c), queries(c=c)
    got = build_oracle(OracleConfig(machine="wiener", **F64), z).denoise(x, AB)
    assert torch.allclose(got, wiener_formula(z, x, AB), atol=1e-10)


def test_wiener_approaches_the_true_posterior_of_a_known_gaussian():
    g = torch.Generator().manual_seed(3)
    L = torch.tensor([[0.20, 0, 0, 0], [0.05, 0.15, 0, 0], [0.0, 0.04, 0.18, 0], [0.02, 0.0, 0.03, 0.1]],
                     dtype=torch.float64)
    mu0, sigma0 = torch.tensor([0.1, -0.1, 0.0, 0.2], dtype=torch.float64), L @ L.T
    x = queries(b=4, c=1, h=2, w=2)
    truth = wiener_formula(None, x, AB.repeat(2)[:4], mean=mu0, cov=sigma0)
    errors = []
    for n in (50, 500, 20000):
        draws = mu0 + torch.randn(n, 4, generator=g, dtype=torch.float64) @ L.T
        draws = draws[(draws.abs() <= 1).all(1)]  # the data live in [-1, 1]; a 5-sigma tail is dropped
        got = build_oracle(OracleConfig(machine="wiener", **F64), draws.reshape(-1, 1, 2, 2)).denoise(x, AB.repeat(2)[:4])
        errors.append(float((got - truth).abs().max()))
    assert errors[0] > errors[2] and errors[2] < 0.02, errors


@pytest.mark.parametrize("c", [1, 2])
def test_equivariant_wiener_equals_wiener_on_a_shift_closed_training_set(c):
    base = images(n=3, c=c)
    closed = torch.cat([torch.roll(base, (i, j), (2, 3)) for i in range(4) for j in range(4)])
    x = queries(c=c)
    a = build_oracle(OracleConfig(machine="equivariant_wiener", **F64), closed).denoise(x, AB)
    b = build_oracle(OracleConfig(machine="wiener", **F64), closed).denoise(x, AB)
    assert torch.allclose(a, b, atol=1e-9)


def test_equivariant_wiener_is_wiener_with_the_shift_averaged_covariance():
    z, x = images(n=7, c=2), queries(c=2)
    N, C, H, W = z.shape
    m = z.mean(dim=(0, 2, 3))
    centred = (z - m[None, :, None, None]).reshape(N, -1)
    cov = torch.zeros(C * H * W, C * H * W, dtype=torch.float64)
    for i in range(H):
        for j in range(W):
            shifted = torch.roll((z - m[None, :, None, None]), (i, j), (2, 3)).reshape(N, -1)
            cov += shifted.T @ shifted
    cov /= (N - 1) * H * W
    mean = m[:, None, None].expand(C, H, W).reshape(-1)
    want = wiener_formula(z, x, AB, mean=mean, cov=cov)
    got = build_oracle(OracleConfig(machine="equivariant_wiener", **F64), z).denoise(x, AB)
    assert centred.shape[1] == cov.shape[0] and torch.allclose(got, want, atol=1e-9)


def pca_brute(z, x, ab, tau=0.02, T=1.0, mask=None):
    """Lukoianov et al.'s PCA locality, term by term: the mask from the gain's normalised rows, then per entry
    p a softmax over every image of -sum_m M[m, p] (x[m] - a z_j[m])^2 / (2 b2 T)."""
    N = len(z)
    flat = z.reshape(N, -1).numpy()
    sigma = np.cov(flat, rowvar=False)
    lam, U = np.linalg.eigh(sigma)
    lam = np.clip(lam, 0, None)
    out = []
    for xi, abi in zip(x.reshape(len(x), -1).numpy(), ab.numpy()):
        a, b2 = np.sqrt(abi), 1 - abi
        if mask is None:
            G = U @ np.diag(a * a * lam / (a * a * lam + b2)) @ U.T
            d = np.diag(G).copy()
            d[d < 1e-6] = 1.0
            R = np.abs(G / d[:, None])
            M = (R >= tau * R.max()).astype(float)
        else:
            M = mask
        res = np.empty(len(xi))
        for p in range(len(xi)):
            logits = np.array([-(M[:, p] * (xi - a * zj) ** 2).sum() / (2 * b2 * T) for zj in flat])
            w = np.exp(logits - logits.max())
            res[p] = (w / w.sum()) @ flat[:, p]
        out.append(res)
    return torch.from_numpy(np.stack(out)).reshape(x.shape)


@pytest.mark.parametrize("tau, T", [(0.02, 1.0), (0.3, 0.5)])
def test_pca_locality_is_exact_against_a_brute_force_reference(tau, T):
    z, x = images(n=9), queries()
    cfg = OracleConfig(machine="pca_locality", mask_threshold=tau, temperature=T, chunk_bytes=2**16, **F64)
    got = build_oracle(cfg, z).denoise(x, AB)
    assert torch.allclose(got, pca_brute(z, x, AB, tau, T), atol=1e-10)


def test_pca_locality_with_every_entry_is_is_and_with_the_diagonal_is_ls_k1(monkeypatch):
    z, x = images(n=9), queries()
    D = z[0].numel()
    monkeypatch.setattr(pca_locality, "pca_mask", lambda st, a, b2, tau: torch.ones(D, D, dtype=torch.float64))
    every = build_oracle(OracleConfig(machine="pca_locality", **F64), z).denoise(x, AB)
    assert torch.allclose(every, build_oracle(OracleConfig(machine="ideal", **F64), z).denoise(x, AB), atol=1e-10)
    monkeypatch.setattr(pca_locality, "pca_mask", lambda st, a, b2, tau: torch.eye(D, dtype=torch.float64))
    diagonal = build_oracle(OracleConfig(machine="pca_locality", **F64), z).denoise(x, AB)
    ls1 = build_oracle(OracleConfig(machine="ls", patch_size=1, **F64), z).denoise(x, AB)
    assert torch.allclose(diagonal, ls1, atol=1e-10)


def test_the_public_codes_per_batch_softmax_is_not_the_exact_one():
    """Two batches of images: one holds a near-copy of the query's clean image. The exact softmax over all N
    follows it; normalising within each batch and averaging the batches (the Studio's code) does not."""
    z = images(n=8)
    target = z[0].clone()
    z[4:] = -z[4:].abs()  # the second batch: far from the target
    x = (0.9 ** 0.5) * target[None] + 0.01 * queries(b=1)
    ab = torch.tensor([0.9], dtype=torch.float64)
    exact = build_oracle(OracleConfig(machine="pca_locality", **F64), z).denoise(x, ab)
    per_batch = (pca_brute(z[:4], x, ab) + pca_brute(z[4:], x, ab)) / 2
    assert torch.allclose(exact, pca_brute(z, x, ab), atol=1e-10)
    assert float((exact - per_batch).abs().max()) > 0.1


def eq_pca_shape(z, ab, tau):
    """Equivariant PCA locality's offsets, computed here with NumPy from the formulas of theory section 9:
    the cross power spectrum, the gain ``a^2 S (a^2 S + b2 I)^-1`` per frequency, its kernel by inverse DFT,
    rows normalised by their centre, any channel pair passing ``tau * max``; the centred window."""
    zn = z.numpy()
    N, C, H, W = zn.shape
    Y = np.fft.fft2(zn - zn.mean(axis=(0, 2, 3))[None, :, None, None])
    S = np.einsum("nchw,ndhw->hwcd", Y, Y.conj()) / ((N - 1) * H * W)
    a2, b2 = float(ab), 1 - float(ab)
    G = np.stack([[a2 * S[i, j] @ np.linalg.inv(a2 * S[i, j] + b2 * np.eye(C)) for j in range(W)] for i in range(H)])
    g = np.fft.ifft2(G, axes=(0, 1)).real
    centre = np.diag(g[0, 0]).copy()
    centre[centre < 1e-6] = 1.0
    R = np.abs(g / centre[None, None, :, None])
    keep = (R >= tau * R.max()).any(axis=(2, 3))
    offsets = []
    for i in range(H):
        for j in range(W):
            u, v = (i if i <= (H - 1) // 2 else i - H), (j if j <= (W - 1) // 2 else j - W)
            if (keep[i, j] or (i, j) == (0, 0)) and abs(u) <= (H - 1) // 2 and abs(v) <= (W - 1) // 2:
                offsets.append((u, v))
    return sorted(offsets)


@pytest.mark.parametrize("c, h, w", [(1, 7, 6), (2, 6, 5)])
@pytest.mark.parametrize("boundary, knobs", [("zeros", {}), ("circular", {}), ("zeros", {"shift_radius": 1}),
                                             ("circular", {"stride": 2}), ("zeros", {"position_bandwidth": 1.5})],
                         ids=["zeros", "circular", "zeros-radius", "circular-stride", "zeros-bandwidth"])
def test_equivariant_pca_locality_is_els_with_the_data_shape_against_brute_force(c, h, w, boundary, knobs):
    from brute_force import brute_force

    z, x = images(n=5, c=c, h=h, w=w), queries(b=2, c=c, h=h, w=w)
    tau = 0.15
    oracle = build_oracle(OracleConfig(machine="equivariant_pca_locality", mask_threshold=tau, boundary=boundary,
                                       **knobs, **F64), z)
    shapes = set()
    for ab in (0.3, 0.9):
        shape = eq_pca_shape(z, ab, tau)
        shapes.add(tuple(shape))
        want = brute_force(x, ab, z, "els", boundary=boundary, radius=knobs.get("shift_radius"),
                           stride=knobs.get("stride", 1), sigma=knobs.get("position_bandwidth"), shape=shape)
        assert torch.allclose(oracle.denoise(x, ab), want, atol=1e-10)
    # the case is not degenerate: the shape changes with the noise and is neither a point nor a rectangle
    area = [(2 * max(abs(u) for u, _ in s) + 1) * (2 * max(abs(v) for _, v in s) + 1) for s in shapes]
    assert len(shapes) == 2 and any(1 < len(s) < box for s, box in zip(shapes, area))


@pytest.mark.parametrize("boundary, knobs", [("zeros", {}), ("circular", {}), ("zeros", {"shift_radius": 2})])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_equivariant_pca_locality_with_its_shape_forced_to_the_square_is_els_k(monkeypatch, boundary, knobs, k):
    z, x = images(n=6, c=2, h=6, w=5), queries(b=3, c=2, h=6, w=5)
    d = k // 2
    square = tuple((u, v) for u in range(-d, d + 1) for v in range(-d, d + 1))
    monkeypatch.setattr(equivariant_pca_locality, "pca_shape", lambda st, a, b2, tau: square)
    got = build_oracle(OracleConfig(machine="equivariant_pca_locality", boundary=boundary, **knobs, **F64), z)
    els = build_oracle(OracleConfig(machine="els", patch_size=k, boundary=boundary, **knobs, **F64), z)
    assert torch.allclose(got.denoise(x, AB), els.denoise(x, AB), atol=1e-12)


def test_equivariant_pca_locality_limits_and_circular_equivariance():
    """tau = 1 keeps only the centre (the gain kernel peaks there): ELS with k = 1. A tiny tau keeps the whole
    centred window. With circular boundary the machine commutes with circular shifts of its input."""
    z, x = images(n=8, h=7, w=7), queries(b=2, h=7, w=7)
    st = statistics.Statistics.of(z, spectral_only=True)
    assert statistics.pca_shape(st, 0.7, 0.51, 1.0) == ((0, 0),)
    assert len(statistics.pca_shape(st, 0.7, 0.51, 1e-12)) == 49
    point = build_oracle(OracleConfig(machine="equivariant_pca_locality", mask_threshold=1.0, **F64), z)
    els1 = build_oracle(OracleConfig(machine="els", patch_size=1, **F64), z)
    assert torch.allclose(point.denoise(x, AB[:2]), els1.denoise(x, AB[:2]), atol=1e-12)
    circ = build_oracle(OracleConfig(machine="equivariant_pca_locality", boundary="circular", mask_threshold=0.1,
                                     **F64), z)
    shifted = circ.denoise(torch.roll(x, (2, 3), (2, 3)), AB[:2])
    assert torch.allclose(shifted, torch.roll(circ.denoise(x, AB[:2]), (2, 3), (2, 3)), atol=1e-12)


def test_nearest_returns_the_training_image_with_the_largest_is_logit():
    z, x = images(n=20), queries(b=4)
    ab = torch.tensor([0.3, 0.5, 0.7, 0.9], dtype=torch.float64)
    got = build_oracle(OracleConfig(machine="nearest", **F64), z).denoise(x, ab)
    for gi, xi, abi in zip(got, x, ab):
        d = ((xi[None] - abi.sqrt() * z) ** 2).flatten(1).sum(1)
        assert torch.equal(gi, z[int(d.argmin())])


def test_scfdm_without_smoothing_is_is_and_is_reproducible():
    z, x = images(n=10), queries()
    ideal = build_oracle(OracleConfig(machine="ideal", **F64), z).denoise(x, AB)
    flat = build_oracle(OracleConfig(machine="scfdm", smoothing_std=0.0, num_noise=3, **F64), z).denoise(x, AB)
    assert torch.allclose(flat, ideal, atol=1e-12)
    smooth = build_oracle(OracleConfig(machine="scfdm", smoothing_std=0.5, num_noise=4, **F64), z)
    a, b = smooth.denoise(x, AB), smooth.denoise(x, AB)
    assert torch.equal(a, b) and not torch.allclose(a, ideal, atol=1e-3)
    other = build_oracle(OracleConfig(machine="scfdm", smoothing_std=0.5, num_noise=4, noise_seed=1, **F64), z)
    assert not torch.allclose(other.denoise(x, AB), a, atol=1e-6)
    g = torch.Generator().manual_seed(0)
    eps = torch.randn((4, 1, 4, 4), generator=g, dtype=torch.float64)
    ideal_m = build_oracle(OracleConfig(machine="ideal", **F64), z)
    assert torch.allclose(a, sum(ideal_m.denoise(x + 0.5 * e, AB) for e in eps) / 4, atol=1e-12)


@pytest.mark.parametrize("kw, message", [
    (dict(machine="weiner"), "machine='weiner' is not allowed; choose one of 'ideal', 'ls', 'els', 'es', 'wiener', "
                             "'equivariant_wiener', 'pca_locality', 'golddiff', 'equivariant_pca_locality', 'nearest', 'scfdm'"),
    (dict(machine="pca_locality", mask_threshold=0.0), "mask_threshold=0.0 is out of range"),
    (dict(machine="pca_locality", mask_threshold=1.5), "mask_threshold=1.5 is out of range"),
    (dict(machine="pca_locality", temperature=0), "temperature=0.0 is out of range"),
    (dict(machine="scfdm", smoothing_std=-1.0), "smoothing_std=-1.0 is out of range"),
    (dict(machine="scfdm", num_noise=0), "num_noise=0 is too small"),
    (dict(machine="wiener", mask_threshold=0.1),
     "mask_threshold applies to machine 'pca_locality' or 'golddiff' or 'equivariant_pca_locality' only"),
    (dict(machine="equivariant_pca_locality", temperature=2.0),
     "temperature applies to machine 'pca_locality' or 'golddiff' only"),
    (dict(machine="pca_locality", stride=2), "apply to machine 'els', 'equivariant_pca_locality' or 'els_mixture' only"),
    (dict(machine="els", smoothing_std=0.1), "smoothing_std applies to machine 'scfdm' only"),
])
def test_bad_rival_knobs_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        OracleConfig(**kw)


def test_a_covariance_needs_two_images():
    with pytest.raises(ValueError, match="needs a covariance, so at least 2 training images; got 1"):
        build_oracle(OracleConfig(machine="wiener"), images(n=1))


def test_rival_machines_and_their_knobs_are_searchable_in_oracle_sweeps():
    from ablate.sweep import parse_definition
    from ablate.sweep.context import validate_space
    from ablate.sweep.oracle_kind import build

    raw = dict(name="rivals", kind="oracle", data={"name": "digits", "n": 40}, fixed={"machine": "pca_locality"},
               space={"mask_threshold": {"float": [0.005, 0.2], "log": True}, "temperature": {"float": [0.5, 2.0]}},
               objectives={"coherence": "maximize"}, sampler={"name": "random", "seed": 0}, trials=2)
    d = parse_definition(raw)
    assert validate_space(d, (1, 8, 8)) == 4
    cfg = build(None, {"machine": "pca_locality", "mask_threshold": 0.05, "temperature": 2})["oracle"]
    assert (cfg.machine, cfg.knob("mask_threshold"), cfg.knob("temperature")) == ("pca_locality", 0.05, 2.0)
    bad = parse_definition({**raw, "fixed": {"machine": "wiener"}})
    with pytest.raises(ValueError, match="mask_threshold applies to machine 'pca_locality' or"):
        validate_space(bad, (1, 8, 8))


def test_the_league_names_the_theory_a_network_is_and_calibrates_its_threshold(tmp_path):
    from ablate.data import load_dataset
    from ablate.evaluation import EvalConfig, Subject, evaluate

    data = load_dataset("digits", n=30)
    network = build_oracle(OracleConfig(machine="pca_locality", mask_threshold=0.05), data.train)
    config = EvalConfig(seeds=4, calibration_seeds=2, steps=5, samplers=("ddim",), wandb_mode="disabled",
                        progress=False)
    s = evaluate(Subject(network, data.train), config, tmp_path).summary
    assert s["calibration"]["pca_locality"]["k"] == [0.05] * 5  # the threshold calibrated back, every step
    assert s["league"]["best"] in ("pca_locality",) and s["pca_locality"]["median_r2"] == pytest.approx(1, abs=1e-6)
    assert s["pca_locality"]["median_mse"] == pytest.approx(0, abs=1e-10)
    assert set(s["league"]["by_median_r"]) == set(config.machines) and len(config.machines) == 11
    assert all(band["best"] == "pca_locality" for band in s["league"]["bands"].values())
    assert (tmp_path / "league.png").is_file()


def test_the_league_calibrates_equivariant_pca_localitys_threshold_to_the_networks_shape(tmp_path):
    """A network that is equivariant PCA locality at tau = 0.05: calibration picks, at every step, a threshold
    whose patch shape is the network's (neighbouring thresholds can cut the same shape), and the league
    names the machine with r^2 = 1."""
    from ablate.data import load_dataset
    from ablate.evaluation import EvalConfig, Subject, evaluate

    data = load_dataset("digits", n=30)
    network = build_oracle(OracleConfig(machine="equivariant_pca_locality", mask_threshold=0.05), data.train)
    config = EvalConfig(machines=("equivariant_pca_locality", "els", "ideal"), seeds=4, calibration_seeds=2,
                        steps=5, samplers=("ddim",), wandb_mode="disabled", progress=False)
    s = evaluate(Subject(network, data.train), config, tmp_path).summary
    cal = s["calibration"]["equivariant_pca_locality"]
    st = statistics.Statistics.of(data.train, spectral_only=True)
    for tau, ab in zip(cal["k"], cal["alpha_bar"]):
        a, b2 = ab ** 0.5, 1 - ab
        assert statistics.pca_shape(st, a, b2, tau) == statistics.pca_shape(st, a, b2, 0.05)
    assert s["league"]["best"] == "equivariant_pca_locality"
    assert s["equivariant_pca_locality"]["median_r2"] == pytest.approx(1, abs=1e-6)


def test_statistics_cached_by_a_spectral_machine_do_not_serve_a_covariance_machine():
    """Equivariant PCA locality computes no eigendecomposition; a copy made by with_knobs shares the caches, so
    a Wiener machine made from it must still get its own full statistics (and the Wiener answer)."""
    z, x = images(n=10), queries()
    eq = build_oracle(OracleConfig(machine="equivariant_pca_locality", **F64), z)
    eq.denoise(x, AB)
    wiener = eq.with_knobs(machine="wiener").denoise(x, AB)
    assert torch.allclose(wiener, wiener_formula(z, x, AB), atol=1e-10)


@pytest.mark.parametrize("boundary", ["zeros", "circular"])
def test_els_mixture_is_affine_in_its_weight_between_els_and_els_at_the_largest_patch(boundary):
    g = torch.Generator().manual_seed(3)
    images = torch.rand(6, 1, 7, 7, generator=g) * 2 - 1
    x = torch.randn(4, 1, 7, 7, generator=g)
    schedule = {"kind": "power", "k_min": 3, "k_max": 5, "shape": 1.0}
    largest = OracleConfig(machine="els", boundary=boundary).max_patch_size(7, 7)
    local = build_oracle(OracleConfig(machine="els", boundary=boundary, patch_size=schedule), images)
    whole = build_oracle(OracleConfig(machine="els", boundary=boundary, patch_size=largest), images)
    for ab in (0.2, 0.7):
        ends = local.denoise(x, ab), whole.denoise(x, ab)
        for w in (0.0, 0.35, 1.0):
            mix = build_oracle(OracleConfig(machine="els_mixture", boundary=boundary, patch_size=schedule,
                                            global_weight=w), images).denoise(x, ab)
            torch.testing.assert_close(mix, (1 - w) * ends[0] + w * ends[1], rtol=0, atol=1e-6)


def test_els_mixture_at_weight_one_on_a_circular_odd_image_is_is_at_every_pixels_shift():
    # circular ELS's keys lie inside the training images, so with a patch as large as an odd image each image gives
    # one key, itself: pixel p's value is the centre pixel of IS applied to the query shifted so that p is the centre
    g = torch.Generator().manual_seed(4)
    images = torch.rand(5, 1, 7, 7, generator=g) * 2 - 1
    x = torch.randn(3, 1, 7, 7, generator=g)
    mix = build_oracle(OracleConfig(machine="els_mixture", boundary="circular", patch_size=3, global_weight=1.0),
                       images)
    ideal = build_oracle(OracleConfig(machine="ideal"), images)
    for ab in (0.05, 0.5, 0.9):
        expect = torch.empty_like(x)
        for i in range(7):
            for j in range(7):
                expect[..., i, j] = ideal.denoise(torch.roll(x, (3 - i, 3 - j), (2, 3)), ab)[..., 3, 3]
        torch.testing.assert_close(mix.denoise(x, ab), expect, rtol=0, atol=1e-5)
    # with zero padding, at tiny noise, both ends return the training image the query was made from
    zeros = build_oracle(OracleConfig(machine="els_mixture", boundary="zeros", patch_size=3, global_weight=0.4),
                         images)
    noisy = images[2:3] * math.sqrt(1 - 1e-6) + 1e-3 * torch.randn(1, 1, 7, 7, generator=g)
    torch.testing.assert_close(zeros.denoise(noisy, 1 - 1e-6), images[2:3], rtol=0, atol=1e-3)
    with pytest.raises(ValueError, match="global_weight"):
        OracleConfig(machine="els_mixture", global_weight=1.5)


def golddiff_brute(z, x, ab, tau, T, k_min, k_max, factor, seed=0):
    """GoldDiff restated from its definition (theory section 9) with plain loops: per query the sizes, the seeded
    pre-sample, the pooled and the full distances image by image, then PCA locality over the chosen ones."""
    from ablate.oracle.theories.golddiff import query_seed

    N, D = len(z), z[0].numel()
    out = []
    for xi, abi in zip(x, ab):
        a, b2 = float(abi.sqrt()), float(1 - abi)
        k = min(N, max(1, math.ceil(k_min * N)))
        m = min(N, max(k, math.ceil(k_max * N)))
        loc = 1.0 - math.sqrt(b2)
        n_pre = min(N, max(m, int(round(m + (N - m) * loc))))
        K = min(m, max(k, int(round(m - (m - k) * loc))))
        pre = torch.randperm(N, generator=torch.Generator().manual_seed(query_seed(seed, xi)))[:n_pre].tolist()

        def pool(img):
            C, H, W = img.shape
            return img.reshape(C, H // factor, factor, W // factor, factor).mean((2, 4))

        coarse = sorted(pre, key=lambda j: (float(((pool(xi) - a * pool(z[j])) ** 2).sum()), pre.index(j)))[:m]
        chosen = sorted(coarse, key=lambda j: (float(((xi - a * z[j]) ** 2).sum()), coarse.index(j)))[:K]
        flat = z[chosen].reshape(K, D).numpy()
        lam, U = np.linalg.eigh(np.cov(z.reshape(N, D).numpy(), rowvar=False))  # the mask from its formula
        G = U @ np.diag(a * a * np.clip(lam, 0, None) / (a * a * np.clip(lam, 0, None) + b2)) @ U.T
        d = np.diag(G).copy()
        d[d < 1e-6] = 1.0
        R = np.abs(G / d[:, None])
        M = (R >= tau * R.max()).astype(float)
        q = xi.reshape(D).numpy()
        res = np.empty(D)
        for p in range(D):
            logits = np.array([-(M[:, p] * (q - a * zj) ** 2).sum() / (2 * b2 * T) for zj in flat])
            w = np.exp(logits - logits.max())
            res[p] = (w / w.sum()) @ flat[:, p]
        out.append(res)
    return torch.from_numpy(np.stack(out)).reshape(x.shape)


@pytest.mark.parametrize("k_min, k_max, factor", [(0.1, 0.3, 2), (0.25, 0.5, 1), (0.3, 0.3, 2)])
def test_golddiff_is_exact_against_its_restatement(k_min, k_max, factor):
    z, x = images(n=20, h=8, w=8), queries(b=4, h=8, w=8)
    ab = torch.tensor([0.05, 0.3, 0.7, 0.99], dtype=torch.float64)
    cfg = OracleConfig(machine="golddiff", mask_threshold=0.05, subset_min=k_min, subset_max=k_max, downsample=factor,
                       **F64)
    got = build_oracle(cfg, z).denoise(x, ab)
    assert torch.allclose(got, golddiff_brute(z, x, ab, 0.05, 1.0, k_min, k_max, factor), atol=1e-10)


def test_golddiff_over_the_whole_set_is_pca_locality_and_its_subsets_are_known():
    from ablate.oracle.theories.golddiff import pooled_side, subset_sizes

    z, x = images(n=12), queries()
    whole = build_oracle(OracleConfig(machine="golddiff", subset_min=1.0, subset_max=1.0, **F64), z).denoise(x, AB)
    assert torch.allclose(whole, build_oracle(OracleConfig(machine="pca_locality", **F64), z).denoise(x, AB),
                          atol=1e-10)
    # N = 100, k = 5, m = 10: all noise -> pre-sample m, keep m; no noise -> all N, keep k; b = 0.5 between
    assert subset_sizes(100, 1.0, 0.05, 0.10) == (10, 10, 10)
    assert subset_sizes(100, 0.0, 0.05, 0.10) == (100, 10, 5)
    assert subset_sizes(100, 0.5, 0.05, 0.10) == (55, 10, 8)
    assert [pooled_side(s) for s in (28, 32, 8, 6, 5)] == [14, 16, 4, 3, 1]
    # the same x_t gets the same subset in any batch: same seed, same sample
    oracle = build_oracle(OracleConfig(machine="golddiff", subset_min=0.2, subset_max=0.5, **F64), z)
    both = oracle.denoise(x[:2], AB[:2])
    assert torch.allclose(oracle.denoise(x[1:2], AB[1:2]), both[1:2], atol=1e-12)
    with pytest.raises(ValueError, match="subset_min=0.5 must be <= subset_max=0.2"):
        OracleConfig(machine="golddiff", subset_min=0.5, subset_max=0.2)
