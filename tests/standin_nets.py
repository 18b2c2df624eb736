"""Networks whose answers are known: the ELS oracle wrapped as a diffusers-style UNet2DModel stand-in and as
a plain module, each predicting epsilon, the clean sample or v, and reading time its own way. Loaded by the
tests through ``load_denoiser("standin_nets:...")``, the same path a user's network takes."""
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from ablate.data import load_dataset
from ablate.oracle import OracleConfig, build_oracle
from ablate.sampling import DiscreteSchedule

LINEAR = DiscreteSchedule({"num_train_timesteps": 1000, "beta_schedule": "linear"})


def digits_oracle():
    return build_oracle(OracleConfig(machine="els", patch_size=5), load_dataset("digits", n=30).train)


def from_prediction(x, x0, ab, prediction_type):
    abv = ab.to(x.dtype).view(-1, 1, 1, 1)
    if prediction_type == "epsilon":
        return (x - abv.sqrt() * x0) / (1 - abv).sqrt()
    if prediction_type == "v_prediction":
        return (abv.sqrt() * x - x0) / (1 - abv).sqrt()  # v = a eps - s x0 with a^2 + s^2 = 1
    return x0


class OracleModule(nn.Module):
    """``module(x, time) -> prediction`` where time is sigma, log-SNR, continuous cosine t, or a discrete
    (float) timestep of ``LINEAR`` (sigma interpolated linearly between integer timesteps, as diffusers does)."""

    def __init__(self, prediction_type="epsilon", time_input="sigma"):
        super().__init__()
        self.oracle, self.prediction_type, self.time_input = digits_oracle(), prediction_type, time_input
        ac = LINEAR.alphas_cumprod
        self.sigmas = ((1 - ac) / ac).sqrt().numpy()

    def alpha_bar(self, time):
        t = time.double()
        if self.time_input == "sigma":
            return 1 / (1 + t * t)
        if self.time_input == "log_snr":
            return torch.sigmoid(t)
        if self.time_input == "continuous":
            return torch.cos(t / 1.008 * np.pi / 2) ** 2
        sigma = np.interp(t.numpy(), np.arange(len(self.sigmas)), self.sigmas)
        return torch.from_numpy(1 / (1 + sigma ** 2))

    def forward(self, x, time):
        ab = self.alpha_bar(time.reshape(-1).expand(len(x)))
        return from_prediction(x, self.oracle.denoise(x, ab), ab, self.prediction_type)


class OracleUNet(OracleModule):
    """The same machine with diffusers' calling convention: ``unet(sample, timestep, class_labels=None).sample``."""

    def __init__(self, prediction_type="epsilon"):
        super().__init__(prediction_type, "discrete")
        self.config = SimpleNamespace(in_channels=1, sample_size=8)

    def forward(self, sample, timestep, class_labels=None):
        return SimpleNamespace(sample=super().forward(sample, timestep))


def module(prediction_type="epsilon", time_input="sigma"):
    return OracleModule(prediction_type, time_input)


def unet(prediction_type="epsilon"):
    return OracleUNet(prediction_type)


def wrong_shape():
    class Half(nn.Module):
        def forward(self, x, t):
            return x[..., ::2, :]
    return Half()


def not_a_module():
    return 42


class TinyCNN(nn.Module):
    """A user's own denoiser: three 3x3 convs (receptive field 7), the time input added as a bias."""

    def __init__(self, channels=1, width=8):
        super().__init__()
        self.a, self.b = nn.Conv2d(channels, width, 3, padding=1), nn.Conv2d(width, width, 3, padding=1)
        self.c = nn.Conv2d(width, channels, 3, padding=1)
        self.t = nn.Linear(1, width)

    def forward(self, x, time):
        h = torch.nn.functional.silu(self.a(x) + self.t(time.reshape(-1, 1).to(x.dtype))[:, :, None, None])
        return self.c(torch.nn.functional.silu(self.b(h)))


def tiny_cnn(channels=1, width=8):
    return TinyCNN(channels, width)
