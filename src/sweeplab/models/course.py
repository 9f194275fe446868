"""The course notes' two networks, built for the data's own image shape."""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from sweeplab.core.errors import UserError

CNN_CHANNELS = (32, 32, 64)  # the course notes' three convolutions


def dense_stack(in_features: int, hidden: list[int], num_classes: int) -> nn.Sequential:
    """Flatten -> [Linear -> ReLU] per hidden width -> Linear to the classes."""
    layers: list[nn.Module] = [nn.Flatten()]
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True)]
        in_features = width
    return nn.Sequential(*layers, nn.Linear(in_features, num_classes))


def mlp(cfg: DictConfig, image_shape: tuple[int, int, int], num_classes: int, weights: str | None) -> nn.Module:
    """The FashionMNIST tutorial network."""
    refuse_named_weights(cfg.name, weights)
    channels, height, width = image_shape
    return dense_stack(channels * height * width, widened(cfg.hidden, cfg.width), num_classes)


def cnn(cfg: DictConfig, image_shape: tuple[int, int, int], num_classes: int, weights: str | None) -> nn.Module:
    """The classic CIFAR-10 network: 3x[conv5x5 pad2 + ReLU + maxpool2], then dense layers."""
    refuse_named_weights(cfg.name, weights)
    channels, height, width = image_shape
    if min(height, width) < 8:
        raise UserError(
            f"model=cnn halves the image three times and needs at least 8x8 images, got {height}x{width}: "
            "upsample them with model.min_size=8"
        )
    features: list[nn.Module] = []
    for out_channels in widened(CNN_CHANNELS, cfg.width):
        features += [nn.Conv2d(channels, out_channels, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        channels = out_channels
    head = dense_stack(channels * (height // 8) * (width // 8), widened(cfg.hidden, cfg.width), num_classes)
    return nn.Sequential(*features, head)


def widened(widths: list[int] | tuple[int, ...], multiplier: float) -> list[int]:
    """model.width: each layer's width times the multiplier, at least 1."""
    return [max(1, round(width * multiplier)) for width in widths]


def refuse_named_weights(name: str, weights: str | None) -> None:
    """Our networks have no published weights: only a state_dict file (which build_model loads) makes sense."""
    if weights:
        raise UserError(f"model={name} has no torchvision weights: pass model.weights=/path/to/state_dict.pt")
