"""The run planner (ablate.oracle.plan): key counts with known answers, the distinct-key estimate at its two
extremes, and the memory refusal before any work is done."""
from __future__ import annotations

import math

import pytest
import torch

from ablate.oracle import OracleConfig, build_oracle
from ablate.oracle import plan
from ablate.oracle.patches import shared_key_groups
from ablate.sampling import sample


def noise_images(n, size=10, seed=0):
    """Images whose patches are all distinct (continuous noise): nothing merges."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g) * 2 - 1


def test_circular_logit_count_is_batch_pixels_times_inside_patches():
    N, S, k, B = 5, 10, 3, 2
    o = build_oracle(OracleConfig(patch_size=k, boundary="circular"), noise_images(N, S))
    est = plan.estimate(o, [(0.5, B, None)], timing=False)
    d = k // 2
    # every pixel sees every patch lying inside every training image (theory section 4)
    assert est.logits == B * S * S * N * (S - 2 * d) ** 2
    assert math.isnan(est.seconds)


def test_zeros_logit_count_is_the_sum_over_boundary_classes_of_their_squares():
    N, S, k, B = 4, 9, 5, 3
    o = build_oracle(OracleConfig(patch_size=k, boundary="zeros"), noise_images(N, S))
    est = plan.estimate(o, [(0.5, B, None)], timing=False)
    d = k // 2
    # rows fall into d top classes, d bottom classes (one row each) and one interior class of S - 2d rows;
    # a pixel sees its own class's positions, so a class of r rows x c columns adds (r c)^2
    sizes = [1] * (2 * d) + [S - 2 * d]
    assert est.logits == B * N * sum((r * c) ** 2 for r in sizes for c in sizes)


def test_after_a_call_the_plan_counts_the_cached_distinct_keys_exactly():
    images = noise_images(3, 8)
    o = build_oracle(OracleConfig(patch_size=3, boundary="circular"), images)
    x = torch.randn(2, 1, 8, 8)
    o.denoise(x, 0.5)
    distinct = sum(len(s.augmented) for s in o.engine.keysets.values())
    est = plan.estimate(o, [(0.5, 2, None)])
    assert est.logits == 2 * 64 * distinct
    assert est.seconds > 0 and math.isfinite(est.seconds)


def test_distinct_estimate_is_exact_for_copies_and_for_all_distinct_patches():
    one = noise_images(1, 8)
    k = (3, 3)
    copies = build_oracle(OracleConfig(patch_size=3, boundary="circular"), one.repeat(200, 1, 1, 1))
    group = shared_key_groups(8, 8, k, "circular")
    distinct, _, _ = plan._distinct(copies, k, copies.images, group[0])
    assert distinct == 36  # one image's 6 x 6 inside patches, however many copies
    fresh = build_oracle(OracleConfig(patch_size=3, boundary="circular"), noise_images(200, 8))
    distinct, _, _ = plan._distinct(fresh, k, fresh.images, group[0])
    assert distinct == pytest.approx(200 * 36)  # seen once in the sample: they grow with N


def test_a_job_over_the_memory_budget_is_refused_before_any_work(monkeypatch):
    o = build_oracle(OracleConfig(patch_size=5, boundary="zeros"), noise_images(20, 12))
    calls = []
    real = o._denoise
    monkeypatch.setattr(o, "_denoise", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setenv("ABLATE_MEMORY_BUDGET", "1M")
    with pytest.raises(MemoryError, match=r"needs about .* GiB .* only 0\.00 GiB is available; lower "
                                          r"OracleConfig\.cache_bytes"):
        sample(o, range(2), (1, 12, 12), steps=3)
    assert calls == []  # nothing ran
    monkeypatch.setenv("ABLATE_MEMORY_BUDGET", "8G")
    out = sample(o, range(2), (1, 12, 12), steps=3).samples
    assert out.shape == (2, 1, 12, 12) and len(calls) == 3


def test_a_bad_budget_says_what_a_size_looks_like(monkeypatch):
    monkeypatch.setenv("ABLATE_MEMORY_BUDGET", "lots")
    with pytest.raises(ValueError, match="ABLATE_MEMORY_BUDGET='lots' is not a size"):
        plan.env_budget()


def test_sampling_with_progress_prints_the_plan_and_the_time_it_took(capsys):
    o = build_oracle(OracleConfig(patch_size=3, boundary="zeros"), noise_images(10, 8))
    sample(o, range(2), (1, 8, 8), steps=4, progress=True)
    err = capsys.readouterr().err
    assert "ddim sampling, 2 seeds: planned about" in err
    assert "ddim sampling, 2 seeds: took" in err and "planned" in err


def test_a_job_over_budget_only_by_its_key_cache_shrinks_the_cache_and_gives_the_same_samples(monkeypatch):
    """The key cache is a speed-up: a job that fits without it runs with a smaller cache, not a MemoryError."""
    images = noise_images(20, 12)
    free = sample(build_oracle(OracleConfig(patch_size=5, boundary="zeros"), images), range(2), (1, 12, 12), steps=3)
    o = build_oracle(OracleConfig(patch_size=5, boundary="zeros"), images)
    est = o.plan([0.2, 0.5, 0.9], 2, budget=2**40)
    cache = est.parts["key cache"]
    assert cache > 0
    monkeypatch.setenv("ABLATE_MEMORY_BUDGET", str(int(est.peak_bytes - cache // 2)))
    with pytest.warns(UserWarning, match="key cache of this machine goes from"):
        out = sample(o, range(2), (1, 12, 12), steps=3).samples
    assert o.config.cache_bytes < OracleConfig().cache_bytes
    torch.testing.assert_close(out, free.samples, rtol=0, atol=1e-5)


def test_release_frees_the_key_cache_shared_by_copies_and_the_answers_do_not_change():
    images = noise_images(6, 10)
    o = build_oracle(OracleConfig(patch_size=3, boundary="zeros"), images)
    five = o.with_patch_size(5)  # shares o's caches
    x = torch.randn(2, 1, 10, 10, generator=torch.Generator().manual_seed(1))
    before3, before5 = o.denoise(x, 0.4), five.denoise(x, 0.4)
    held = o.engine.cache_used[0]
    assert held > 0 and held == sum(s.nbytes for s in o.engine.keysets.values())
    assert five.release() == held
    assert not o.engine.keysets and o.engine.cache_used[0] == 0  # the copy's release freed the original's too
    assert o.release() == 0
    torch.testing.assert_close(o.denoise(x, 0.4), before3, rtol=0, atol=0)
    torch.testing.assert_close(five.denoise(x, 0.4), before5, rtol=0, atol=0)


def test_a_league_holds_one_machines_key_cache_at_a_time():
    """run_agreement releases each machine after its turn: while the second samples, the first holds nothing."""
    from ablate.evaluation.agreement import run_agreement
    from ablate.sampling import release

    images = noise_images(6, 10)
    first = build_oracle(OracleConfig(patch_size=3, boundary="zeros"), images)
    second = build_oracle(OracleConfig(patch_size=5, boundary="zeros"), images)
    held_by_first = []

    class Watched:  # the real second oracle, noting what the first holds on each of its calls
        def denoise(self, x_t, alpha_bar, labels=None):
            held_by_first.append(first.engine.cache_used[0])
            return second.denoise(x_t, alpha_bar, labels)

        def release(self):
            return release(second)

    network = build_oracle(OracleConfig(patch_size=7, boundary="zeros"), images)
    run_agreement(network, {"first": first, "second": Watched()}, [0, 1], (1, 10, 10), "ddim", steps=3)
    assert held_by_first and set(held_by_first) == {0}
    assert second.engine.cache_used[0] == 0 and not second.engine.keysets
    assert network.engine.cache_used[0] > 0  # the network is not a league machine: run_agreement leaves it be
