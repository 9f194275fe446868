"""Build a classifier for a data set: the config's `_target_` builds the network, this module the rest.

Every model is `Sequential(adapt=AdaptInput, net=<the network>)`: `adapt` turns the data's
images into what the network needs (grayscale -> 3 channels, small images upsampled), so every
model runs on every data set, and exported models take the data's own image size.

A network is built by the function its model schema names (`model._target_`, see
sweeplab.config.schema): `f(cfg, image_shape, num_classes, weights)` where `weights` is a weight
name or None. The functions live in course.py (mlp, cnn), vision.py (torchvision) and timm_models.py
(timm), the last two imported only when such a model is built; adding a model is one YAML file, one
schema and one function.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from dataclasses import replace

import torch
import torch.nn.functional as F
from hydra.utils import get_method
from omegaconf import DictConfig
from torch import nn

from sweeplab.config.targets import check_target
from sweeplab.core.errors import UserError, first_line
from sweeplab.models.weights import freeze_all_but_head, load_local_weights, local_weights_file

TIMM_CLASSIFIER = "sweeplab.models.timm_models.timm_classifier"

log = logging.getLogger(__name__)


class AdaptInput(nn.Module):
    """Turn the data's images (`image_shape`) into what the network takes: `channels` x `size`.

    A single channel is repeated, small images upsampled; what it makes is laid out in
    `memory_format` (channels_last training keeps its layout up to the first conv).
    """

    def __init__(self, image_shape: tuple[int, int, int], channels: int, size: tuple[int, int],
                 memory_format=torch.contiguous_format):
        super().__init__()
        self.channels = channels if channels != image_shape[0] else None
        self.size = size if tuple(size) != tuple(image_shape[1:]) else None
        self.memory_format = memory_format

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels is None and self.size is None:
            return x
        if self.channels is not None:
            x = x.expand(-1, self.channels, -1, -1)
        if self.size is not None:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return x.contiguous(memory_format=self.memory_format)


def build_model(cfg: DictConfig, image_shape: tuple[int, int, int], num_classes: int) -> nn.Sequential:
    weights_file = local_weights_file(cfg.weights)
    size = upsampled_size(image_shape[1:], cfg.min_size)
    named_weights = None if weights_file else cfg.weights
    net = network_factory(cfg._target_)(cfg, (image_shape[0], *size), num_classes, named_weights)
    if weights_file:
        load_local_weights(net, weights_file)
    if cfg.freeze_backbone:
        freeze_all_but_head(net)
    adapt = AdaptInput(image_shape, input_channels(net, image_shape[0]), size)
    model = nn.Sequential(OrderedDict(adapt=adapt, net=net))
    check_forward(model, cfg.name, image_shape)
    return model


def check_batch_statistics(model: nn.Module, name: str, images_per_step: int) -> None:
    """Batch normalisation needs two images a training step to take statistics over: refuse one, before training."""
    if images_per_step < 2 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise UserError(f"model={name} has batch normalisation, which needs at least 2 images a training step, and "
                        f"this run gives it {images_per_step} (dataset.batch_size split over torchrun's processes and "
                        "trainer.accumulate_grad_batches): raise dataset.batch_size, e.g. dataset.batch_size=32")


def follow_pretrained_input(cfg: DictConfig) -> None:
    """Pretrained timm weights: the data's mean/std and input size become what the weights were trained on.

    Decided before the data is built, so the run's params, its checkpoint and its export all hold them.
    Images in memory are upsampled to that size on the fly (model.min_size); image folders are decoded at
    it (shorter side to size / crop_pct, then a center crop of size, as timm's own eval transform).
    """
    if cfg.model._target_ != TIMM_CLASSIFIER or local_weights_file(cfg.model.weights):
        return
    from sweeplab.models.timm_models import pretrained_input

    expected = pretrained_input(cfg.model)
    if expected is None:
        return
    if len(cfg.dataset.mean) == 1:  # grayscale data: timm folds the RGB weights into one channel (in_chans=1)
        expected = replace(expected, mean=[sum(expected.mean) / 3], std=[sum(expected.std) / 3])
    cfg.dataset.mean, cfg.dataset.std = expected.mean, expected.std
    if cfg.dataset.image_size is None:
        cfg.model.min_size = expected.size
    else:
        cfg.dataset.crop_size = expected.size
        cfg.dataset.image_size = math.floor(expected.size / expected.crop_pct)
    log.info(f"model.weights={cfg.model.weights}: the input follows the weights' pretraining, {expected.size}x"
             f"{expected.size} images, mean {expected.mean}, std {expected.std}")


def convolutional(model: nn.Module) -> bool:
    """More than one convolution: a ViT's single patch-embedding convolution does not make it convolutional."""
    return sum(isinstance(module, nn.Conv2d) for module in model.modules()) > 1


def to_channels_last(model: nn.Sequential) -> nn.Sequential:
    """Weights, and what AdaptInput makes, in channels_last: what CPU (oneDNN) and GPU convolutions run fastest on."""
    model.adapt.memory_format = torch.channels_last
    return model.to(memory_format=torch.channels_last)


def network_factory(target: str):
    """The function a model schema names, if it is one a config may name."""
    check_target(target)
    return get_method(target)


def input_channels(net: nn.Module, data_channels: int) -> int:
    """The channels the network's first convolution takes (torchvision's: 3); a dense net takes the data's."""
    first_conv = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    return first_conv.in_channels if first_conv is not None else data_channels


def upsampled_size(size: tuple[int, int], min_size: int) -> tuple[int, int]:
    """Scale (height, width) up, keeping the aspect ratio, until the shorter side is min_size."""
    height, width = size
    scale = max(1.0, min_size / min(height, width))
    return round(height * scale), round(width * scale)


def check_forward(model: nn.Module, name: str, image_shape: tuple[int, int, int]) -> None:
    """Refuse, before training, a model that cannot take this data's images."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(2, *image_shape))
    except (RuntimeError, AssertionError, ValueError) as error:  # ViTs assert their input size
        shape = "x".join(map(str, image_shape))
        raise UserError(
            f"model={name} cannot classify {shape} images ({first_line(error)}): "
            "raise model.min_size, e.g. model.min_size=224"
        ) from None
    finally:
        model.train(was_training)
