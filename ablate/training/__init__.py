"""Training diffusion backbones with Lightning: ``run(TrainConfig) -> TrainResult``.

>>> from ablate.training import load_config, run, load_checkpoint
>>> result = run(load_config("configs/mnist_resnet_gpu.yaml", ["optim.lr=1e-3"]))
>>> model = load_checkpoint(result.checkpoint)            # backbone + config, EMA weights
>>> model.denoiser().denoise(x_t, alpha_bar)              # the oracle's interface
"""
from ablate.training.checkpoint import TrainedModel, load_checkpoint, read_checkpoint
from ablate.training.config import OptimConfig, TrainConfig, WandbConfig, load_config
from ablate.training.module import DiffusionModule
from ablate.training.run import TrainResult, run

__all__ = ["TrainConfig", "OptimConfig", "WandbConfig", "load_config", "run", "TrainResult", "DiffusionModule",
           "load_checkpoint", "read_checkpoint", "TrainedModel"]
