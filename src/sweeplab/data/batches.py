"""Batches of uint8 images and labels, already on the training device.

In-memory data sets are sliced from one tensor with a shuffled index (airbench-style: no
per-image Python work); image folders go through a DataLoader with workers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from sweeplab.errors import UserError

Batch = tuple[torch.Tensor, torch.Tensor]


class TensorBatches:
    """Shuffled batches from tensors held where the model runs (moved there once)."""

    def __init__(self, data: TensorDataset, batch_size: int, shuffle: bool, device: torch.device, seed: int):
        self.images, self.labels = (t.to(device) for t in data.tensors)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = shuffle and len(self.labels) > batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.images.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.images[index], self.labels[index]


class LoaderBatches:
    """A DataLoader over lazily decoded images, its batches moved to the device."""

    def __init__(self, data: Dataset, batch_size: int, shuffle: bool, device: torch.device, seed: int, workers: int):
        self.device = device
        self.loader = DataLoader(
            data,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=shuffle and len(data) > batch_size,  # type: ignore[arg-type]
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(seed),
        )

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        try:
            for images, labels in self.loader:
                yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
        except UserError as error:
            raise UserError(_worker_message(error)) from None


def _worker_message(error: UserError) -> str:
    """The user's one line: a DataLoader worker re-raises it below its own traceback."""
    last_line = str(error).rstrip().splitlines()[-1]
    return last_line.partition(f"{UserError.__name__}: ")[2] or last_line


class FirstBatches:
    """The first `count` batches of an epoch (trainer.limit_*_batches)."""

    def __init__(self, batches, count: int):
        self.batches, self.count = batches, min(count, len(batches))

    @classmethod
    def of(cls, batches, limit: int | float | None):
        """`limit` as a count (int) or a fraction of the epoch (float); None keeps every batch."""
        if limit is None or batches is None:
            return batches
        return cls(batches, limit if isinstance(limit, int) else max(1, math.ceil(limit * len(batches))))

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Batch]:
        return itertools.islice(iter(self.batches), self.count)


class SameBatches:
    """The first `count` batches, drawn once and given again every epoch (trainer.overfit_batches)."""

    def __init__(self, batches, count: int):
        self.kept = list(itertools.islice(iter(batches), count))

    def __len__(self) -> int:
        return len(self.kept)

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.kept)


def make_batches(data: Dataset, batch_size: int, shuffle: bool, device: torch.device, seed: int, workers: int):
    if isinstance(data, TensorDataset):
        return TensorBatches(data, batch_size, shuffle, device, seed)
    return LoaderBatches(data, batch_size, shuffle, device, seed, workers)
