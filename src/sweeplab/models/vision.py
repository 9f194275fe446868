"""Any torchvision classification model by name, pretrained weights by torchvision's weight names."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision.models
from omegaconf import DictConfig
from torch import nn

from sweeplab.core.errors import UserError
from sweeplab.models.weights import replace_head


def torchvision_classifier(
    cfg: DictConfig, image_shape: tuple[int, int, int], num_classes: int, weights: str | None
) -> nn.Module:
    """torchvision's `cfg.name` with `weights` (a weight name or None), its head replaced for our classes."""
    known = torchvision.models.list_models(module=torchvision.models)
    if cfg.name not in known:
        raise UserError(f"unknown model '{cfg.name}': use mlp, cnn or a torchvision classifier ({', '.join(known)})")
    try:
        net = torchvision.models.get_model(cfg.name, weights=weights)
    except (KeyError, ValueError):  # an unknown weight name
        names = ", ".join(torchvision.models.get_model_weights(cfg.name).__members__)
        raise UserError(
            f"model.weights={weights} is not a weight of {cfg.name}: use one of {names}, or a file"
        ) from None
    except OSError as error:  # URLError included: offline and not in the torch hub cache
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise UserError(
            f"could not download {cfg.name} weights {weights} ({error}): put the file in {cache} "
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
