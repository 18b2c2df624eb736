"""Datasets: one registry (``DATASETS``), images float32 ``[N, C, H, W]`` or signals ``[N, C, L]``
(``SIGNALS``) in [-1, 1], or token sequences int64 ``[N, L]`` (``TOKENS``)."""
from ablate.data.fingers import count_fingers, finger_components, is_hand, make_fingers
from ablate.data.registry import DATASETS, SIGNALS, DataConfig, ImageDataset, load_dataset, resize_images
from ablate.data.signals import count_pulses, make_pulses
from ablate.data.tokens import TOKENS, TokenDataset, bracket_break

__all__ = ["DATASETS", "SIGNALS", "DataConfig", "ImageDataset", "load_dataset", "resize_images",
           "TOKENS", "TokenDataset", "bracket_break", "make_fingers", "count_fingers", "finger_components", "is_hand", "make_pulses", "count_pulses",
           "ImageDataModule"]


def __getattr__(name):  # the DataModule pulls in Lightning; import it only when asked
    if name == "ImageDataModule":
        from ablate.data.datamodule import ImageDataModule
        return ImageDataModule
    raise AttributeError(name)
