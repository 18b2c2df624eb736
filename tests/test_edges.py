"""Edges a reliability probe found: each a clear error instead of a silent wrong answer or a raw TypeError."""
import pytest
import torch

from ablate.data import DataConfig, load_dataset
from ablate.oracle import OracleConfig, PatchSchedule, build_oracle
from ablate.sampling import sample


@pytest.fixture(scope="module")
def oracle():
    images = torch.rand(4, 1, 6, 6) * 2 - 1
    return build_oracle(OracleConfig(machine="els", patch_size=3), images, torch.tensor([0, 1, 0, 1]))


def test_integer_noisy_images_and_fractional_labels_are_refused(oracle):
    with pytest.raises(ValueError, match="x_t has dtype torch.int64"):
        oracle.denoise(torch.zeros(1, 1, 6, 6, dtype=torch.long), 0.5)
    with pytest.raises(ValueError, match="labels must be whole class numbers"):
        oracle.denoise(torch.zeros(1, 1, 6, 6), 0.5, torch.tensor([1.5]))
    with pytest.raises(ValueError, match="train_labels must be whole class numbers"):
        build_oracle(OracleConfig(), torch.zeros(2, 1, 6, 6), torch.tensor([0.5, 1.0]))
    assert oracle.denoise(torch.zeros(1, 1, 6, 6), 0.5, torch.tensor([1.0])).shape == (1, 1, 6, 6)  # 1.0 is 1


def test_bad_noise_levels_and_seeds_are_clear_errors(oracle):
    with pytest.raises(ValueError, match="alpha_bar must be a number or a \\[B\\] tensor.*string '0.5'"):
        oracle.denoise(torch.zeros(1, 1, 6, 6), "0.5")
    with pytest.raises(ValueError, match="seeds must be a sequence of integers \\(e.g. range\\(8\\)\\), got 5"):
        sample(oracle, 5, (1, 6, 6), steps=2)
    with pytest.raises(ValueError, match="seeds must be integers"):
        sample(oracle, [0.5], (1, 6, 6), steps=2)


def test_patch_schedules_refuse_fractional_sizes():
    with pytest.raises(ValueError, match="k=3.7 must be a whole odd number"):
        PatchSchedule.from_list([3.7, 5])
    assert PatchSchedule.from_list([3.0, 5]).ks == (3, 5)


def test_dataset_options_name_the_nearest_and_empty_classes_are_refused():
    with pytest.raises(ValueError, match="did you mean 'image_size'"):
        load_dataset("digits", image_sise=14)
    with pytest.raises(ValueError, match="class_label=12 has no images in 'digits'; its classes: \\[0, 1"):
        load_dataset(DataConfig(name="digits", class_label=12))
    assert set(load_dataset(DataConfig(name="digits", class_label=3)).train_labels.tolist()) == {3}
