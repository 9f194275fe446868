"""A network's classification head, and what touches it: replacing it, freezing the rest, local weights."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from sweeplab.core.errors import UserError
from sweeplab.training.checkpoint import load_state_file


def local_weights_file(weights: str | None) -> Path | None:
    """A state_dict file, as opposed to a torchvision weight name such as DEFAULT."""
    if weights and (Path(weights).suffix in (".pt", ".pth") or Path(weights).is_file()):
        return Path(weights)
    return None


def head_of(net: nn.Module) -> tuple[str, nn.Module]:
    """The classification head: what timm's `get_classifier()` names, else the last Linear layer (or 1x1
    conv, as in SqueezeNet)."""
    if hasattr(net, "get_classifier"):
        classifier = net.get_classifier()
        return next((n, m) for n, m in net.named_modules() if m is classifier)
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
