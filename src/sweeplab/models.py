"""Build a classifier for a data set: our two course nets or any torchvision classification model.

Every model is `Sequential(adapt=AdaptInput, net=<the network>)`: `adapt` turns the data's
images into what the network needs (grayscale -> 3 channels, small images upsampled), so every
model runs on every data set, and exported models take the data's own image size.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sweeplab.config import ModelConfig
from sweeplab.errors import UserError, first_line

OUR_MODELS = ("mlp", "cnn")


class AdaptInput(nn.Module):
    """Repeat a single channel to `channels` and upsample to `size` where the network needs it."""

    def __init__(self, channels: int, size: tuple[int, int]):
        super().__init__()
        self.channels = channels
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1)
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return x


def dense_stack(in_features: int, hidden: list[int], num_classes: int) -> nn.Sequential:
    """Flatten -> [Linear -> ReLU] per hidden width -> Linear to the classes."""
    layers: list[nn.Module] = [nn.Flatten()]
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True)]
        in_features = width
    return nn.Sequential(*layers, nn.Linear(in_features, num_classes))


def mlp(image_shape: tuple[int, int, int], hidden: list[int], num_classes: int) -> nn.Module:
    """The FashionMNIST tutorial network."""
    channels, height, width = image_shape
    return dense_stack(channels * height * width, hidden, num_classes)


def cnn(image_shape: tuple[int, int, int], hidden: list[int], num_classes: int) -> nn.Module:
    """The classic CIFAR-10 network: 3x[conv5x5 pad2 + ReLU + maxpool2], then dense layers."""
    channels, height, width = image_shape
    if min(height, width) < 8:
        raise UserError(
            f"model=cnn halves the image three times and needs at least 8x8 images, got {height}x{width}: "
            "upsample them with model.min_size=8"
        )
    features: list[nn.Module] = []
    for out_channels in (32, 32, 64):
        features += [nn.Conv2d(channels, out_channels, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        channels = out_channels
    head = dense_stack(channels * (height // 8) * (width // 8), hidden, num_classes)
    return nn.Sequential(*features, head)


def build_model(cfg: ModelConfig, image_shape: tuple[int, int, int], num_classes: int) -> nn.Sequential:
    weights_file = local_weights_file(cfg.weights)
    size = upsampled_size(image_shape[1:], cfg.min_size)
    if cfg.name in OUR_MODELS:
        if cfg.weights and not weights_file:
            raise UserError(f"model={cfg.name} has no torchvision weights: pass model.weights=/path/to/state_dict.pt")
        channels = image_shape[0]
        net = (mlp if cfg.name == "mlp" else cnn)((channels, *size), list(cfg.hidden), num_classes)
    else:
        net = torchvision_classifier(cfg.name, None if weights_file else cfg.weights, num_classes)
        channels = 3
    if weights_file:
        load_local_weights(net, weights_file)
    if cfg.freeze_backbone:
        freeze_all_but_head(net)
    model = nn.Sequential(OrderedDict(adapt=AdaptInput(channels, size), net=net))
    check_forward(model, cfg.name, image_shape)
    return model


def torchvision_classifier(name: str, weights: str | None, num_classes: int) -> nn.Module:
    """A torchvision model by name, pretrained weights by torchvision name, a new head for our classes."""
    import torchvision.models

    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise UserError(f"unknown model '{name}': use mlp, cnn or a torchvision classifier ({', '.join(known)})")
    try:
        net = torchvision.models.get_model(name, weights=weights)
    except (KeyError, ValueError):  # an unknown weight name
        names = ", ".join(torchvision.models.get_model_weights(name).__members__)
        raise UserError(f"model.weights={weights} is not a weight of {name}: use one of {names}, or a file") from None
    except OSError as error:  # URLError included: offline and not in the torch hub cache
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise UserError(
            f"could not download {name} weights {weights} ({error}): put the file in {cache} "
            "or pass model.weights=/path/to/state_dict.pt"
        ) from None
    drop_aux_heads(net)
    replace_head(net, num_classes)
    return net


def drop_aux_heads(net: nn.Module) -> None:
    """GoogLeNet and Inception return (logits, aux logits) in training; we train on the logits alone.

    This is what torchvision does itself for pretrained weights loaded without aux_logits.
    """
    if getattr(net, "aux_logits", False):
        net.aux_logits = False
        for name in ("aux1", "aux2", "AuxLogits"):
            if hasattr(net, name):
                setattr(net, name, None)


def local_weights_file(weights: str | None) -> Path | None:
    """A state_dict file, as opposed to a torchvision weight name such as DEFAULT."""
    if weights and (Path(weights).suffix in (".pt", ".pth") or Path(weights).is_file()):
        return Path(weights)
    return None


def head_of(net: nn.Module) -> tuple[str, nn.Module]:
    """The classification head: the last Linear layer (or 1x1 conv, as in SqueezeNet)."""
    heads = [(n, m) for n, m in net.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    return heads[-1]


def replace_head(net: nn.Module, num_classes: int) -> None:
    name, old = head_of(net)
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes)
    else:
        new = nn.Conv2d(old.in_channels, num_classes, old.kernel_size, old.stride, old.padding)
    parent_name, _, attribute = name.rpartition(".")
    setattr(net.get_submodule(parent_name), attribute, new)


def freeze_all_but_head(net: nn.Module) -> None:
    net.requires_grad_(False)
    head_of(net)[1].requires_grad_(True)


def load_local_weights(net: nn.Module, path: Path) -> None:
    """Load a state_dict file (or a sweeplab checkpoint's model) into everything but the new head.

    Tensors of the head may differ in shape (other classes) and are left as built; any other
    tensor that is absent or of another shape means the file is for another architecture.
    """
    from sweeplab.checkpoint import load_state_file

    state = load_state_file(path)
    if not isinstance(state, dict):
        kind = type(state).__name__
        raise UserError(f"{path} holds a {kind}, not a state_dict: pass a file saved from model.state_dict()")
    if isinstance(state.get("model"), dict):  # a sweeplab checkpoint: its model is Sequential(adapt, net)
        state = {key.removeprefix("net."): value for key, value in state["model"].items()}
    own = net.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    head = head_of(net)[0] + "."
    unfit = [k for k in own if k not in fitting and not k.startswith(head)]
    if unfit:
        raise UserError(
            f"{path} does not fit this model: {len(unfit)} of the model's {len(own)} tensors are absent or "
            f"shaped differently (first: {unfit[0]}); pass a state_dict of the same architecture"
        )
    net.load_state_dict(fitting, strict=False)


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
