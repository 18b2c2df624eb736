"""The discrete machines of theory section 12: exact against a literal brute force on every machine, boundary and
smoothing (with repeated windows), their known answers, and their errors."""
import itertools

import pytest
import torch

from ablate.oracle import OracleConfig, TokenOracle, build_oracle
from brute_force import token_brute_force

V, L = 3, 7


def corpus(seed=0, n=6):
    g = torch.Generator().manual_seed(seed)
    train = torch.randint(0, V, (n, L), generator=g)
    train[3] = train[1]  # a repeated sequence: its windows count twice
    train[4, :4] = train[0, 2:6]  # a window repeated at another position
    return train


def queries(seed=1, b=5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, V, (b, L), generator=g)
    masked = torch.rand(b, L, generator=g) < torch.linspace(0.2, 1.0, b)[:, None]
    x[masked] = V
    x[-1] = V  # one query all masked
    return x


@pytest.mark.parametrize("machine,boundary,k,smoothing", [
    (m, bd, k, s) for m, bd, k, s in itertools.product(("ideal", "ls", "els"), ("zeros", "circular"), (1, 3, 5),
                                                        (0.0, 0.5, 1.0))
    if not (m == "ideal" and k > 1)])
def test_token_machines_match_a_literal_brute_force(machine, boundary, k, smoothing):
    train, x = corpus(), queries()
    oracle = build_oracle(OracleConfig(machine=machine, patch_size=k, boundary=boundary, smoothing=smoothing,
                                       vocab_size=V), train)
    got = oracle.denoise(x, 0.5)
    assert got.shape == (len(x), V, L) and got.dtype == torch.float32
    expect = token_brute_force(x, train, V, machine, k, boundary, smoothing)
    torch.testing.assert_close(got.double(), expect, rtol=0, atol=1e-6)
    torch.testing.assert_close(got.sum(1), torch.ones(len(x), L), rtol=0, atol=1e-6)  # a distribution per position
    again = oracle.denoise(x, 0.5)  # from the cached tables
    assert torch.equal(again, got)


def test_token_machines_on_long_windows_and_the_code_overflow_path(monkeypatch):
    train, x = corpus(2, n=8), queries(3, b=4)
    for machine, boundary, k in (("ls", "zeros", 13), ("ls", "circular", 9), ("els", "circular", 7),
                                 ("els", "zeros", 11)):
        config = OracleConfig(machine=machine, patch_size=k, boundary=boundary, smoothing=0.25, vocab_size=V)
        expect = token_brute_force(x, train, V, machine, k, boundary, 0.25)
        torch.testing.assert_close(build_oracle(config, train).denoise(x, 0.3).double(), expect, rtol=0, atol=1e-6)
        monkeypatch.setattr("ablate.oracle.tokens.MAX_CODE", 2)  # force the exact grouping by torch.unique
        monkeypatch.setattr("ablate.oracle.tokens.MIN_TABLE_QUERIES", 0)
        monkeypatch.setattr("ablate.oracle.tokens.DIRECT_K", 1)
        torch.testing.assert_close(build_oracle(config, train).denoise(x, 0.3).double(), expect, rtol=0, atol=1e-6)
        monkeypatch.undo()


def test_all_masked_circular_els_gives_the_centre_token_frequencies():
    train = corpus()
    k, d = 3, 1
    centres = train[:, d:L - d].flatten()  # the centre of every window inside a training sequence
    freq = torch.bincount(centres, minlength=V).double() / len(centres)
    oracle = build_oracle(OracleConfig(machine="els", patch_size=k, boundary="circular", smoothing=0.0,
                                       vocab_size=V), train)
    out = oracle.denoise(torch.full((2, L), V), 0.0).double()
    torch.testing.assert_close(out, freq[None, :, None].expand(2, V, L), rtol=0, atol=1e-6)


def test_ls_with_the_whole_sequence_window_is_is():
    train, x = corpus(4), queries(5)
    for s in (0.0, 1.0):
        ls = build_oracle(OracleConfig(machine="ls", patch_size=2 * L - 1, boundary="zeros", smoothing=s,
                                       vocab_size=V), train)
        is_ = build_oracle(OracleConfig(machine="ideal", smoothing=s, vocab_size=V), train)
        torch.testing.assert_close(ls.denoise(x, 0.5), is_.denoise(x, 0.5), rtol=0, atol=1e-7)


def test_is_returns_the_training_sequence_a_query_was_cut_from():
    train = torch.tensor([[0, 1, 2, 0, 1, 2, 0], [2, 2, 1, 0, 0, 1, 2]])
    x = train[1:].clone()
    x[0, [0, 3, 5]] = V
    out = build_oracle(OracleConfig(machine="ideal", smoothing=0.0, vocab_size=V), train).denoise(x, 0.9)
    assert torch.equal(out.argmax(1), train[1:]) and torch.allclose(out.max(1).values, torch.ones(1, L))


def test_a_patch_schedule_picks_k_by_alpha():
    train, x = corpus(), queries()
    schedule = {"kind": "power", "k_min": 1, "k_max": 5, "shape": 1.0}
    oracle = build_oracle(OracleConfig(machine="els", patch_size=schedule, boundary="zeros", vocab_size=V), train)
    for alpha, k in ((0.99, 1), (0.01, 5)):
        torch.testing.assert_close(oracle.denoise(x, alpha).double(), token_brute_force(x, train, V, "els", k),
                                   rtol=0, atol=1e-6)
    per_row = torch.tensor([0.99, 0.01, 0.99, 0.01, 0.5])
    mixed = oracle.denoise(x, per_row)
    torch.testing.assert_close(mixed[1], oracle.denoise(x[1:2], 0.01)[0])


@pytest.mark.parametrize("make,message", [
    (lambda: build_oracle(OracleConfig(machine="els", vocab_size=V), torch.rand(4, L)),
     "asks for a token machine, but the training data are float"),
    (lambda: build_oracle(OracleConfig(machine="els"), torch.zeros(4, L, dtype=torch.long)),
     "a token machine needs vocab_size"),
    (lambda: build_oracle(OracleConfig(machine="els", patch_size=3, vocab_size=V), torch.full((2, L), V)),
     "holds token id 3; allowed: 0..2"),
    (lambda: build_oracle(OracleConfig(machine="els", patch_size=3, vocab_size=V), corpus()).denoise(
        torch.full((2, L), V + 1), 0.5), "holds token id 4; allowed: 0..2, and 3 for the mask"),
    (lambda: build_oracle(OracleConfig(machine="els", patch_size=3, vocab_size=V), corpus()).denoise(
        torch.zeros(2, L), 0.5), "dtype torch.float32: a token machine takes int64"),
    (lambda: build_oracle(OracleConfig(machine="els", patch_size=3, vocab_size=V), corpus()).denoise(
        torch.zeros(2, L - 1, dtype=torch.long), 0.5), "length 6 but the training sequences have L=7"),
    (lambda: OracleConfig(machine="wiener", vocab_size=V), "no discrete counterpart; token machines"),
    (lambda: OracleConfig(machine="els", smoothing=0.5), "applies to token machines only"),
    (lambda: OracleConfig(machine="els", vocab_size=V, smoothing=-1.0), "smoothing=-1.0 is out of range"),
    (lambda: OracleConfig(machine="els", vocab_size=V, stride=2), "token machines .vocab_size set. take patch_size"),
    (lambda: build_oracle(OracleConfig(machine="els", patch_size=9, boundary="circular", vocab_size=V), corpus()),
     "patch size 9 is too large"),
])
def test_token_inputs_are_checked_with_one_line_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_the_token_oracle_is_a_denoiser_with_shared_tables():
    train, x = corpus(), queries()
    oracle = build_oracle(OracleConfig(machine="els", patch_size=3, vocab_size=V), train)
    assert isinstance(oracle, TokenOracle) and oracle.data_shape == (L,) and oracle.vocab_size == V
    oracle.denoise(x, 0.5)
    wider = oracle.with_patch_size(5)
    assert wider.tables is oracle.tables  # shared: a calibration over k builds each table once
    torch.testing.assert_close(wider.denoise(x, 0.5).double(), token_brute_force(x, train, V, "els", 5),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("least,direct_k", [(0, 1), (10**9, 1), (0, 99)])
def test_tables_and_direct_counting_agree_with_the_brute_force(monkeypatch, least, direct_k):
    # mask by mask (direct_k = 1) with every group through a table (least = 0) or counted directly (a huge
    # threshold), or every query coded at once (direct_k = 99); a tiny table budget evicts tables between calls
    monkeypatch.setattr("ablate.oracle.tokens.MIN_TABLE_QUERIES", least)
    monkeypatch.setattr("ablate.oracle.tokens.DIRECT_K", direct_k)
    monkeypatch.setattr("ablate.oracle.tokens.TABLE_BYTES", 64)
    train, x = corpus(6, n=9), queries(7, b=6)
    for machine, boundary, k in (("els", "zeros", 5), ("ls", "circular", 3), ("els", "circular", 5)):
        oracle = build_oracle(OracleConfig(machine=machine, patch_size=k, boundary=boundary, smoothing=0.5,
                                           vocab_size=V), train)
        expect = token_brute_force(x, train, V, machine, k, boundary, 0.5)
        for _ in range(2):
            torch.testing.assert_close(oracle.denoise(x, 0.4).double(), expect, rtol=0, atol=1e-6)
        assert len(oracle.tables) <= 1 or least > 0
