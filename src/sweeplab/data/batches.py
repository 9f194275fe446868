"""Batches of uint8 images and labels, already on the training device.

In-memory data sets are sliced from one tensor with a shuffled index (airbench-style: no
per-image Python work); image folders go through a DataLoader with workers.

Training batches can start mid-epoch (`batches_from`) and save the state their order is drawn
from (`state_dict`), so a run resumed from a checkpoint written at any step trains on exactly the
batches the uninterrupted run would have.

Under torchrun every rank draws the same order and takes its slice of each batch (`sharded`): the
batch size is the global batch, the one an optimizer step sees.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset, TensorDataset

from sweeplab.core.errors import UserError
from sweeplab.core.ranks import Ranks
from sweeplab.data.folder_cache import DecodeCache

Batch = tuple[torch.Tensor, torch.Tensor]


def rank_parts(order: torch.Tensor, batch_size: int, ranks: Ranks | None) -> tuple[torch.Tensor, ...]:
    """`order` in batches of `batch_size`; under torchrun, this rank's slice of each."""
    batches = order.split(batch_size)
    return batches if ranks is None else tuple(batch.tensor_split(ranks.world_size)[ranks.rank] for batch in batches)


class TensorBatches:
    """Shuffled batches from tensors held where the model runs (moved there once)."""

    def __init__(self, data: TensorDataset, batch_size: int, shuffle: bool, device: torch.device, seed: int):
        self.images, self.labels = (t.to(device) for t in data.tensors)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = shuffle and len(self.labels) > batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.ranks: Ranks | None = None

    def sharded(self, ranks: Ranks) -> TensorBatches:
        """The same batches (the same tensors, the same order), this rank's slice of each."""
        shard = copy.copy(self)
        shard.ranks = ranks
        return shard

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        return self.batches_from(0)

    def batches_from(self, start: int) -> Iterator[Batch]:
        """The epoch's batches from batch `start` on; its order is drawn on the first batch asked for."""
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.images.device)
        for index in rank_parts(order[: len(self) * self.batch_size], self.batch_size, self.ranks)[start:]:
            yield self.images[index], self.labels[index]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class LoaderBatches:
    """A DataLoader over lazily decoded images, its batches moved to the device."""

    def __init__(self, data: Dataset, batch_size: int, shuffle: bool, device: torch.device, seed: int, workers: int,
                 ranks: Ranks | None = None):
        self.arguments = (data, batch_size, shuffle, device, seed, workers)
        self.device = device
        self.batch_size = batch_size // ranks.world_size if ranks else batch_size  # a rank's slice of each batch
        size = len(data)  # type: ignore[arg-type]
        self.order = SeededOrder(size, seed, batch_size, ranks) if shuffle else None
        self.loader = DataLoader(
            SeededSamples(data) if shuffle else data,
            batch_size=self.batch_size,
            sampler=self.order if shuffle else rank_positions(size, batch_size, ranks),
            drop_last=shuffle and size > batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(seed),
        )

    def sharded(self, ranks: Ranks) -> LoaderBatches:
        """The same batches, this rank's slice of each: only its images are read and decoded."""
        return LoaderBatches(*self.arguments, ranks=ranks)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        return self.batches_from(0)

    def batches_from(self, start: int) -> Iterator[Batch]:
        if start:
            self.order.start = start * self.batch_size  # type: ignore[union-attr]  # only training batches resume
        try:
            for images, labels in self.loader:
                yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
        except UserError as error:
            raise UserError(_worker_message(error)) from None
        cache = decode_cache_of(self.arguments[0])
        if cache is not None:
            cache.finish()  # the epoch's workers may have decoded the last images it lacked


    def state_dict(self) -> dict:
        return self.order.state_dict() if self.order else {}

    def load_state_dict(self, state: dict) -> None:
        if self.order:
            self.order.load_state_dict(state)


class SeededOrder(Sampler):
    """Every epoch, a shuffled order of the images and a seed for each one's random augmentation.

    A DataLoader draws its workers' seeds afresh whenever it builds an iterator, which a resumed run
    does at another epoch than the uninterrupted one did: so each image is augmented from its own seed
    drawn here (SeededSamples), the same whatever the worker, the number of workers or the resume.
    """

    def __init__(self, size: int, seed: int, batch_size: int, ranks: Ranks | None = None):
        self.size = size
        self.generator = torch.Generator().manual_seed(seed)
        self.start = 0  # the next epoch starts at this image (a run resumed mid-epoch)
        self.kept = rank_positions(size - size % batch_size if size > batch_size else size, batch_size, ranks)

    def __len__(self) -> int:
        return len(self.kept) if self.kept is not None else self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = torch.randperm(self.size, generator=self.generator)
        seeds = torch.randint(2**62, (self.size,), generator=self.generator)
        if self.kept is not None:  # under torchrun: this rank's slice of each batch
            order, seeds = order[self.kept], seeds[self.kept]
        start, self.start = self.start, 0
        return zip(order[start:].tolist(), seeds[start:].tolist(), strict=True)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def rank_positions(size: int, batch_size: int, ranks: Ranks | None) -> list[int] | None:
    """The positions of this rank's slice of each batch in an epoch of `size` images (None: every position)."""
    return torch.cat(rank_parts(torch.arange(size), batch_size, ranks)).tolist() if ranks else None


class SeededSamples(Dataset):
    """`data[index]`, its random transforms drawn from the seed SeededOrder gave it (the caller's RNG untouched)."""

    def __init__(self, data: Dataset):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        state = torch.get_rng_state()
        torch.default_generator.manual_seed(seed)  # the CPU generator alone: torch.manual_seed costs 100 µs an image
        try:
            return self.data[index]
        finally:
            torch.set_rng_state(state)


def decode_cache_of(data: Dataset) -> DecodeCache | None:
    """The decode cache an image folder's images are read through (sweeplab.data.folder_cache), if any."""
    while isinstance(data, Subset):
        data = data.dataset
    return getattr(data, "cache", None)


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

    def sharded(self, ranks: Ranks) -> FirstBatches:
        return FirstBatches(self.batches.sharded(ranks), self.count)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Batch]:
        return self.batches_from(0)

    def batches_from(self, start: int) -> Iterator[Batch]:
        return itertools.islice(self.batches.batches_from(start), max(0, self.count - start))

    def state_dict(self) -> dict:
        return self.batches.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.batches.load_state_dict(state)


class SameBatches:
    """The first `count` batches, drawn once and given again every epoch (trainer.overfit_batches)."""

    def __init__(self, batches, count: int):
        self.kept = list(itertools.islice(iter(batches), count))

    def sharded(self, ranks: Ranks) -> SameBatches:
        shard = copy.copy(self)
        shard.kept = [tuple(t.tensor_split(ranks.world_size)[ranks.rank] for t in batch) for batch in self.kept]
        return shard

    def __len__(self) -> int:
        return len(self.kept)

    def __iter__(self) -> Iterator[Batch]:
        return self.batches_from(0)

    def batches_from(self, start: int) -> Iterator[Batch]:
        return iter(self.kept[start:])

    def state_dict(self) -> dict:
        return {}  # drawn once, when the run was built

    def load_state_dict(self, state: dict) -> None: ...


def make_batches(data: Dataset, batch_size: int, shuffle: bool, device: torch.device, seed: int, workers: int):
    if isinstance(data, TensorDataset):
        return TensorBatches(data, batch_size, shuffle, device, seed)
    return LoaderBatches(data, batch_size, shuffle, device, seed, workers)
