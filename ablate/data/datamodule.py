"""A Lightning ``DataModule`` over any registered dataset."""
from __future__ import annotations

from typing import Callable, Iterator

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

from ablate.data.registry import DataConfig, ImageDataset, load_dataset


class EpochSampler(Sampler[int]):
    """Indices of one epoch: ``length`` items from back-to-back random permutations of ``n``.

    The order is a pure function of ``(seed, epoch)``, so a run resumed from a
    checkpoint sees exactly the batches the uninterrupted run would have seen.
    The epoch comes from ``epoch_fn`` when given (read when the first index is
    drawn; Lightning's own ``set_epoch`` argument is a progress counter that is
    off by one or two after a resume), else from :meth:`set_epoch`. ``length``
    may exceed ``n``: small training sets then make epochs of a useful size.
    """

    def __init__(self, n: int, length: int, seed: int, epoch_fn: Callable[[], int | None] | None = None) -> None:
        if n < 1 or length < 1:
            raise ValueError(f"EpochSampler needs n >= 1 and length >= 1, got n={n}, length={length}")
        self.n, self.length, self.seed, self.epoch, self.epoch_fn = n, length, seed, 0, epoch_fn

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:  # a generator: runs at the first draw, after the epoch is known
        epoch = self.epoch_fn() if self.epoch_fn is not None else None
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + (self.epoch if epoch is None else epoch))
        reps = -(-self.length // self.n)
        order = torch.cat([torch.randperm(self.n, generator=g) for _ in range(reps)])[: self.length]
        yield from order.tolist()

    def __len__(self) -> int:
        return self.length


class ImageDataModule(pl.LightningDataModule):
    """Batches of ``(images [B, C, H, W], labels [B])``; labels are -1 where the dataset has none.

    ``epoch_images``: images per training epoch (default: the training set
    size); ``seed`` fixes the shuffling (see :class:`EpochSampler`).
    """

    def __init__(self, config: DataConfig, batch_size: int = 64, num_workers: int = 0,
                 epoch_images: int | None = None, seed: int = 0, data: ImageDataset | None = None) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        if epoch_images is not None and epoch_images < 1:
            raise ValueError(f"epoch_images={epoch_images} must be >= 1")
        self.config, self.batch_size, self.num_workers = config, batch_size, num_workers
        self.epoch_images, self.seed = epoch_images, seed
        self.data: ImageDataset | None = data

    def setup(self, stage: str | None = None) -> None:
        if self.data is None:
            self.data = load_dataset(self.config)

    @staticmethod
    def _tensors(images: torch.Tensor, labels: torch.Tensor | None) -> TensorDataset:
        labels = labels if labels is not None else torch.full((len(images),), -1, dtype=torch.long)
        return TensorDataset(images, labels)

    def train_dataloader(self) -> DataLoader:
        assert self.data is not None, "call setup() first"
        n = len(self.data.train)
        length = self.epoch_images or n
        return DataLoader(self._tensors(self.data.train, self.data.train_labels), batch_size=self.batch_size,
                          sampler=EpochSampler(n, length, self.seed, self._trainer_epoch), drop_last=length > self.batch_size,
                          num_workers=self.num_workers)

    def _trainer_epoch(self) -> int | None:
        trainer = self.trainer
        return trainer.current_epoch if trainer is not None else None

    def val_dataloader(self) -> DataLoader:
        assert self.data is not None, "call setup() first"
        return DataLoader(self._tensors(self.data.heldout, self.data.heldout_labels),
                          batch_size=self.batch_size, num_workers=self.num_workers)
