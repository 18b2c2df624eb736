"""1-D data (theory section 11): the pulses rule is exact, readers read what they are given, bad input is a
clear error."""
import math

import numpy as np
import pytest
import torch

from ablate.data import DataConfig, count_pulses, load_dataset, make_pulses
from ablate.data.signals import THRESHOLD, pulse_runs


@pytest.mark.parametrize("n, length, pulses", [(3000, 64, 3), (500, 128, 5), (500, 32, 2), (500, 48, 1), (500, 150, 2)])
def test_count_pulses_is_exact_on_every_generated_signal(n, length, pulses):
    x = make_pulses(n, length=length, pulses=pulses, seed=7)
    assert x.shape == (n, 1, length) and x.dtype == torch.float32
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    counts = [count_pulses(s) for s in x]
    assert counts == [pulses] * n
    assert torch.equal(x, make_pulses(n, length=length, pulses=pulses, seed=7))  # same seed, same signals


def test_count_pulses_sees_an_extra_pulse_and_a_merged_pair():
    base = make_pulses(20, length=64, pulses=2, seed=3)
    x = torch.arange(64, dtype=torch.float32)
    for s in base:
        runs = pulse_runs(s)
        gap_centre = (runs[0][1] + runs[1][0]) / 2  # between the two pulses, far from both
        extra = s[0] + 1.2 * torch.exp(-((x - gap_centre) ** 2) / 2)
        assert count_pulses(extra) == 3
        bridged = s[0].clone()
        bridged[runs[0][0]:runs[1][1]] = 0.5  # one wide plateau over both
        assert count_pulses(bridged) == 1
    flat = torch.full((64,), THRESHOLD - 0.1)
    assert count_pulses(flat) == 0 and count_pulses(flat + 0.2) == 1


def test_pulses_dataset_and_its_bad_sizes():
    d = load_dataset("pulses", n=100, count=300, length=96, pulses=4)
    assert d.shape == (1, 96) and len(d.train) == 100 and d.num_classes is None
    assert all(count_pulses(s) == 4 for s in d.train)
    with pytest.raises(ValueError, match="pulses=9 does not fit 64 samples; allowed: 1..5"):
        make_pulses(2, length=64, pulses=9)
    with pytest.raises(ValueError, match="length=20 is too short"):
        make_pulses(2, length=20)
    with pytest.raises(ValueError, match="count_pulses takes one signal"):
        count_pulses(torch.zeros(2, 3, 5))


def test_ucr_sets_ship_inside_aeon_and_are_scaled_and_resampled():
    d = load_dataset("gunpoint", length=64)
    assert d.shape == (1, 64) and d.num_classes == 2 and len(d.train) + len(d.heldout) == 200
    assert float(d.train.min()) == -1.0 and float(d.train.max()) == 1.0
    native = load_dataset("gunpoint")
    assert native.shape == (1, 150)
    # linear resampling keeps the end points of every series
    assert torch.allclose(native.train[:, :, [0, -1]], d.train[:, :, [0, -1]], atol=1e-6)


def write_ts(path, series, labels):
    lines = ["@problemName tiny", "@timeStamps false", "@missing false", "@univariate true", "@equalLength true",
             f"@seriesLength {len(series[0])}", f"@classLabel true {' '.join(sorted(set(labels)))}", "@data"]
    lines += [",".join(f"{v:g}" for v in s) + f":{lab}" for s, lab in zip(series, labels)]
    path.write_text("\n".join(lines) + "\n")


def test_the_ucr_reader_reads_a_file_it_is_given(tmp_path):
    series = [[math.sin(i / 2 + j) * (j + 1) for i in range(12)] for j in range(6)]
    labels = ["b", "a", "b", "a", "b", "a"]
    write_ts(tmp_path / "tiny.ts", series, labels)
    d = load_dataset(DataConfig(name="ucr", path=str(tmp_path / "tiny.ts"), heldout_fraction=0.0))
    assert d.shape == (1, 12) and d.num_classes == 2 and len(d.train) == 6
    x = np.asarray(series)
    want = 2 * (x - x.min(1, keepdims=True)) / (x.max(1, keepdims=True) - x.min(1, keepdims=True)) - 1
    assert torch.allclose(d.train[:, 0].double(), torch.from_numpy(want), atol=1e-6)
    assert d.train_labels.tolist() == [1, 0, 1, 0, 1, 0]


def test_bad_signal_files_and_configs_are_clear_errors(tmp_path):
    (tmp_path / "bad.ts").write_text("@problemName x\n@data\nnot,a,number:q\n")
    with pytest.raises(ValueError, match="cannot read .*bad.ts.* as a .ts series file"):
        load_dataset(DataConfig(name="ucr", path=str(tmp_path / "bad.ts")))
    with pytest.raises(ValueError, match="does not exist"):
        load_dataset(DataConfig(name="ucr", path=str(tmp_path / "missing.ts")))
    with pytest.raises(ValueError, match="reads from disk: set path="):
        DataConfig(name="ucr")
    with pytest.raises(ValueError, match="image_size applies to images; 'pulses' holds signals: set length="):
        DataConfig(name="pulses", image_size=14)
    with pytest.raises(ValueError, match="length applies to signals .* 'mnist5k' holds images"):
        DataConfig(name="mnist5k", length=64)
    with pytest.raises(ValueError, match="dataset name='gunpnt' is not allowed"):
        DataConfig(name="gunpnt")


def test_the_pulse_detector_flags_wrong_counts_and_maps_the_extra_pulse():
    from ablate.metrics import ArtefactRate
    from ablate.metrics.artefacts import PulseDetector, detector_for

    good = make_pulses(6, length=64, pulses=3, seed=2)
    bad = good.clone()
    x = torch.arange(64, dtype=torch.float32)
    runs = pulse_runs(bad[0])
    gap = (runs[0][1] + runs[1][0]) / 2
    bad[0, 0] += 1.1 * torch.exp(-((x - gap) ** 2) / (2 * 0.8 ** 2))  # a narrow fourth pulse
    third = pulse_runs(bad[1])[2]
    bad[1, 0, third[0]:third[1]] = -0.8  # signal 1's third pulse erased
    detector = detector_for("pulses", pulses=3)
    assert isinstance(detector, PulseDetector)
    assert detector.flags(good).tolist() == [False] * 6
    assert detector.flags(bad).tolist() == [True, True] + [False] * 4
    maps = detector.maps(bad)
    extra = [i for i, (a, b) in enumerate(pulse_runs(bad[0])) if a <= gap < b][0]
    a, b = pulse_runs(bad[0])[extra]
    assert maps.shape == (6, 64) and maps[0].nonzero().flatten().tolist() == list(range(a, b))
    assert not maps[1:].any()  # a missing pulse has no place to mark
    rate = ArtefactRate(detector)
    rate.update(bad)
    assert float(rate.compute()["artefact_rate"]) == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match=r"one-channel signals \[B, 1, L\]"):
        detector.flags(torch.zeros(2, 1, 8, 8))
