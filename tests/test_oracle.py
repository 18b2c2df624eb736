"""The oracle against a brute-force reference and against answers known from the theory."""
import json
import math

import pytest
import torch

from ablate.oracle import OracleConfig, PatchSchedule, build_oracle
from ablate.oracle.baseline import straightforward_els
from brute_force import brute_force

KNOBS = [dict(), dict(shift_radius=1), dict(stride=2), dict(stride=3), dict(position_bandwidth=1.5),
         dict(shift_radius=2, stride=2, position_bandwidth=0.7)]


def oracle(train, labels=None, **kw):
    kw.setdefault("dtype", "float64")
    return build_oracle(OracleConfig(**kw), train, labels)


@pytest.mark.parametrize("boundary", ["zeros", "circular"])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("knobs", KNOBS, ids=lambda d: ",".join(f"{a}={b}" for a, b in d.items()) or "plain")
def test_els_matches_brute_force(tiny_train, boundary, k, knobs):
    train, _ = tiny_train
    x = torch.randn(2, 2, 6, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for ab in (0.3, 0.97):
        ref = brute_force(x, ab, train, "els", k, boundary, knobs.get("shift_radius"), knobs.get("stride", 1),
                          knobs.get("position_bandwidth"))
        got = oracle(train, machine="els", patch_size=k, boundary=boundary, **knobs).denoise(x, ab)
        assert torch.allclose(got, ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize("case", [dict(machine="ideal"), dict(machine="es"), dict(machine="ls", k=3),
                                  dict(machine="ls", k=5, boundary="circular"), dict(machine="ls", k=9)])
def test_other_machines_match_brute_force(tiny_train, case):
    train, _ = tiny_train
    x = torch.randn(2, 2, 6, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    boundary, k = case.get("boundary", "zeros"), case.get("k", 3)
    ref = brute_force(x, 0.6, train, case["machine"], k, boundary)
    got = oracle(train, machine=case["machine"], patch_size=k, boundary=boundary).denoise(x, 0.6)
    assert torch.allclose(got, ref, atol=1e-10, rtol=0)


def test_streamed_keys_equal_cached_keys(tiny_train):
    train, _ = tiny_train
    x = torch.randn(3, 2, 6, 5, dtype=torch.float64)
    cached = oracle(train, patch_size=3, boundary="zeros").denoise(x, 0.5)
    streamed = oracle(train, patch_size=3, boundary="zeros", cache_bytes=0, chunk_bytes=2**16).denoise(x, 0.5)
    assert torch.allclose(cached, streamed, atol=1e-12)


@pytest.mark.parametrize("machine", ["els", "ls", "pca_locality"])
def test_the_gpu_tile_size_gives_the_cpu_answer_and_the_default_follows_the_device(mnist14, machine):
    from ablate.oracle.config import CPU_TILE_BYTES, DEVICE_TILE_BYTES
    x = torch.randn(3, 1, 14, 14, generator=torch.Generator().manual_seed(5))
    default = build_oracle(OracleConfig(machine=machine, patch_size=5), mnist14.train)
    big = build_oracle(OracleConfig(machine=machine, patch_size=5, chunk_bytes=DEVICE_TILE_BYTES), mnist14.train)
    assert default.chunk_bytes == CPU_TILE_BYTES and big.chunk_bytes == DEVICE_TILE_BYTES
    assert default.with_knobs(chunk_bytes=2**16).chunk_bytes == 2**16
    truth = build_oracle(OracleConfig(machine=machine, patch_size=5, dtype="float64"), mnist14.train)
    for ab in (0.9, 0.3):
        exact = truth.denoise(x.double(), ab)
        # the two tilings sum in different orders: each is float32 rounding away from the float64 answer
        # (about 1e-5 here), within the oracle's bar of 1e-4
        assert (default.denoise(x, ab).double() - exact).abs().max() < 1e-4
        assert (big.denoise(x, ab).double() - exact).abs().max() < 1e-4


@pytest.fixture(scope="module")
def mnist14():
    from ablate.data import load_dataset
    return load_dataset("mnist5k", n=300, image_size=14)


@pytest.mark.parametrize("boundary", ["zeros", "circular"])
def test_dedup_and_pruning_stay_within_1e4_of_straightforward(mnist14, boundary):
    """Merged duplicates (+log count) and skipped clusters keep float32 results within 1e-4."""
    x0 = mnist14.heldout[:4]
    g = torch.Generator().manual_seed(3)
    for ab, k in ((0.995, 3), (0.6, 5), (0.1, 9)):
        x_t = ab ** 0.5 * x0 + (1 - ab) ** 0.5 * torch.randn(x0.shape, generator=g)
        ref = straightforward_els(x_t, ab, mnist14.train, k, boundary)
        fast = build_oracle(OracleConfig(patch_size=k, boundary=boundary), mnist14.train).denoise(x_t, ab)
        assert (fast - ref).abs().max() < 1e-4
        # the clamp before exp (the oracle's, and the benchmark's second baseline) changes nothing visible
        clamped = straightforward_els(x_t, ab, mnist14.train, k, boundary, clamp=True)
        assert (clamped - ref).abs().max() < 1e-6


@pytest.mark.parametrize("case", ["digits", "near_ties"])
def test_pruning_reports_a_certified_bound_that_holds(mnist14, monkeypatch, case):
    """Each call reports the largest change its skipped keys could make; the float64 answer with and without
    pruning differ by no more than that, on real digits and on a training set built of near-ties (many
    copies of a few digits, each jittered by 1e-3, so clusters sit at almost equal distances)."""
    from ablate.oracle import engine
    monkeypatch.setattr(engine, "PRUNE_MIN_KEYS", 0)
    train = mnist14.train.double()
    if case == "near_ties":
        g = torch.Generator().manual_seed(1)
        train = (train[:6].repeat(40, 1, 1, 1) + 1e-3 * torch.randn(240, 1, 14, 14, generator=g,
                                                                       dtype=torch.float64)).clamp(-1, 1)
    x0 = mnist14.heldout[:3].double()
    x_t = 0.999 ** 0.5 * x0 + 0.001 ** 0.5 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(2),
                                                        dtype=torch.float64)
    exact = build_oracle(OracleConfig(patch_size=3, boundary="circular", dtype="float64"), train)
    assert exact.denoise(x_t, 0.999) is not None and exact.truncation_bound == 0.0
    bounds = []
    for tol in (1e-2, 1e-4):
        pruned = build_oracle(OracleConfig(patch_size=3, boundary="circular", dtype="float64", prune_tol=tol), train)
        out = pruned.denoise(x_t, 0.999)
        bound = pruned.truncation_bound
        assert (out - exact.denoise(x_t, 0.999)).abs().max() <= bound + 1e-12
        assert 0.0 <= bound <= 2 * tol
        bounds.append(bound)
    assert bounds[0] > 0  # something was skipped, and the bound says how much it could matter


def test_pruning_is_exercised_and_exact(mnist14, monkeypatch):
    """At low noise the bounds skip clusters; the answer equals the unpruned one."""
    from ablate.oracle import engine, prune
    monkeypatch.setattr(engine, "PRUNE_MIN_KEYS", 0)
    x_t = 0.999 ** 0.5 * mnist14.heldout[:4] + 0.001 ** 0.5 * torch.randn(4, 1, 14, 14)
    o = build_oracle(OracleConfig(patch_size=3, boundary="circular", prune_tol=1e-6), mnist14.train)
    calls = []
    original = prune.dense_softmax
    monkeypatch.setattr(prune, "dense_softmax",
                        lambda state, qa, *a: (calls.append(len(qa)), original(state, qa, *a))[1])
    pruned = o.denoise(x_t, 0.999)
    monkeypatch.undo()
    assert calls and max(calls) <= prune.QUERY_TILE  # the tiled (pruned) path ran, not the dense one
    dense = build_oracle(OracleConfig(patch_size=3, boundary="circular", prune_tol=0), mnist14.train).denoise(x_t, 0.999)
    assert (pruned - dense).abs().max() < 1e-4


# ---------------------------------------------------------------- known answers from the theory
def test_tiny_noise_returns_training_image(tiny_train):
    train, _ = tiny_train
    ab = 1 - 1e-6
    x_t = ab ** 0.5 * train[1:2] + (1 - ab) ** 0.5 * torch.randn(1, 2, 6, 5)
    for machine, k in (("ideal", 1), ("ls", 3), ("els", 3)):
        out = oracle(train, machine=machine, patch_size=k).denoise(x_t.double(), ab)
        assert torch.allclose(out, train[1:2].double(), atol=1e-6), machine


def test_circular_els_is_shift_equivariant(tiny_train):
    train, _ = tiny_train
    o = oracle(train, patch_size=3, boundary="circular")
    x = torch.randn(2, 2, 6, 5, dtype=torch.float64)
    shifted = o.denoise(torch.roll(x, (2, 1), (2, 3)), 0.4)
    assert torch.allclose(shifted, torch.roll(o.denoise(x, 0.4), (2, 1), (2, 3)), atol=1e-12)


def test_zero_boundary_knob_limits(tiny_train):
    train, _ = tiny_train
    x = torch.randn(2, 2, 6, 5, dtype=torch.float64)
    els = oracle(train, patch_size=3).denoise(x, 0.5)
    ls = oracle(train, machine="ls", patch_size=3).denoise(x, 0.5)
    assert torch.allclose(oracle(train, patch_size=3, shift_radius=0).denoise(x, 0.5), ls, atol=1e-12)
    assert torch.allclose(oracle(train, patch_size=3, shift_radius=6).denoise(x, 0.5), els, atol=1e-12)
    assert torch.allclose(oracle(train, patch_size=3, stride=1).denoise(x, 0.5), els, atol=1e-12)
    assert torch.allclose(oracle(train, patch_size=3, position_bandwidth=1e6).denoise(x, 0.5), els, atol=1e-9)
    assert torch.allclose(oracle(train, patch_size=3, position_bandwidth=1e-3).denoise(x, 0.5), ls, atol=1e-9)
    assert not torch.allclose(els, ls, atol=1e-3)  # the limits are different machines


def test_ls_with_whole_image_patches_is_ideal():
    train = torch.rand(4, 1, 5, 5, dtype=torch.float64) * 2 - 1
    x = torch.randn(2, 1, 5, 5, dtype=torch.float64)
    ls = oracle(train, machine="ls", patch_size=9).denoise(x, 0.3)
    assert torch.allclose(ls, oracle(train, machine="ideal").denoise(x, 0.3), atol=1e-10)


def test_es_returns_nearest_circular_shift():
    z = torch.rand(1, 1, 5, 6, dtype=torch.float64) * 2 - 1
    ab = 1 - 1e-5
    target = torch.roll(z, (3, 2), (2, 3))
    x_t = ab ** 0.5 * target + (1 - ab) ** 0.5 * 0.1 * torch.randn_like(target)
    assert torch.allclose(oracle(z, machine="es").denoise(x_t, ab), target, atol=1e-6)


def test_conditional_restricts_to_class(tiny_train):
    train, labels = tiny_train
    o = oracle(train, labels, machine="ideal")
    x = torch.zeros(2, 2, 6, 5, dtype=torch.float64)
    out = o.denoise(x, 0.5, labels=torch.tensor([1, 0]))
    assert torch.allclose(out[0], train[1].double())  # class 1 has a single image
    only0 = oracle(train[labels == 0], machine="ideal").denoise(x[1:], 0.5)
    assert torch.allclose(out[1:], only0)


def test_patch_schedule_picks_k_per_noise_level(tiny_train, tmp_path):
    train, _ = tiny_train
    sched = PatchSchedule.from_list([1, 3, 3, 5])
    path = tmp_path / "schedule.json"
    sched.save(path, steps=4)
    loaded = PatchSchedule.load(path)
    assert [loaded.k_at(a) for a in sched.alpha_bars] == [1, 3, 3, 5]
    assert json.loads(path.read_text())["k"] == [1, 3, 3, 5]
    x = torch.randn(2, 2, 6, 5, dtype=torch.float64)
    ab = torch.tensor([sched.alpha_bars[0], sched.alpha_bars[3]], dtype=torch.float64)
    out = oracle(train, patch_size=loaded).denoise(x, ab)
    assert torch.allclose(out[0], oracle(train, patch_size=1).denoise(x[:1], ab[0])[0], atol=1e-12)
    assert torch.allclose(out[1], oracle(train, patch_size=5).denoise(x[1:], ab[1])[0], atol=1e-12)
    power = PatchSchedule("power", k_min=3, k_max=15, shape=1.0)
    assert power.k_at(0.999) == 3 and power.k_at(1e-4) == 15


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kw, message", [
    (dict(patch_size=4), "odd"), (dict(patch_size=0), "too small"), (dict(machine="gls"), "machine"),
    (dict(boundary="reflect"), "boundary"), (dict(stride=0), "stride"), (dict(shift_radius=-1), "shift_radius"),
    (dict(position_bandwidth=0.0), "position_bandwidth"), (dict(machine="ls", shift_radius=1), "'els', 'equivariant_pca_locality' or 'els_mixture' only"),
])
def test_invalid_config_is_a_clear_error(kw, message):
    with pytest.raises(ValueError, match=message):
        OracleConfig(**kw)


def test_invalid_inputs_are_clear_errors(tiny_train):
    train, labels = tiny_train
    with pytest.raises(ValueError, match="allowed: odd k <= 5"):
        build_oracle(OracleConfig(patch_size=7, boundary="circular"), train)
    with pytest.raises(ValueError, match="allowed: odd k <= 9"):
        build_oracle(OracleConfig(machine="ls", patch_size=11), train)
    with pytest.raises(ValueError, match="empty"):
        build_oracle(OracleConfig(), train[:0])
    o = build_oracle(OracleConfig(patch_size=3), train)
    x = torch.randn(1, 2, 6, 5)
    for ab in (0.0, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"\(0, 1\)"):
            o.denoise(x, ab)
    with pytest.raises(ValueError, match="must match"):
        o.denoise(torch.randn(1, 1, 6, 5), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        o.denoise(x.clone().fill_(float("nan")), 0.5)
    with pytest.raises(ValueError, match="train_labels"):
        o.denoise(x, 0.5, labels=torch.tensor([0]))
    with pytest.raises(ValueError, match="no training images"):
        build_oracle(OracleConfig(patch_size=3), train, labels).denoise(x, 0.5, labels=torch.tensor([7]))
    with pytest.raises(ValueError, match="NaN"):
        build_oracle(OracleConfig(), torch.full((1, 1, 4, 4), float("nan")))


def test_cache_budget_covers_all_groups_together(tiny_train):
    """cache_bytes bounds the key sets of every group together (it was once checked per group, and 729
    groups of k=27 filled 23 GB); groups past the budget are streamed, with the same answer."""
    train, _ = tiny_train
    x = torch.randn(2, 2, 6, 5, dtype=torch.float64)
    full = oracle(train, patch_size=3, boundary="zeros")
    budget = 6000  # bytes: room for a few of the 9 boundary groups of k=3 on 6x5 images
    part = oracle(train, patch_size=3, boundary="zeros", cache_bytes=budget)
    assert torch.allclose(part.denoise(x, 0.5), full.denoise(x, 0.5), atol=1e-12, rtol=0)
    assert 0 < len(part.engine.keysets) < len(full.engine.keysets) == 9
    assert part.engine.cache_used[0] <= budget


def test_cache_evicts_other_patch_sizes_least_recently_used(tiny_train):
    """A budget with room for one patch size's key sets: moving to another k evicts the old k's sets (a
    sampler's schedule visits one k for a few steps, then the next), and coming back rebuilds them; the
    answers stay those of an oracle that keeps everything."""
    train, _ = tiny_train
    x = torch.randn(2, 2, 6, 5, dtype=torch.float64)
    full = oracle(train, patch_size=3, boundary="circular")
    full5 = full.with_patch_size(5)
    want3, want5 = full.denoise(x, 0.5), full5.denoise(x, 0.5)
    both = full.engine.keysets[(((3, 3), None), -1, 0)].nbytes + full.engine.keysets[(((5, 5), None), -1, 0)].nbytes
    part = oracle(train, patch_size=3, boundary="circular", cache_bytes=both - 1)  # no room for both
    part5 = part.with_patch_size(5)
    assert torch.allclose(part.denoise(x, 0.5), want3, atol=1e-12, rtol=0)
    assert list(part.engine.keysets) == [(((3, 3), None), -1, 0)]
    assert torch.allclose(part5.denoise(x, 0.5), want5, atol=1e-12, rtol=0)
    assert list(part.engine.keysets) == [(((5, 5), None), -1, 0)]  # k=3 evicted for k=5 (the cache is shared by both)
    assert part.engine.cache_used[0] == part.engine.keysets[(((5, 5), None), -1, 0)].nbytes <= part.config.cache_bytes
    assert torch.allclose(part.denoise(x, 0.5), want3, atol=1e-12, rtol=0)
    assert list(part.engine.keysets) == [(((3, 3), None), -1, 0)]


@pytest.mark.parametrize("positions", [torch.arange(10, 25).reshape(3, 5)[:, 1:4].flatten(),  # a rectangle
                                       torch.tensor([0, 7, 8, 29, 3])])                       # not one
def test_patches_at_rectangle_and_gather_agree_and_fill_a_wider_buffer(positions):
    """patches_at copies rectangles of positions as one strided slice, straight into the first columns of
    a wider buffer; any other set of positions is gathered: both give each position's own patch."""
    from ablate.oracle.patches import pad, patches_at, rectangle

    imgs = torch.randn(3, 2, 6, 5)
    k, W = 3, 5
    padded = pad(imgs, k // 2, "zeros")
    want = torch.stack([torch.stack([padded[n, :, p // W:p // W + k, p % W:p % W + k].flatten()
                                     for p in positions.tolist()]) for n in range(3)])
    assert (rectangle(positions, W) is not None) == (len(positions) == 9)
    assert torch.equal(patches_at(padded, k, positions, W), want)
    buf = torch.full((3 * len(positions), 2 * k * k + 2), 7.0)
    patches_at(padded, k, positions, W, out=buf[:, :-2])
    assert torch.equal(buf[:, :-2], want.reshape(-1, 2 * k * k)) and bool((buf[:, -2:] == 7.0).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_group_rows_merges_exactly_equal_rows(dtype, monkeypatch):
    """Known answer: rows drawn from 5 distinct patterns (one differing only in the last bit, one a -0.0)
    group by pattern; forcing every hash to collide takes the raw-bytes path and gives the same answer."""
    from ablate.oracle import keys
    g = torch.Generator().manual_seed(0)
    patterns = torch.randn(5, 9, generator=g, dtype=dtype)
    patterns[1] = patterns[0]
    patterns[1, -1] = torch.nextafter(patterns[0, -1], torch.tensor(math.inf, dtype=dtype))
    patterns[2] = patterns[3]
    patterns[2, 0], patterns[3, 0] = 0.0, -0.0  # equal as numbers, different bits: kept apart
    which = torch.randint(0, 5, (200,), generator=g)
    which[:5] = torch.arange(5)  # every pattern occurs; its first occurrence is row p
    rows = patterns[which]
    for forced in (False, True):
        if forced:
            monkeypatch.setattr(keys, "row_hashes", lambda x: torch.zeros(len(x), dtype=torch.int64))
        first, inverse, counts = keys.group_rows(rows, chunk_rows=7)
        assert sorted(first.tolist()) == [0, 1, 2, 3, 4]
        assert torch.equal(rows[first][inverse], rows)  # every row equals its group's first row ...
        assert torch.equal(which[first][inverse], which)  # ... and is the same pattern
        assert sorted(counts.tolist()) == sorted(torch.bincount(which).tolist())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels", [1, 3])
def test_fused_fold_equals_torch_fold(dtype, channels, monkeypatch):
    """The fused CPU kernel and the plain torch ops fold the same tiles into the same state: several
    chunks, a slice of the queries, logits spread wide enough that most terms hit the exp floor."""
    from ablate.oracle import fused
    from ablate.oracle.softmax import StreamingSoftmax
    if fused.kernel() is None:
        pytest.skip("the fused kernel could not be built here (see the warning); the torch path is in use")
    g = torch.Generator().manual_seed(1)
    tiles = [(torch.randn(50, 70, generator=g, dtype=dtype) * 60, torch.rand(70, channels, generator=g, dtype=dtype))
             for _ in range(4)]
    states = []
    for use_kernel in (True, False):
        if not use_kernel:
            monkeypatch.setattr(fused, "_module", None)
        state = StreamingSoftmax((60,), channels, dtype, torch.device("cpu"))
        for i, (logits, values) in enumerate(tiles):
            state.add(logits.clone(), values, slice(10, 60) if i % 2 else slice(0, 50))
        states.append(state)
    fast, plain = states
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    assert torch.allclose(fast.m, plain.m) and torch.allclose(fast.l, plain.l, rtol=tol)
    assert torch.allclose(fast.result(), plain.result(), rtol=tol, atol=tol)


def test_fused_kernel_cache_key_follows_what_makes_the_binary_differ(monkeypatch):
    import torch

    from ablate.oracle import fused

    tag = fused.build_tag()
    assert tag == fused.build_tag() and len(tag) == 12  # stable within one environment
    monkeypatch.setattr(torch, "__version__", "9.9.9+other")
    assert fused.build_tag() != tag  # another torch build never loads (or rebuilds over) this one's binary
    monkeypatch.undo()
    monkeypatch.setattr(fused, "_SOURCE", fused._SOURCE + "\n// changed")
    assert fused.build_tag() != tag
    monkeypatch.undo()
    monkeypatch.setattr(fused, "CFLAGS", fused.CFLAGS + ["-O2"])
    assert fused.build_tag() != tag


@pytest.mark.parametrize("boundary", ["zeros", "circular"])
def test_ls_box_sums_equal_the_patch_path_over_several_chunks(mnist14, boundary):
    """LS reads its logits off integral images (Engine.local_box); the patch path cuts every patch. Same
    answer in float64 for square and rectangular extents, with tiles that split the 300 images (about 50 a tile)."""
    o = build_oracle(OracleConfig(machine="ls", patch_size=3, boundary=boundary, dtype="float64",
                                  chunk_bytes=2**16), mnist14.train)
    x = torch.randn(3, 1, 14, 14, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    a = torch.tensor([0.95, 0.7, 0.3], dtype=torch.float64)
    b2 = 1 - a * a
    for k in ((5, 5), (3, 7), (1, 1)):
        fast = o.engine.local_box(x, a, b2, k, o.images)
        patches = o.engine.position_aware(x, a, b2, k, o.images, local_only=True)
        assert torch.allclose(fast, patches, atol=1e-12, rtol=0)
