"""ablate: predict what a convolutional diffusion model will generate, before training it."""
__version__ = "0.1.0"
