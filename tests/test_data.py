"""Datasets: known sizes, ranges, splits; readers round-trip files the test writes itself."""
import pickle

import numpy as np
import pytest
import torch

from ablate.data import DataConfig, count_fingers, finger_components, load_dataset, make_fingers
from ablate.data.fingers import draw_hand
from ablate.data.readers import read_idx, write_idx


def test_mnist5k_has_5000_digits_500_per_class_in_range():
    d = load_dataset("mnist5k")
    images = torch.cat([d.train, d.heldout])
    labels = torch.cat([d.train_labels, d.heldout_labels])
    assert images.shape == (5000, 1, 28, 28)
    assert torch.bincount(labels).tolist() == [500] * 10
    assert images.min() == -1.0 and images.max() == 1.0
    assert len(d.heldout) == 500 and torch.bincount(d.heldout_labels).tolist() == [50] * 10


def test_split_is_deterministic_and_disjoint():
    a, b = load_dataset("mnist5k"), load_dataset("mnist5k")
    assert torch.equal(a.train, b.train) and torch.equal(a.heldout, b.heldout)
    train_set = {t.numpy().tobytes() for t in a.train}
    assert sum(h.numpy().tobytes() in train_set for h in a.heldout) < 5  # MNIST has a few exact duplicates


def test_balanced_subset_and_resizing():
    d = load_dataset("mnist5k", n=200, image_size=14)
    assert d.train.shape == (200, 1, 14, 14)
    assert torch.bincount(d.train_labels).tolist() == [20] * 10
    full = load_dataset("mnist5k")
    pooled = torch.nn.functional.avg_pool2d(full.train, 2)
    first = (pooled - d.train[0]).flatten(1).abs().amax(1).min()
    assert first < 1e-6  # 14x14 is an exact 2x2 average of a training digit
    padded = load_dataset("mnist5k", n=10, image_size=32, resize="pad")
    assert padded.train.shape == (10, 1, 32, 32) and (padded.train[..., :2, :] == -1).all()


def test_digits_is_tiny_and_labelled():
    d = load_dataset("digits")
    assert torch.cat([d.train, d.heldout]).shape == (1797, 1, 8, 8)
    assert d.num_classes == 10 and -1 <= d.train.min() and d.train.max() <= 1


def test_fingers_counter_is_exact_on_thousands_of_generated_hands():
    hands = make_fingers(2000, seed=11)
    assert hands.shape == (2000, 1, 28, 28) and hands.min() >= -1 and hands.max() <= 1
    assert all(count_fingers(h) == 5 for h in hands)
    for f in (1, 3, 6, 7):
        assert all(count_fingers(h) == f for h in make_fingers(200, fingers=f, seed=f))
    assert torch.equal(make_fingers(3, seed=4), make_fingers(3, seed=4))


def test_fingers_antialiased_and_extra_finger_is_found():
    hand = make_fingers(1, seed=0)[0]
    assert ((hand > -1) & (hand < 1)).any()  # antialiased edges
    angles = np.radians([-100, -50, 0, 50, 100, 150])
    img = draw_hand(28, (14.0, 14.0), 0.0, angles, [10.0] * 6) * 2 - 1
    labels, count = finger_components(img)
    assert count == 6
    # the sixth finger (pointing at 150 degrees) is one of the labelled parts
    tip = (int(round(14 + 10 * np.sin(np.radians(150)))), int(round(14 + 10 * np.cos(np.radians(150)))))
    assert labels[tip] > 0


def test_idx_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(7, 5, 4), dtype=np.uint8)
    labels = np.arange(7, dtype=np.uint8) % 3
    write_idx(tmp_path / "img.idx.gz", images)
    write_idx(tmp_path / "lab.idx", labels)
    assert np.array_equal(read_idx(tmp_path / "img.idx.gz"), images)
    d = load_dataset(DataConfig(name="idx", path=str(tmp_path / "img.idx.gz"), labels_path=str(tmp_path / "lab.idx"),
                                heldout_fraction=0.0))
    assert d.train.shape == (7, 1, 5, 4)
    assert torch.allclose(d.train[:, 0], torch.from_numpy(images / 127.5 - 1).float(), atol=1e-6)
    assert d.train_labels.tolist() == labels.tolist()


def test_corrupt_idx_is_a_clear_error(tmp_path):
    images = np.zeros((4, 3, 3), dtype=np.uint8)
    write_idx(tmp_path / "img.idx", images)
    data = (tmp_path / "img.idx").read_bytes()
    (tmp_path / "short.idx").write_bytes(data[:-5])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short.idx")
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02" + data[2:])
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad.idx")


def test_cifar10_batches(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, size=(6, 3072), dtype=np.uint8)
    with open(tmp_path / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": data, b"labels": [0, 1, 2, 3, 4, 5]}, fh)
    d = load_dataset(DataConfig(name="cifar10", path=str(tmp_path), heldout_fraction=0.0, channels=3))
    assert d.train.shape == (6, 3, 32, 32)
    assert torch.allclose(d.train[2, 1], torch.from_numpy(data[2, 1024:2048].reshape(32, 32) / 127.5 - 1).float(), atol=1e-6)
    (tmp_path / "data_batch_2").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="CIFAR-10"):
        load_dataset(DataConfig(name="cifar10", path=str(tmp_path)))


def test_image_folder(tmp_path):
    from PIL import Image
    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.fromarray(np.full((10, 12, 3), 255 * (cls == "dogs"), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    d = load_dataset(DataConfig(name="folder", path=str(tmp_path), size=8, channels=3, heldout_fraction=0.0))
    assert d.train.shape == (4, 3, 8, 8)
    assert d.train_labels.tolist() == [0, 0, 1, 1] and d.train[0].max() == -1 and d.train[3].min() == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        load_dataset(DataConfig(name="folder", path=str(tmp_path / "empty")))


@pytest.mark.parametrize("kw, message", [
    (dict(name="mnist"), "'mnist5k', 'digits'"), (dict(n=4501), "allowed: 1..4500"),
    (dict(n=55), "divisible by the 10 classes"), (dict(name="idx"), "path="),
])
def test_bad_dataset_requests_name_what_is_allowed(kw, message):
    with pytest.raises(ValueError, match=message):
        load_dataset(DataConfig(**kw))


def test_datamodule_batches():
    from ablate.data import ImageDataModule
    dm = ImageDataModule(DataConfig(name="digits"), batch_size=32)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 8, 8) and y.dtype == torch.long and (y >= 0).all()
    assert len(dm.val_dataloader().dataset) == len(dm.data.heldout)


def test_a_cifar_batch_carrying_code_is_refused_without_running_it(tmp_path):
    import os
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": Payload(), b"labels": [0]}, protocol=2))
    with pytest.raises(ValueError, match="refused to load posix.system"):
        load_dataset(DataConfig(name="cifar10", path=str(tmp_path)))
    assert not marker.exists()
