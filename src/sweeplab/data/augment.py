"""Turn uint8 batches into normalized float batches, augmenting whole batches with tensor ops."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sweeplab.config.schema import AugmentConfig

Batch = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Policies:
    """torchvision's augmentation, when asked for (built by sweeplab.data.policies)."""

    image: Batch | None = None  # uint8 images, each its own draw
    erase: Batch | None = None  # normalized float images, each its own draw
    mix: Callable | None = None  # float batch, labels -> mixed batch, soft targets


class Normalize(nn.Module):
    """uint8 NCHW (0..255) -> float normalized with the data's mean/std.

    A module, so its constants live on the device once, and so exported models can carry it:
    they take the images as they are (sweeplab.runs.classifier).
    """

    def __init__(self, mean: list[float], std: list[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float().div(255) - self.mean) / self.std


class BatchPreprocess:
    """uint8 NCHW -> normalized float; random crop (with padding) and flips only in training."""

    def __init__(self, mean: list[float], std: list[float], augment: AugmentConfig, channels_last: bool = False,
                 device: torch.device | str = "cpu", policy: Batch | None = None, erase: Batch | None = None):
        self.normalize = Normalize(mean, std).to(device)  # its constants live where the batches do
        self.augment = augment
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.policy = policy  # uint8 images -> uint8 images (sweeplab.data.policies)
        self.erase = erase  # normalized images -> normalized images

    def __call__(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        if train and self.policy:
            images = self.policy(images)
        x = self.normalize(images)
        if train:
            x = self.random_augment(x)
        return x.contiguous(memory_format=self.memory_format)

    def random_augment(self, x: torch.Tensor) -> torch.Tensor:
        if self.augment.hflip:
            x = _flip_some(x, dim=3)
        if self.augment.vflip:
            x = _flip_some(x, dim=2)
        if self.augment.random_crop_padding:
            x = _random_crop(x, self.augment.random_crop_padding)
        if self.erase:
            x = self.erase(x)
        return x


def _flip_some(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Flip a random half of the batch along `dim`."""
    chosen = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(chosen.view(-1, 1, 1, 1), x.flip(dim), x)


def _random_crop(x: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad every image by `padding`, then cut each at its own random offset."""
    n, _, height, width = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy, dx = (torch.randint(0, 2 * padding + 1, (n, 1), device=x.device) for _ in range(2))
    rows = (dy + torch.arange(height, device=x.device)).view(n, 1, height, 1)
    cols = (dx + torch.arange(width, device=x.device)).view(n, 1, 1, width)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    channel = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    return padded[batch, channel, rows, cols]
