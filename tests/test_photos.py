"""Natural RGB images from scikit-image's package data (issue #30): the crops are the picture's windows, the split
is by source picture, and the oracle works on them as on digits."""
import torch

from ablate.data import load_dataset
from ablate.data.photos import CROP, HELD_OUT, PICTURES, SHORT_SIDE, STRIDE, _picture, crops
from ablate.oracle import OracleConfig, build_oracle


def test_crops_are_the_windows_row_by_row():
    image = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(2, 4, 6)
    out = crops(image, crop=2, stride=2)
    assert out.shape == (6, 2, 2, 2)
    expected = [image[:, r:r + 2, c:c + 2] for r in (0, 2) for c in (0, 2, 4)]
    assert all(torch.equal(a, b) for a, b in zip(out, expected))
    assert crops(image, crop=3, stride=1).shape == (8, 2, 3, 3)  # (4 - 3 + 1) x (6 - 3 + 1)


def test_photos_split_by_source_picture():
    d = load_dataset("photos")
    assert d.train.shape[1:] == (3, CROP, CROP) and d.train_labels is None
    assert d.train.min() >= -1 and d.train.max() <= 1

    def count(name):
        h, w = _picture(name).shape[:2]
        s = SHORT_SIDE / min(h, w)
        return ((round(h * s) - CROP) // STRIDE + 1) * ((round(w * s) - CROP) // STRIDE + 1)

    assert len(d.heldout) == sum(count(n) for n in HELD_OUT)
    assert len(d.train) == sum(count(n) for n in PICTURES if n not in HELD_OUT)
    # no held-out crop is a training crop (they come from other pictures)
    flat_train, flat_held = d.train.flatten(1), d.heldout.flatten(1)
    assert torch.cdist(flat_held, flat_train).min() > 0
    sub = load_dataset("photos", n=100)
    assert len(sub.train) == 100 and torch.equal(sub.heldout, d.heldout)


def test_faces_and_the_oracle_on_photos():
    f = load_dataset("faces")
    assert len(f.train) + len(f.heldout) == 100 and f.train.shape[1:] == (1, 25, 25)
    d = load_dataset("photos", n=40)
    ideal = build_oracle(OracleConfig(machine="ideal"), d.train)
    x0 = d.train[7:8]
    a = torch.tensor([0.9999], dtype=torch.float64)
    x_t = a.sqrt().float() * x0 + (1 - a).sqrt().float() * torch.randn_like(x0) * 0.01
    assert torch.allclose(ideal.denoise(x_t, a), x0, atol=1e-4)  # at tiny noise the ideal machine returns it
