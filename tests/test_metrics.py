"""Metrics with known answers: real held-out digits, training images, noise, six-fingered hands, IS samples."""
import math

import pytest
import torch

from ablate.data import DataConfig, finger_components, make_fingers
from ablate.metrics import (ArtefactRate, Coherence, FingerDetector, Fidelity, Novelty, build_suite, classifier_fid,
                            get_classifier, map_iou)
from ablate.oracle import OracleConfig, build_oracle
from ablate.sampling import sample

MNIST14 = DataConfig(name="mnist5k", n=500, image_size=14)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """The suite of 14x14 mnist5k; trains the reference classifier once (about a minute on 2 cores)."""
    return build_suite(MNIST14, cache_dir=tmp_path_factory.mktemp("classifiers"))


def test_classifier_reaches_97_percent_and_is_cached(suite, tmp_path_factory):
    assert suite.classifier.heldout_accuracy >= 0.97
    cache = next(p for p in tmp_path_factory.getbasetemp().rglob("info.json"))
    again = get_classifier(MNIST14, cache.parent.parent)  # loads, does not train
    x = suite.data.heldout[:8]
    assert torch.equal(again.probabilities(x), suite.classifier.probabilities(x))


def test_heldout_digits_are_coherent_clean_faithful_and_novel(suite):
    held = suite.data.heldout
    half = len(held) // 2
    coherence = Coherence(suite.classifier)
    coherence.update(held, suite.data.heldout_labels)
    c = coherence.compute()
    assert c["coherence"] >= 0.95 and c["accuracy"] >= 0.97
    rate = ArtefactRate(suite.detector)
    rate.update(held)
    assert rate.compute()["artefact_rate"] <= 0.02
    novelty = Novelty(suite.data.train)
    novelty.update(held)
    assert novelty.compute()["memorisation_rate"] == 0
    fidelity = Fidelity(suite.data.train, held[:half])
    fidelity.update(held[half:])
    assert 0.9 <= fidelity.compute()["fidelity"] <= 1.1


def test_training_images_are_memorised_and_noise_is_incoherent(suite):
    novelty = Novelty(suite.data.train)
    novelty.update(suite.data.train[:100])
    assert novelty.compute()["memorisation_rate"] == 1.0
    noise = torch.rand(200, 1, 14, 14, generator=torch.Generator().manual_seed(0)) * 2 - 1
    scores = suite.score(noise)
    assert scores["coherence"] < 0.2 and scores["artefact_rate"] > 0.9 and scores["fidelity"] > 2
    real = suite.score(suite.data.heldout[:250])
    assert scores["fid"] > 5 * real["fid"]
    assert real["fidelity"] < 1.2 and real["memorisation_rate"] == 0


def test_is_machine_samples_are_memorised(suite):
    train = suite.data.train[:200]
    out = sample(build_oracle(OracleConfig(machine="ideal"), train), list(range(16)), (1, 14, 14), steps=20).samples
    novelty = Novelty(train)
    novelty.update(out)
    assert novelty.compute()["memorisation_rate"] >= 0.9


def test_six_fingered_hands_are_all_flagged_and_the_map_covers_one_extra_finger():
    six = make_fingers(20, size=28, fingers=6, seed=3)
    five = make_fingers(20, size=28, fingers=5, seed=4)
    detector = FingerDetector(5)
    rate = ArtefactRate(detector)
    rate.update(six)
    assert rate.compute()["artefact_rate"] == 1.0
    assert not detector.flags(five).any() and not detector.maps(five).any()
    maps = detector.maps(six)
    for image, m in zip(six, maps):
        labels, count = finger_components(image)
        assert count == 6
        marked = set(labels[m.numpy()].tolist())
        assert len(marked) == 1 and 0 not in marked  # exactly one whole finger, nothing else
        assert (torch.from_numpy(labels == marked.pop()) == m).all()


def test_map_iou_known_values():
    a = torch.zeros(3, 4, 4, dtype=torch.bool)
    b = a.clone()
    a[0, :2], b[0, 1:3] = True, True  # rows 0-1 vs rows 1-2: IoU 4 / 12
    a[1, 0, 0] = True                 # one map empty: IoU 0
    assert torch.allclose(map_iou(a, b), torch.tensor([1 / 3, 0.0, 1.0], dtype=torch.float64))


def test_classifier_fid_uses_the_projects_features(suite):
    fid = classifier_fid(suite.classifier)
    assert fid.inception.num_features == suite.classifier.cnn.num_features
    fid.update(suite.data.heldout[:250], real=True)
    fid.update(suite.data.heldout[250:], real=False)
    close = float(fid.compute())
    fid.reset()  # keeps the real features (reset_real_features=False)
    fid.update(torch.rand(250, 1, 14, 14, generator=torch.Generator().manual_seed(1)) * 2 - 1, real=False)
    assert float(fid.compute()) > 5 * close


def test_bad_input_is_refused_clearly(suite):
    coherence = Coherence(suite.classifier)
    with pytest.raises(ValueError, match=r"do not fit the 'mnist5k' classifier, which takes \[B, 1, 14, 14\]"):
        coherence.update(torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"takes \[B, 1, 14, 14\]"):
        coherence.update(torch.zeros(2, 3, 14, 14))
    with pytest.raises(ValueError, match="NaN"):
        coherence.update(torch.full((2, 1, 14, 14), math.nan))
    with pytest.raises(ValueError, match="no samples"):
        Coherence(suite.classifier).compute()
    with pytest.raises(ValueError, match="no samples"):
        Novelty(suite.data.train[:10]).compute()
    with pytest.raises(ValueError, match=r"Fidelity takes samples \[B, 1, 14, 14\]"):
        Fidelity(suite.data.train[:10], suite.data.heldout[:4]).update(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="empty batch"):
        suite.score(torch.zeros(0, 1, 14, 14))
    with pytest.raises(ValueError, match="grey images"):
        FingerDetector(5).flags(torch.zeros(2, 3, 28, 28))


def test_fingers_suite_scores_without_a_classifier():
    hands = build_suite(DataConfig(name="fingers", count=300, size=28, fingers=5))
    assert hands.classifier is None
    six = hands.score(make_fingers(16, size=28, fingers=6, seed=5))
    real = hands.score(hands.data.heldout[:16])
    assert six["artefact_rate"] == 1.0 and real["artefact_rate"] == 0.0
    assert six["coherence"] == 1.0 and real["coherence"] == 1.0  # a six-fingered hand is a hand, with an artefact
    assert real["memorisation_rate"] == 0.0 and 0.8 < real["fidelity"] < 1.25


def test_artefact_locations_known_answers():
    from ablate.metrics import artefact_locations, map_iou

    six = make_fingers(12, size=32, fingers=6, seed=3)
    maps = FingerDetector(5).maps(six)
    assert maps.flatten(1).any(1).all()  # every six-fingered hand has an extra finger marked
    same = artefact_locations(maps, maps)  # a network that *is* the oracle
    assert same.hit_rate == 1.0 and same.iou == 1.0 and same.seeds == same.pairs == 12
    # chance: the mean over every mismatched pair (i != j), by brute force
    pairs = [(i, j) for i in range(12) for j in range(12) if i != j]
    brute = [float(map_iou(maps[i:i + 1], maps[j:j + 1])[0]) for i, j in pairs]
    assert same.chance_iou == pytest.approx(sum(brute) / len(brute))
    touch = [bool((torch.nn.functional.max_pool2d(maps[i][None, None].double(), 3, 1, 1)[0, 0] > 0)[maps[j]].any())
             for i, j in pairs]
    assert same.chance_hit_rate == pytest.approx(sum(touch) / len(touch)) and same.chance_iou < 1
    # maps that share nothing but their distribution score at chance: seed i's map against an independent draw
    g = torch.Generator().manual_seed(0)
    blobs = lambda: torch.nn.functional.max_pool2d((torch.rand(400, 1, 16, 16, generator=g) < 0.01).double(), 3, 1,
                                                   1)[:, 0] > 0  # noqa: E731
    a, b = blobs(), blobs()
    indep = artefact_locations(a, b)
    se = math.sqrt(indep.chance_hit_rate * (1 - indep.chance_hit_rate) / indep.seeds)  # binomial, one draw of seeds
    assert abs(indep.hit_rate - indep.chance_hit_rate) < 4 * se and abs(indep.iou - indep.chance_iou) < 0.02
    # within the tolerance: one pixel off is a hit at tolerance 1, a miss at 0
    shifted = maps.roll(1, dims=2) & ~maps
    assert artefact_locations(maps, shifted, tolerance=1).hit_rate == 1.0
    assert artefact_locations(maps, shifted, tolerance=0).hit_rate < 1.0
    nothing = torch.zeros_like(maps)
    assert math.isnan(artefact_locations(nothing, nothing).hit_rate)
    with pytest.raises(ValueError, match="one shape"):
        artefact_locations(maps, maps[:3])


def test_conditional_artefact_rate_counts_wrong_fingers_among_hands_only():
    from ablate.metrics import conditional_artefact_rate

    five = make_fingers(10, size=32, fingers=5, seed=1)
    six = make_fingers(10, size=32, fingers=6, seed=2)
    noise = torch.rand(10, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1  # not hands at all
    assert conditional_artefact_rate(torch.cat([five, noise])) == (0.0, 10)
    rate, hands = conditional_artefact_rate(torch.cat([five, six, noise]))
    assert hands == 20 and rate == pytest.approx(0.5)  # the noise counts neither way
    assert math.isnan(conditional_artefact_rate(noise)[0]) and conditional_artefact_rate(noise)[1] == 0
