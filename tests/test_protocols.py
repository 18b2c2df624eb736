"""The field's protocols (theory section 13): the Studio's and GoldDiff's formulas against hand computations, their
DDIM loop against the linear-beta schedule worked out by hand, and the protocols' known answers (a network
compared with itself; a machine that is the network plus an offset)."""
import numpy as np
import pytest
import torch

from ablate.data import load_dataset
from ablate.evaluation import EvalConfig
from ablate.evaluation.pipeline import Subject, evaluate
from ablate.evaluation.protocols import golddiff, peak_memory, studio
from ablate.metrics import pairwise_agreement
from ablate.metrics.field import field_l1, field_mse, field_r2, to_unit
from ablate.oracle import OracleConfig, build_oracle
from ablate.sampling import seed_noise
from ablate.sampling.field import field_ddim


def test_field_formulas_against_hand_computations():
    x = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    y = torch.tensor([[1.0, 3.0], [1.0, 1.0]])
    # sample 1: unbiased var(y) = ((1-2)^2 + (3-2)^2) / 1 = 2, SS_res = 2, D = 2: 1 - 2 / (2 * 2) = 0.5
    # sample 2: a constant reference counts as variance 1, SS_res = 0: 1; the mean over samples 0.75
    assert field_r2(x, y) == pytest.approx(0.75)
    assert field_mse(x, y) == pytest.approx((1.0 + 0.0) / 2)
    assert field_l1(x, y) == pytest.approx((1.0 + 0.0) / 2)
    assert to_unit(torch.tensor([-1.5, 0.0, 1.0, 3.0])).tolist() == [0.0, 0.5, 1.0, 1.0]
    # against ablate's R2 (biased SS_tot) of the same pair: 1 - (1 - R2) (D - 1) / D, per sample
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 3, 4, 4, generator=g), torch.randn(1, 3, 4, 4, generator=g)
    D = a.numel()
    assert field_r2(a, b) == pytest.approx(1 - (1 - float(pairwise_agreement(a, b)["R2"][0])) * (D - 1) / D, abs=1e-9)
    with pytest.raises(ValueError, match="same non-empty batch"):
        field_r2(x, y[:1])


class Constant:
    """A denoiser whose x0_hat is always ``c`` (broadcast over the batch)."""

    def __init__(self, c):
        self.c = c

    def denoise(self, x_t, alpha_bar, labels=None):
        return self.c.expand_as(x_t).clone()


def test_field_ddim_runs_their_schedule_and_clips_the_x0_it_steps_toward():
    shape = (1, 2, 2)
    c = torch.tensor([[[2.0, -0.5], [0.25, -3.0]]])  # partly outside [-1, 1]
    run = field_ddim(Constant(c), [3, 4], shape)
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    ac = np.cumprod(1 - betas)
    assert run.timesteps == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    assert np.allclose(run.alpha_bars.numpy(), ac[run.timesteps], rtol=1e-5)
    assert torch.equal(run.xs[0], seed_noise([3, 4], shape, 1)[0].float())  # same seed, same x_T
    assert torch.equal(run.samples, c.expand(2, *shape))  # the sample is the last x0_hat, not the latent
    # one DDIM step by hand: toward the clipped x0, with the eps of the unclipped one
    x, a, a_prev = run.xs[0].double(), ac[900], ac[800]
    eps = (x - a ** 0.5 * c.double()) / (1 - a + 1e-8) ** 0.5
    x0_used = (x - (1 - a) ** 0.5 * eps) / a ** 0.5
    expected = a_prev ** 0.5 * x0_used.clamp(-1, 1) + (1 - a_prev) ** 0.5 * eps
    assert torch.allclose(run.xs[1].double(), expected, atol=1e-5)
    unclipped = field_ddim(Constant(c), [3, 4], shape, clip_sample=False)
    assert not torch.allclose(unclipped.xs[1], run.xs[1])


class Offset:
    """The network plus a constant offset."""

    def __init__(self, network, delta):
        self.network, self.delta = network, delta

    def denoise(self, x_t, alpha_bar, labels=None):
        return self.network.denoise(x_t, alpha_bar, labels) + self.delta


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", n=30)


def test_studio_and_golddiff_known_answers(digits, capsys):
    network = build_oracle(OracleConfig(machine="els", patch_size=3), digits.train)
    shape = tuple(digits.train.shape[1:])
    s = studio(network, {"itself": network, "offset": Offset(network, 0.1)}, [0, 1, 2], shape)
    same = s["machines"]["itself"]
    assert same["r2_score_vs_unet_final"] == pytest.approx(1.0) and same["mse_score_vs_unet_final"] == 0.0
    assert all(v == pytest.approx(1.0) for v in same["per_step"]["r2_score_vs_unet_single"])
    # the network on the offset machine's x_t writes the machine's x0_hat minus 0.1 exactly: MSE 0.01 at every step
    assert s["machines"]["offset"]["per_step"]["mse_score_vs_unet_single"] == pytest.approx([0.01] * 10, rel=1e-5)
    assert len(s["timesteps"]) == 10 and s["reference"] == "network"
    g = golddiff(network, {"itself": network}, shape, samples=6, batch=4, progress=True)  # 2 batches, 1 short
    shown = capsys.readouterr().err
    assert "golddiff protocol: network, batch 1/2" in shown and "golddiff protocol: itself, batch 2/2" in shown
    row = g["machines"]["itself"]
    assert (row["mse_score"], row["l1_score"], row["r2_score"]) == (0.0, 0.0, pytest.approx(1.0))
    assert len(row["r2_list"]) == 10 and row["time_per_step_s"] > 0 and row["peak_memory_mib"] >= 0
    assert g["samples"] == 6 and g["batch"] == 4


def test_peak_memory_sees_an_allocation():
    def hold():
        big = torch.ones(64 * 2**20 // 4 * 4)  # 256 MiB
        torch.cuda.synchronize() if torch.cuda.is_available() else None
        import time
        time.sleep(0.05)
        return float(big[0])

    value, mib = peak_memory(hold)
    assert value == 1.0 and mib > 150
    value, mib = peak_memory(hold)  # the same size again: freed memory must not hide the second use
    assert mib > 150


def test_evaluate_writes_the_protocols_tables(digits, tmp_path):
    network = build_oracle(OracleConfig(machine="els", patch_size=5), digits.train)
    config = EvalConfig(machines=("els", "ideal"), seeds=3, calibration_seeds=2, steps=6, samplers=("ddim",),
                        protocols=("studio",), wandb_mode="disabled", progress=False)
    summary = evaluate(Subject(network, digits.train, name="net"), config, tmp_path).summary
    assert set(summary["protocols"]["studio"]["machines"]) == {"els", "ideal"}
    table = (tmp_path / "protocols.md").read_text()
    assert "| net | els |" in table and "Analytic Diffusion Studio protocol" in table
    with pytest.raises(ValueError, match="protocols='studi' is not allowed"):
        EvalConfig(protocols=("studi",))


def test_wandb_media_logs_the_protocol_tables_as_text_and_pictures_as_images(tmp_path):
    """An evaluation with --protocols and W&B on used to fail at the very end: protocols.md went to wandb.Image."""
    import numpy as np
    import wandb
    from PIL import Image

    from ablate.evaluation.pipeline import wandb_media

    png = tmp_path / "league.png"
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(png)
    table = tmp_path / "protocols.md"
    table.write_text("| net | els | <0.5> |\n")
    media = wandb_media({"league": str(png), "protocols": str(table)})
    assert isinstance(media["figures/league"], wandb.Image)
    assert isinstance(media["figures/protocols"], wandb.Html)
    assert "| net | els | &lt;0.5&gt; |" in media["figures/protocols"].html
