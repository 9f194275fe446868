"""Any timm (PyTorch Image Models) classifier by name, its pretrained weights by timm's tags.

Imported only when a timm model is built: timm is an extra (`pip install -e ".[timm]"`).
timm builds the network for the data's channels (`in_chans`, which also folds pretrained RGB
weights into one channel) and, for models of a fixed input size (ViT, Swin, MaxViT ...), for the
data's image size (`img_size`) instead of having it upsampled to 224.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig
from torch import nn

from sweeplab.core.errors import UserError, first_line

try:
    import timm
    from huggingface_hub.constants import HF_HUB_CACHE
    from timm.models import get_pretrained_cfg
except ImportError:  # the extra is not installed: say how to install it when a timm model is asked for
    timm = None


DEFAULT_WEIGHTS = "DEFAULT"  # timm's default pretrained tag of the architecture, as torchvision names it


@dataclass(frozen=True)
class PretrainedInput:
    """What a timm model's pretrained weights were trained on (timm's pretrained config)."""

    size: int  # height and width
    crop_pct: float  # image folders: resize the shorter side to size / crop_pct, then center-crop size
    mean: list[float]
    std: list[float]


def timm_classifier(
    cfg: DictConfig, image_shape: tuple[int, int, int], num_classes: int, weights: str | None
) -> nn.Module:
    """timm's `cfg.name` for `num_classes` classes and the data's channels, pretrained when `weights` names a tag."""
    pretrained_cfg = checked_pretrained_cfg(cfg.name, weights)
    channels, height, width = image_shape
    size = {"img_size": (height, width)} if pretrained_cfg.fixed_input_size else {}
    try:
        return timm.create_model(model_name(cfg.name, weights), pretrained=weights is not None,
                                 num_classes=num_classes, in_chans=channels, **size)
    except OSError:  # offline and not in the Hugging Face cache (LocalEntryNotFoundError is one)
        hub_id = pretrained_cfg.hf_hub_id or model_name(cfg.name, weights)
        raise UserError(
            f"timm's weights {hub_id} are neither in the Hugging Face cache ({HF_HUB_CACHE}) nor downloadable: "
            f"fetch them where there is a network (hf download {hub_id}) and copy that cache here, or pass "
            "model.weights=/path/to/state_dict.pt"
        ) from None
    except (RuntimeError, AssertionError, ValueError) as error:  # e.g. a window or patch larger than the image
        raise UserError(
            f"model=timm model.name={cfg.name} cannot be built for {height}x{width} images "
            f"({first_line(error)}): raise model.min_size, e.g. model.min_size=224"
        ) from None


def pretrained_input(cfg: DictConfig) -> PretrainedInput | None:
    """The input `cfg.weights` were trained on; None without named weights (random or a local file)."""
    if cfg.weights is None:
        return None
    pretrained_cfg = checked_pretrained_cfg(cfg.name, cfg.weights)
    return PretrainedInput(size=int(pretrained_cfg.input_size[-1]), crop_pct=float(pretrained_cfg.crop_pct),
                           mean=[float(v) for v in pretrained_cfg.mean], std=[float(v) for v in pretrained_cfg.std])


def checked_pretrained_cfg(name: str, weights: str | None):
    """timm's pretrained config of `name` (with the tag `weights` names), or one line saying what exists."""
    if timm is None:
        raise UserError('model=timm needs timm: pip install -e ".[timm]" (or pip install timm)')
    if name not in timm.list_models():
        close = (timm.list_models(f"{name}*") or timm.list_models(f"*{name}*"))[:10]
        hint = f"e.g. {', '.join(close)}" if close else "timm.list_models() lists them"
        raise UserError(f"model.name={name} is not a timm model: {hint}")
    try:
        pretrained_cfg = get_pretrained_cfg(model_name(name, weights))
    except RuntimeError:  # "Invalid pretrained tag"
        pretrained_cfg = None
    if pretrained_cfg is None:
        tags = [full.partition(".")[2] for full in timm.list_pretrained(f"{name}.*")]
        raise UserError(f"model.weights={weights} is not a tag of timm's {name}: use DEFAULT"
                        f"{', ' + ', '.join(tags) if tags else ''} or a file")
    return pretrained_cfg


def model_name(name: str, weights: str | None) -> str:
    """timm's `name.tag` for a tag, the bare name for random weights or the architecture's default tag."""
    return name if weights in (None, DEFAULT_WEIGHTS) else f"{name}.{weights}"
