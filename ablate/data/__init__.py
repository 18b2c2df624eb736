"""Datasets: one registry (``DATASETS``), images float32 ``[N, C, H, W]`` in [-1, 1]."""
from ablate.data.fingers import count_fingers, finger_components, is_hand, make_fingers
from ablate.data.registry import DATASETS, DataConfig, ImageDataset, load_dataset, resize_images

__all__ = ["DATASETS", "DataConfig", "ImageDataset", "load_dataset", "resize_images",
           "make_fingers", "count_fingers", "finger_components", "is_hand", "ImageDataModule"]


def __getattr__(name):  # the DataModule pulls in Lightning; import it only when asked
    if name == "ImageDataModule":
        from ablate.data.datamodule import ImageDataModule
        return ImageDataModule
    raise AttributeError(name)
