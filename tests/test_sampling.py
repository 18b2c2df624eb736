"""Samplers: same seed same sample, steps as the spec, the oracle plugged in unchanged."""
import pytest
import torch

from ablate.oracle import OracleConfig, build_oracle
from ablate.sampling import cosine, ddim_step, linear, sample, time_grid


class Constant:
    """A denoiser that always answers the same clean image (its DDIM sample must be that image)."""

    def __init__(self, image):
        self.image = image

    def denoise(self, x_t, alpha_bar, labels=None):
        return self.image.expand_as(x_t)


def test_schedules_and_grid():
    t = time_grid(20)
    assert t[0] == 1 and t[-1] == 0 and len(t) == 21
    assert cosine(torch.tensor(0.0)) == 1 and 0 < cosine(torch.tensor(1.0)) < 1e-3
    assert torch.all(torch.diff(linear(t)) > 0)


def test_ddim_last_step_returns_x0_hat_and_constant_denoiser_is_reached():
    image = torch.rand(1, 1, 4, 4) * 2 - 1
    out = sample(Constant(image), [0, 1], (1, 4, 4), steps=5)
    assert torch.allclose(out.samples, image.expand(2, -1, -1, -1), atol=1e-6)
    x = torch.randn(2, 1, 4, 4)
    assert torch.allclose(ddim_step(x, image.expand(2, -1, -1, -1), torch.full((2,), 0.5), torch.ones(2)),
                          image.expand(2, -1, -1, -1))


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_same_seed_same_sample_and_oracle_plugs_in(sampler):
    train = torch.rand(5, 1, 6, 6) * 2 - 1
    oracle = build_oracle(OracleConfig(machine="els", patch_size=3), train)
    a = sample(oracle, [3, 4], (1, 6, 6), steps=6, sampler=sampler, keep_trajectory=True)
    b = sample(oracle, [3, 4], (1, 6, 6), steps=6, sampler=sampler)
    c = sample(oracle, [5, 4], (1, 6, 6), steps=6, sampler=sampler)
    assert torch.equal(a.samples, b.samples)
    assert torch.equal(a.samples[1], c.samples[1]) and not torch.allclose(a.samples[0], c.samples[0])
    assert a.x0_hats.shape == (6, 2, 1, 6, 6) and a.xs.shape == (7, 2, 1, 6, 6)


def test_ideal_machine_samples_are_training_images():
    train = torch.rand(4, 1, 5, 5, dtype=torch.float64) * 2 - 1
    oracle = build_oracle(OracleConfig(machine="ideal", dtype="float64"), train)
    out = sample(oracle, list(range(6)), (1, 5, 5), steps=20, dtype=torch.float64).samples
    dist = (out[:, None] - train[None]).flatten(2).abs().amax(2).amin(1)
    assert (dist < 1e-4).all()


def test_bad_sampler_arguments():
    with pytest.raises(ValueError, match="did you mean .heun.*choose one of ddim"):
        sample(Constant(torch.zeros(1, 1, 2, 2)), [0], (1, 2, 2), sampler="heunn")
    with pytest.raises(ValueError, match="cosine"):
        sample(Constant(torch.zeros(1, 1, 2, 2)), [0], (1, 2, 2), schedule="sigmoid")
    with pytest.raises(ValueError, match="at least one seed"):
        sample(Constant(torch.zeros(1, 1, 2, 2)), [], (1, 2, 2))
