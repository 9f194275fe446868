"""Models: every architecture takes every data set's images, heads fit the classes, weights load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from omegaconf import OmegaConf
from torch import nn

from sweeplab.config.schema import CNNConfig, MLPConfig, TorchvisionConfig
from sweeplab.core.errors import UserError
from sweeplab.models import build_model
from sweeplab.models.vision import drop_aux_heads
from sweeplab.models.weights import head_of
from sweeplab.training.checkpoint import save_checkpoint
from sweeplab.training.optim import build_optimizer

DIGITS = (1, 8, 8)
CIFAR = (3, 32, 32)


def model_cfg(name: str, **overrides):
    """What Hydra hands build_model: the model's own structured config (its schema), as the yaml presets make it."""
    if name == "mlp":
        return OmegaConf.structured(MLPConfig(**overrides))
    if name == "cnn":
        return OmegaConf.structured(CNNConfig(**overrides))
    return OmegaConf.structured(TorchvisionConfig(name=name, **overrides))


def logits(model: nn.Module, image_shape: tuple[int, int, int], n: int = 3) -> torch.Tensor:
    model.train()  # training mode: the output the loss sees (no aux-logit tuples)
    return model(torch.rand(n, *image_shape))


@pytest.mark.parametrize("image_shape", [DIGITS, CIFAR], ids=["1x8x8", "3x32x32"])
@pytest.mark.parametrize("name", ["mlp", "cnn", "vgg16", "resnet18", "mobilenet_v3_small"])
def test_every_model_classifies_every_image_shape(name: str, image_shape: tuple[int, int, int]) -> None:
    model = build_model(model_cfg(name), image_shape, 7)
    assert list(dict(model.named_children())) == ["adapt", "net"]
    out = logits(model, image_shape)
    assert out.shape == (3, 7) and torch.isfinite(out).all()
    head = head_of(model.net)[1]
    assert (head.out_features if isinstance(head, nn.Linear) else head.out_channels) == 7


def test_mlp_is_the_tutorial_net() -> None:
    model = build_model(model_cfg("mlp"), (1, 28, 28), 10)
    shapes = [(m.in_features, m.out_features) for m in model.net if isinstance(m, nn.Linear)]
    assert shapes == [(784, 512), (512, 512), (512, 10)]


def test_cnn_derives_its_dense_input_from_the_image_size() -> None:
    model = build_model(model_cfg("cnn", hidden=[64]), CIFAR, 10)
    convs = [m for m in model.net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (3, 32, (5, 5), (2, 2)),
        (32, 32, (5, 5), (2, 2)),
        (32, 64, (5, 5), (2, 2)),
    ]
    dense = [(m.in_features, m.out_features) for m in model.net.modules() if isinstance(m, nn.Linear)]
    assert dense == [(64 * 4 * 4, 64), (64, 10)]


def test_cnn_refuses_images_it_cannot_pool() -> None:
    with pytest.raises(UserError, match="at least 8x8 images, got 4x4: upsample them with model.min_size=8"):
        build_model(model_cfg("cnn"), (1, 4, 4), 10)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_our_nets_are_built_for_the_upsampled_size(name: str) -> None:
    model = build_model(model_cfg(name, min_size=16), (1, 4, 4), 10)
    first_dense = next(m for m in model.net.modules() if isinstance(m, nn.Linear))
    assert first_dense.in_features == (16 * 16 if name == "mlp" else 64 * 2 * 2)
    assert logits(model, (1, 4, 4)).shape == (3, 10)


def test_grayscale_is_repeated_and_small_images_upsampled_for_torchvision_models() -> None:
    model = build_model(model_cfg("resnet18", min_size=40), (1, 10, 20), 3)
    seen = model.adapt(torch.rand(2, 1, 10, 20))
    assert seen.shape == (2, 3, 40, 80)
    assert torch.equal(seen[:, 0], seen[:, 2])


def test_any_torchvision_name_gets_a_new_head() -> None:
    model = build_model(model_cfg("squeezenet1_0"), CIFAR, 4)  # its head is a 1x1 conv
    assert head_of(model.net)[1].out_channels == 4
    assert logits(model, CIFAR).shape == (3, 4)


def test_aux_heads_are_dropped() -> None:
    net = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    drop_aux_heads(net)
    net.train()
    assert isinstance(net(torch.rand(2, 3, 64, 64)), torch.Tensor)
    assert net.aux1 is None and net.aux2 is None


def test_freeze_backbone_trains_only_the_head() -> None:
    model = build_model(model_cfg("resnet18", freeze_backbone=True), CIFAR, 5)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"net.fc.weight", "net.fc.bias"}
    optimizer = build_optimizer(OmegaConf.create({"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1}), model)
    assert sum(len(group["params"]) for group in optimizer.param_groups) == 2


def test_local_state_dict_loads_all_but_the_head(tmp_path: Path) -> None:
    source = torchvision.models.resnet18(num_classes=1000)
    path = tmp_path / "resnet18.pt"
    torch.save(source.state_dict(), path)
    model = build_model(model_cfg("resnet18", weights=str(path)), CIFAR, 5)
    assert torch.equal(model.net.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert torch.equal(model.net.bn1.running_var, source.bn1.running_var)
    assert model.net.fc.out_features == 5


def test_a_sweeplab_checkpoint_is_a_valid_weights_file(tmp_path: Path) -> None:
    trained = build_model(model_cfg("cnn"), CIFAR, 10)
    save_checkpoint({"model": trained.state_dict(), "config": {}, "classes": []}, tmp_path / "best.pt")
    model = build_model(model_cfg("cnn", weights=str(tmp_path / "best.pt")), CIFAR, 10)
    for mine, theirs in zip(model.state_dict().values(), trained.state_dict().values(), strict=True):
        assert torch.equal(mine, theirs)


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), path)
    with pytest.raises(UserError, match="does not fit this model.*same architecture"):
        build_model(model_cfg("resnet18", weights=str(path)), CIFAR, 10)
    torch.save(build_model(model_cfg("mlp"), DIGITS, 10).net.state_dict(), path)
    with pytest.raises(UserError, match=r"does not fit this model: 1 of .*\(first: 1.weight\)"):
        build_model(model_cfg("mlp", weights=str(path)), (1, 28, 28), 10)


@pytest.mark.parametrize(
    ("name", "weights", "match"),
    [
        ("no_such_net", None, "unknown model 'no_such_net'"),
        ("mlp", "DEFAULT", "model=mlp has no torchvision weights"),
        ("resnet18", "NO_SUCH_WEIGHTS", "model.weights=NO_SUCH_WEIGHTS is not a weight of resnet18: .*IMAGENET1K_V1"),
        ("resnet18", "/nowhere/weights.pt", "no checkpoint at /nowhere/weights.pt"),
    ],
)
def test_bad_names_are_user_errors(name: str, weights: str | None, match: str) -> None:
    with pytest.raises(UserError, match=match):
        build_model(model_cfg(name, weights=weights), CIFAR, 10)


@pytest.mark.parametrize(
    ("name", "image_shape", "min_size"),
    [("vgg16", DIGITS, 0), ("vit_b_16", CIFAR, 32)],
    ids=["vgg16-pools-below-1px", "vit-asserts-224"],
)
def test_a_model_that_cannot_take_the_images_is_refused_in_one_line(name, image_shape, min_size) -> None:
    with pytest.raises(UserError, match=f"model={name} cannot classify .*model.min_size") as error:
        build_model(model_cfg(name, min_size=min_size), image_shape, 10)
    assert "\n" not in str(error.value)
