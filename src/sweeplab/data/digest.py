"""What a split holds, as a short digest: two runs on different images or labels never look alike.

In-memory splits are hashed over their pixels and labels. Folder splits (lazily decoded) are hashed
over each sample's path relative to the data root, file size, modification time and label: reading
every image only to hash it would cost a run another epoch of disk reads.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset, Subset, TensorDataset

DIGEST_BYTES = 8  # 16 hex characters: what MLflow shows in its Dataset column


def split_digest(dataset: Dataset) -> str:
    digest = hashlib.blake2b(digest_size=DIGEST_BYTES)
    if isinstance(dataset, TensorDataset):
        for tensor in dataset.tensors:
            digest.update(np.ascontiguousarray(tensor.numpy()).data)
        return digest.hexdigest()
    samples, root = folder_samples(dataset)
    for path, label in samples:
        stat = os.stat(path)
        digest.update(f"{Path(path).relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\0{label}\n".encode())
    return digest.hexdigest()


def folder_samples(dataset: Dataset) -> tuple[list[tuple[str, int]], str]:
    """(path, label) of every sample of a folder data set (torchvision's `samples`), through any Subsets."""
    indices = None
    while isinstance(dataset, Subset):
        indices = [dataset.indices[i] for i in indices] if indices is not None else list(dataset.indices)
        dataset = dataset.dataset
    samples = dataset.samples  # type: ignore[attr-defined]
    return ([samples[i] for i in indices] if indices is not None else list(samples)), dataset.root  # type: ignore[attr-defined]
