"""timm models: built for the data's channels and size, heads through timm's accessor, pretrained weights that set
the input (and one line when they cannot be had offline), and a timm ViT trained, exported and predicted end to end.

timm's `test_*` models are a few hundred thousand parameters with random weights: real timm code, at test speed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from launch import QUIET, run_train
from sweeplab.cli.main import main
from sweeplab.config.schema import TimmConfig
from sweeplab.core.errors import UserError
from sweeplab.export.from_checkpoint import export_and_verify
from sweeplab.models import build_model, convolutional, follow_pretrained_input
from sweeplab.models.weights import head_of

DIGITS = (1, 8, 8)
CIFAR = (3, 32, 32)


def timm_cfg(name: str, **overrides):
    return OmegaConf.structured(TimmConfig(name=name, **overrides))


@pytest.mark.parametrize("image_shape", [DIGITS, CIFAR], ids=["1x8x8", "3x32x32"])
@pytest.mark.parametrize("name", ["test_vit", "test_convnext", "test_efficientnet"])
def test_timm_models_take_the_datas_channels_and_get_a_head_for_its_classes(name: str, image_shape) -> None:
    model = build_model(timm_cfg(name), image_shape, 7)
    model.train()
    out = model(torch.rand(3, *image_shape))
    assert out.shape == (3, 7) and torch.isfinite(out).all()
    assert head_of(model.net)[1] is model.net.get_classifier() and model.net.get_classifier().out_features == 7
    first_conv = next(m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == image_shape[0] and model.adapt.channels is None  # timm's in_chans, no repeat


def test_a_vit_is_built_at_the_datas_size_and_is_not_channels_last() -> None:
    model = build_model(timm_cfg("test_vit", min_size=0), CIFAR, 10)
    assert tuple(model.net.patch_embed.img_size) == (32, 32) and model.adapt.size is None  # not upsampled to 160
    assert not convolutional(model)
    assert convolutional(build_model(timm_cfg("test_convnext"), CIFAR, 10))


def test_freeze_backbone_trains_only_timms_classifier() -> None:
    model = build_model(timm_cfg("test_convnext", freeze_backbone=True), CIFAR, 5)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"net.head.fc.weight", "net.head.fc.bias"}


@pytest.mark.parametrize(
    ("name", "weights", "match"),
    [
        ("no_such_net", None, "model.name=no_such_net is not a timm model"),
        ("vit_tiny", None, "is not a timm model: e.g. .*vit_tiny_patch16_224"),
        ("resnet18", "zz_in1k", "model.weights=zz_in1k is not a tag of timm's resnet18: use DEFAULT, a1_in1k"),
    ],
)
def test_bad_timm_names_are_one_line(name: str, weights: str | None, match: str) -> None:
    with pytest.raises(UserError, match=match) as error:
        build_model(timm_cfg(name, weights=weights), CIFAR, 10)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        ("digits", {"model.min_size": 160, "dataset.mean": [0.5], "dataset.std": [0.5]}),  # grayscale: one channel
        ("hymenoptera", {"dataset.crop_size": 160, "dataset.image_size": 168,  # 160 / crop_pct 0.95
                         "dataset.mean": [0.5] * 3, "dataset.std": [0.5] * 3}),
    ],
)
def test_pretrained_weights_set_the_input_before_the_data_is_built(compose_train, dataset: str, expected) -> None:
    cfg = compose_train(["model=timm", "model.name=test_vit", "model.weights=DEFAULT", f"dataset={dataset}"])
    follow_pretrained_input(cfg)
    actual = OmegaConf.create({key: OmegaConf.select(cfg, key) for key in expected})
    assert OmegaConf.to_container(actual) == expected
    untouched = compose_train(["model=timm", "model.name=test_vit", f"dataset={dataset}"])
    follow_pretrained_input(untouched)  # random weights keep the data's own input
    assert untouched == compose_train(["model=timm", "model.name=test_vit", f"dataset={dataset}"])


def test_pretrained_weights_not_at_hand_offline_are_one_line(tmp_path: Path) -> None:
    result = run_train("model=timm", "model.name=test_vit", "model.weights=DEFAULT", *QUIET, cwd=tmp_path,
                       env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(errors) == 1 and "timm/test_vit.r160_in1k" in errors[0] and "hf download" in errors[0], result.stderr


def test_a_timm_vit_trains_exports_with_parity_and_predicts(train_here, tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    result = train_here("model=timm", "model.name=test_vit", "trainer.epochs=1", *QUIET, f"hydra.run.dir={run_dir}",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = export_and_verify(run_dir / "checkpoints" / "best.pt", tmp_path / "export", 1e-4, 8)
    onnx_file = report.files[0]
    picture = tmp_path / "seven.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)).save(picture)
    answers = []
    for source in (["--run", str(run_dir)], ["--onnx", str(onnx_file)]):
        capsys.readouterr()
        assert main(["predict", *source, str(picture), "--json"]) == 0
        answers.append(json.loads(capsys.readouterr().out)[0]["predictions"])
    assert answers[0][0]["class"] == answers[1][0]["class"]
    np.testing.assert_allclose([p["probability"] for p in answers[0]], [p["probability"] for p in answers[1]],
                               atol=1e-5)
