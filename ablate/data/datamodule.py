"""A Lightning ``DataModule`` over any registered dataset."""
from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from ablate.data.registry import DataConfig, ImageDataset, load_dataset


class ImageDataModule(pl.LightningDataModule):
    """Batches of ``(images [B, C, H, W], labels [B])``; labels are -1 where the dataset has none."""

    def __init__(self, config: DataConfig, batch_size: int = 64, num_workers: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.config, self.batch_size, self.num_workers = config, batch_size, num_workers
        self.data: ImageDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.data is None:
            self.data = load_dataset(self.config)

    @staticmethod
    def _tensors(images: torch.Tensor, labels: torch.Tensor | None) -> TensorDataset:
        labels = labels if labels is not None else torch.full((len(images),), -1, dtype=torch.long)
        return TensorDataset(images, labels)

    def train_dataloader(self) -> DataLoader:
        assert self.data is not None, "call setup() first"
        return DataLoader(self._tensors(self.data.train, self.data.train_labels), batch_size=self.batch_size,
                          shuffle=True, drop_last=len(self.data.train) > self.batch_size,
                          num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        assert self.data is not None, "call setup() first"
        return DataLoader(self._tensors(self.data.heldout, self.data.heldout_labels),
                          batch_size=self.batch_size, num_workers=self.num_workers)
