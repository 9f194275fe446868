"""A trained run's classifier rebuilt from its checkpoint: uint8 images in, logits out.

The network is rebuilt on the CPU from the checkpoint's config and weights, behind the data's
normalization, so the same module serves prediction, the ONNX export and its parity check, and
nobody normalizes twice (see sweeplab.runs.preprocessing).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from omegaconf import OmegaConf
from torch import nn

from sweeplab.config.schema import CNNConfig, MLPConfig, TorchvisionConfig
from sweeplab.data.augment import Normalize
from sweeplab.models import build_model
from sweeplab.training.checkpoint import serving_weights


def image_classifier(model: nn.Module, mean: list[float], std: list[float]) -> nn.Sequential:
    """`model` behind the normalization it was trained with: it takes uint8 NCHW images as they are."""
    return nn.Sequential(OrderedDict(normalize=Normalize(mean, std), model=model)).eval()


def rebuild_model(payload: dict[str, Any]) -> nn.Module:
    """The checkpoint's network on the CPU in eval mode, whatever device trained it."""
    saved = payload["config"]["model"]
    # The trained weights replace any pretrained ones: never download or read them again.
    model_cfg = OmegaConf.create({"_target_": saved_target(saved), **saved, "weights": None})
    shape = tuple(int(n) for n in payload["input"]["shape"])
    model = build_model(model_cfg, shape, len(payload["classes"]))  # type: ignore[arg-type]
    model.load_state_dict(serving_weights(payload))
    return model.eval()


def rebuild_classifier(payload: dict[str, Any]) -> nn.Sequential:
    description = payload["input"]
    return image_classifier(rebuild_model(payload), list(description["mean"]), list(description["std"]))


def saved_target(saved: dict[str, Any]) -> str:
    """The model builder a checkpoint's config names; checkpoints from before per-model schemas name none."""
    defaults = {"mlp": MLPConfig._target_, "cnn": CNNConfig._target_}
    return saved.get("_target_") or defaults.get(saved["name"], TorchvisionConfig._target_)
