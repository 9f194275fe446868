"""The config tree: every group option composes against the schema, bad values fail before compute."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from sweeplab.config.checks import RANGES, check_ranges
from sweeplab.config.schema import config_dir
from sweeplab.core.errors import UserError
from sweeplab.core.vocabulary import metric_mode

REPO = Path(__file__).resolve().parents[1]
GROUPS = ("dataset", "model", "optimizer", "scheduler", "device", "trainer", "tracking")
# Options whose yaml leaves a key for the user to fill in (`???`).
REQUIRED = {"dataset=imagefolder": ["dataset.path=/some/folder"], "model=torchvision": ["model.name=resnet18"],
            "model=timm": ["model.name=convnext_atto"]}


def group_options() -> list[str]:
    conf = Path(config_dir())
    return [f"{group}={path.stem}" for group in GROUPS for path in sorted((conf / group).glob("*.yaml"))]


def test_default_is_digits_mlp_adam(compose_train) -> None:
    cfg = compose_train()
    assert (cfg.dataset.name, cfg.model.name, cfg.optimizer._target_) == ("digits", "mlp", "torch.optim.Adam")
    assert cfg.paths.data_dir == "data" and cfg.optimized_metric == "val/acc"
    check_ranges(cfg)


def test_every_group_has_options() -> None:
    options = group_options()
    for group in GROUPS:
        assert any(option.startswith(f"{group}=") for option in options), group


@pytest.mark.parametrize("option", group_options())
def test_every_group_option_composes_and_resolves(option: str, compose_train) -> None:
    group = option.split("=")[0]
    cfg = compose_train([option, *REQUIRED.get(option, [])])
    node = OmegaConf.to_container(cfg[group], resolve=True, throw_on_missing=True)
    assert isinstance(node, dict) and node
    check_ranges(cfg)


def numeric_keys(compose_train) -> dict[str, tuple[str, list[str]]]:
    """Every int or float key (lists of them too) of every option of every group, and of the top level: its declared
    type and the overrides of an option that has it."""
    from sweeplab.config.reference import TOP_LEVEL, keys

    found = {}
    for option in group_options():
        group, base = option.split("=")[0], [option, *REQUIRED.get(option, [])]
        found |= {key.name: (key.declared, base) for key in keys(compose_train(base)[group], f"{group}.")
                  if key.name not in found}
    found |= {key.name: (key.declared, []) for key in keys(compose_train(), "") if key.name.split(".")[0] in TOP_LEVEL}
    return {name: found[name] for name in found if "int" in found[name][0] or "float" in found[name][0]}


def test_every_numeric_key_has_a_range_checked_before_compute(compose_train) -> None:
    """RANGES is the whole list: a numeric key added to the schema without a range fails here, and each range is
    checked: a value far outside it is refused in one line naming the key."""
    numeric = numeric_keys(compose_train)
    assert sorted(set(numeric) - set(RANGES)) == []
    assert sorted(set(RANGES) - set(numeric)) == []  # no range for a key that is gone
    for key, (declared, base) in numeric.items():
        bad = "[-5]" if "list" in declared else "-5"
        with pytest.raises(UserError, match=f"^{key}=.* is invalid"):
            check_ranges(compose_train([*base, f"{key}={bad}"]))


def test_dataset_keys_flow_into_source(compose_train) -> None:
    cfg = compose_train(["dataset=imagefolder", "dataset.path=/x", "dataset.image_size=48", "dataset.val_fraction=0.3"])
    source = OmegaConf.to_container(cfg.dataset.source, resolve=True)
    assert source["path"] == "/x" and source["image_size"] == 48 and source["val_fraction"] == 0.3
    cfg = compose_train(["dataset=cifar10", "paths.data_dir=/d"])
    assert cfg.dataset.source.root == "/d"


def test_image_size_alone_sets_the_image_folder_size(compose_train) -> None:
    """`dataset=imagefolder dataset.image_size=32` must not crop (pad) to a fixed larger size."""
    cfg = compose_train(["dataset=imagefolder", "dataset.path=/x", "dataset.image_size=32"])
    assert cfg.dataset.crop_size in (None, 32)


def test_hymenoptera_lives_under_data_dir(compose_train) -> None:
    cfg = compose_train(["dataset=hymenoptera", "paths.data_dir=/d"])
    assert cfg.dataset.path == "/d/hymenoptera_data"
    assert cfg.dataset.source.path == "/d/hymenoptera_data"


def test_unknown_group_option_names_the_group(compose_train) -> None:
    with pytest.raises(MissingConfigException, match="model/nope"):
        compose_train(["model=nope"])


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("trainer.epochs=abc", "trainer.epochs"),
        ("optimizer.lr=fast", "optimizer.lr"),
        ("dataset.batch_size=1.5", "dataset.batch_size"),
        ("trainer.compile=maybe", "trainer.compile"),
    ],
)
def test_wrong_type_names_the_key(override: str, key: str, compose_train) -> None:
    with pytest.raises(ConfigCompositionException) as error:
        compose_train([override])
    assert key in str(error.value.__cause__)


@pytest.mark.parametrize("override", ["trainer.foo=1", "dataset.colour=red", "optimizer.momentum=0.9", "nope=1"])
def test_unknown_key_is_refused(override: str, compose_train) -> None:
    with pytest.raises(ConfigCompositionException):
        compose_train([override])


@pytest.mark.parametrize(
    "override",
    [
        "optimizer.lr=0",
        "optimizer.lr=-0.1",
        "dataset.batch_size=0",
        "dataset.eval_batch_size=0",
        "dataset.num_workers=-1",
        "dataset.val_fraction=0",
        "dataset.val_fraction=1",
        "trainer.epochs=0",
        "trainer.label_smoothing=1.0",
        "trainer.precision=16",
        "trainer.grad_clip=0",
        "device.type=gpu",
        "optimized_metric=val/f1",
    ],
)
def test_check_ranges_names_the_key(override: str, compose_train) -> None:
    cfg = compose_train([override])
    key = override.split("=")[0]
    with pytest.raises(UserError, match=f"^{key}=") as error:
        check_ranges(cfg)
    assert "\n" not in str(error.value)


def test_metric_mode() -> None:
    assert metric_mode("val/loss") == "min" and metric_mode("train/loss") == "min"
    assert metric_mode("val/acc") == "max"


def modules_after(arguments: list[str]) -> set[str]:
    """The top-level packages loaded once `python train.py <arguments>` is done."""
    code = (f"import runpy, sys, json; sys.argv = ['train.py', *{arguments!r}]\n"
            f"try:\n    runpy.run_path({str(REPO / 'train.py')!r}, run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "print(json.dumps(sorted(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in json.loads(result.stdout.splitlines()[-1])}


@pytest.mark.parametrize("arguments", [["--help"], ["--cfg", "job"], ["optimizer.lr=abc"]],
                         ids=["help", "cfg-job", "config-error"])
def test_instant_commands_load_neither_torch_nor_mlflow(arguments: list[str]) -> None:
    """`--help`, `--cfg job` and a config error come back fast: only Hydra and the config schema are loaded."""
    loaded = modules_after(arguments)
    assert "hydra" in loaded and not loaded & {"torch", "mlflow", "torchvision", "matplotlib"}


@pytest.mark.parametrize("overrides", [["model=resnet18", "model.hidden=[64]"], ["model=mlp", "model.kernel=3"],
                                       ["model=vgg16", "model.hidden=[8]"]])
def test_a_key_the_model_does_not_have_is_refused(overrides: list[str], compose_train) -> None:
    """Each model family has its own schema: torchvision models have no hidden widths to ignore silently."""
    with pytest.raises(ConfigCompositionException, match="hidden|kernel"):
        compose_train(overrides)


@pytest.mark.parametrize("preset", sorted(path.stem for path in (Path(config_dir()) / "experiment").glob("*.yaml")))
def test_every_experiment_preset_composes_and_passes_the_range_checks(preset: str, compose_train) -> None:
    check_ranges(compose_train([f"experiment={preset}"]))


def test_a_sweep_asked_for_its_config_is_one_line(train_here, tmp_path: Path) -> None:
    """Hydra's own flag check (-m with --cfg) raises a bare ValueError: one line, not its traceback."""
    result = train_here("-m", "seed=0,1", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: Only one of --run, --multirun, --cfg") and "drop -m" in result.stderr
