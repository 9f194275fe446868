"""`python train.py ...` as a user runs it, on small data in the real on-disk formats.

Each run is the whole command (Hydra, its callbacks, the job) run in this process (conftest's `train_here`)
in its own temporary directory with `hydra.run.dir` inside it, tracking off (MLflow has its own tests) and
downloads pointed at a dead proxy, so nothing here needs or uses the network; what only a process shows (the
console script, import times) runs in one. What a run leaves behind (checkpoints/best.pt and last.pt) is checked by
loading it the way later tools do: weights-only, then into a freshly built model.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data_formats import CIFAR_CLASSES, write_cifar10, write_image_folder
from launch import OFFLINE, QUIET, TRAIN, run_train
from sweeplab.core.vocabulary import BEST_CHECKPOINT as BEST
from sweeplab.core.vocabulary import LAST_CHECKPOINT as LAST
from sweeplab.runs.classifier import rebuild_model
from sweeplab.training.checkpoint import load_checkpoint


def trained(train_here, cwd: Path, *overrides: str) -> dict:
    """Run a training in this process that must succeed, into cwd/run; return its best checkpoint."""
    run_dir = cwd / "run"
    result = train_here(f"hydra.run.dir={run_dir}", *overrides, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(run_dir) in result.stdout.replace("\n", "")
    assert (run_dir / "checkpoints" / LAST).is_file()
    return load_checkpoint(run_dir / "checkpoints" / BEST)


def accuracy(run_dir: Path) -> float:
    """What the run wrote in result.json: its test accuracy where the data set has a test split, else its best
    val/acc."""
    result = json.loads((run_dir / "result.json").read_text())
    return result["value"] if result["test_acc"] is None else result["test_acc"]


def assert_above_chance(accuracy: float, num_classes: int) -> None:
    """Well clear of guessing: the generated classes are a bright square each, which every run here learns."""
    assert accuracy >= 1 / num_classes + 0.3, f"accuracy {accuracy:.2f} with {num_classes} classes"


def assert_rebuilds(checkpoint: dict) -> None:
    """Later tools rebuild the model from the checkpoint alone: config, input shape, classes."""
    rebuild_model(checkpoint)  # the config's model, built for the input shape and classes, takes the weights
    assert all(math.isfinite(value) for value in checkpoint["metrics"].values())


@pytest.fixture(scope="module")
def learnable_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A train-only image folder big enough to learn from (20 images a class; conftest's has 10)."""
    return write_image_folder(tmp_path_factory.mktemp("folder"), ("cats", "dogs", "fish"), {"train": 20}, seed=4)


# Each run trains just long enough to beat chance clearly (measured over seeds): small batches, a few epochs.
# CIFAR-10 learns in test_cifar10_learns_and_the_same_seed_gives_an_identical_run, which trains it anyway.
@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "shape", "classes"),
    [
        (["dataset=mnist", "model=mlp", "trainer.epochs=1"], [1, 28, 28], None),
        (["dataset=fashion_mnist", "model=cnn", "dataset.batch_size=16", "trainer.epochs=3"], [1, 28, 28], None),
        (["dataset=imagefolder", "dataset.path={folder}", "dataset.image_size=24", "dataset.crop_size=20",
          "dataset.num_workers=0", "model=mlp", "dataset.batch_size=4", "trainer.epochs=3"], [3, 20, 20],
         ["cats", "dogs", "fish"]),
        (["dataset=imagefolder", "dataset.path={data}/hymenoptera_data", "dataset.image_size=32",
          "dataset.crop_size=32", "model=mlp", "dataset.batch_size=4", "trainer.epochs=3"], [3, 32, 32],
         ["ants", "bees"]),
        (["dataset=hymenoptera", "dataset.image_size=40", "dataset.crop_size=32", "dataset.num_workers=0",
          "model=mlp", "scheduler=cosine", "dataset.batch_size=4", "trainer.epochs=4"], [3, 32, 32], ["ants", "bees"]),
        (["dataset=fake", "model=mlp", "optimizer=adamw", "trainer.epochs=2"], [3, 32, 32],
         [f"class_{i}" for i in range(10)]),
    ],
    ids=["mnist", "fashion_mnist", "imagefolder-train-only", "imagefolder-with-val", "hymenoptera", "fake"],
)
def test_every_dataset_trains_above_chance(train_here, tmp_path, data_dir, learnable_folder, overrides, shape,
                                           classes) -> None:
    overrides = [o.format(data=data_dir, folder=learnable_folder) for o in overrides]
    checkpoint = trained(train_here, tmp_path, f"paths.data_dir={data_dir}", *QUIET, *overrides)
    assert checkpoint["input"]["shape"] == shape
    assert len(checkpoint["classes"]) == 10 if classes is None else checkpoint["classes"] == classes
    assert checkpoint["config"]["paths"]["data_dir"] == str(data_dir)
    assert_rebuilds(checkpoint)
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / LAST)
    assert last["epoch"] == checkpoint["config"]["trainer"]["epochs"]
    if checkpoint["config"]["dataset"]["name"] == "fake":  # random labels: nothing to generalize, only to memorize
        assert_above_chance(last["history"][-1]["train_acc"], 10)
    else:
        assert_above_chance(accuracy(tmp_path / "run"), len(checkpoint["classes"]))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["vgg16", "resnet18"])
def test_big_torchvision_models_on_cifar_format_data(train_here, tmp_path: Path, model: str) -> None:
    write_cifar10(tmp_path / "data", per_batch=4, test_size=8)  # one tiny epoch: vgg16 is 138M parameters
    checkpoint = trained(
        train_here, tmp_path, f"paths.data_dir={tmp_path / 'data'}", "dataset=cifar10",
        "dataset.source.verify_checksums=false", f"model={model}", "trainer.epochs=1", *QUIET,
    )
    assert checkpoint["config"]["model"]["name"] == model and checkpoint["classes"] == CIFAR_CLASSES
    assert_rebuilds(checkpoint)


@pytest.mark.slow
def test_the_default_command_learns_digits(train_here, tmp_path: Path) -> None:
    """`python train.py` with nothing else (tracking aside): the embedded default reaches 95%, on held-out test
    data too."""
    run_dir = tmp_path / "run"
    result = train_here(f"hydra.run.dir={run_dir}", "tracking.enabled=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "val acc" in result.stdout and str(run_dir) in result.stdout.replace("\n", "")
    assert "images: 1150 train / 288 val / 359 test" in result.stdout
    assert json.loads((run_dir / "result.json").read_text())["test_acc"] >= 0.95
    best = load_checkpoint(run_dir / "checkpoints" / BEST)
    assert best["config"]["dataset"]["name"] == "digits" and best["config"]["model"]["name"] == "mlp"
    assert best["metrics"]["val/acc"] >= 0.95
    assert best["metrics"]["val/acc"] == max(epoch["val_acc"] for epoch in best["history"])


def history_without_timings(checkpoint: dict) -> list[dict]:
    timings = ("seconds", "images_per_second")
    return [{k: v for k, v in epoch.items() if k not in timings} for epoch in checkpoint["history"]]


@pytest.mark.slow
def test_cifar10_learns_and_the_same_seed_gives_an_identical_run(train_here, tmp_path: Path, data_dir: Path) -> None:
    """CIFAR-10's pickled batches train a CNN well above chance, twice, bit for bit on the CPU: shuffling, random
    crops and flips, init, all seeded. 6 epochs of batches of 8 at lr 3e-3: what it takes to learn the tiny set."""
    overrides = [f"paths.data_dir={data_dir}", "dataset=cifar10", "dataset.source.verify_checksums=false",
                 "model=cnn", "device=cpu", "trainer.epochs=6", "dataset.batch_size=8", "optimizer.lr=3e-3", *QUIET]
    runs = []
    for name in ("first", "again"):
        cwd = tmp_path / name
        cwd.mkdir()
        best = trained(train_here, cwd, *overrides)
        runs.append(load_checkpoint(cwd / "run" / "checkpoints" / LAST))
    assert best["input"]["shape"] == [3, 32, 32] and best["classes"] == CIFAR_CLASSES
    assert_rebuilds(best)
    assert_above_chance(accuracy(tmp_path / "first" / "run"), 10)
    first, again = runs
    assert history_without_timings(first) == history_without_timings(again)
    assert all(torch.equal(first["model"][k], again["model"][k]) for k in first["model"])


def assert_one_line_error(result: subprocess.CompletedProcess, *names: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for name in names:
        assert name in lines[0]


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        pytest.param(["model=nope"], ["model/nope"], id="unknown-option"),
        pytest.param(["trainer.epochs=ten"], ["trainer.epochs"], id="wrong-type"),
        pytest.param(["trainer.epochz=3"], ["trainer.epochz"], id="unknown-key"),
        pytest.param(["model=torchvision"], ["model.name"], id="missing-value"),
        pytest.param(["optimizer.lr=0"], ["optimizer.lr"], id="lr-zero"),
        pytest.param(["dataset.batch_size=0"], ["dataset.batch_size"], id="batch-size"),
        pytest.param(["dataset=imagefolder"], ["dataset.path"], id="no-folder-given"),
        pytest.param(["dataset=imagefolder", "dataset.path={data}/nowhere"], ["{data}/nowhere"], id="no-folder"),
        pytest.param(["dataset=mnist", "paths.data_dir={data}/empty"],
                     ["{data}/empty/MNIST/raw", "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"], id="no-mnist"),
        pytest.param(["dataset=cifar10", "paths.data_dir={data}"], ["md5", "verify_checksums=false"],
                     id="cifar-md5"),
    ],
)
def test_config_errors_are_one_line(train_here, tmp_path: Path, data_dir: Path, overrides: list[str],
                                   names: list[str]) -> None:
    overrides = [o.format(data=data_dir) for o in overrides]
    run_dir = tmp_path / "run"
    result = train_here(f"hydra.run.dir={run_dir}", f"paths.data_dir={data_dir}", *QUIET, *overrides, cwd=tmp_path,
                        env=OFFLINE)
    assert_one_line_error(result, *(name.format(data=data_dir) for name in names))
    assert not (run_dir / "checkpoints").exists()


def test_absent_accelerator_is_one_line(train_here, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has cuda")
    result = train_here(f"hydra.run.dir={tmp_path / 'run'}", "device=cuda", *QUIET, cwd=tmp_path)
    assert_one_line_error(result, "device=cuda")


def test_help_does_not_import_torch(tmp_path: Path) -> None:
    result = run_train("--help", cwd=tmp_path, env=OFFLINE, command=[sys.executable, "-X", "importtime", str(TRAIN)],
                       timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    groups = dict(re.findall(r"^(dataset|model): (.+)$", result.stdout, flags=re.MULTILINE))
    for option in ("digits", "mnist", "fashion_mnist", "cifar10", "imagefolder", "hymenoptera", "fake"):
        assert option in groups["dataset"].split(", ")
    for option in ("mlp", "cnn", "vgg16", "resnet18", "torchvision"):
        assert option in groups["model"].split(", ")
    timings = [line for line in result.stderr.splitlines() if line.startswith("import time")]
    imported = [line.rsplit("|", 1)[-1].strip() for line in timings]
    assert "hydra" in imported
    assert not [name for name in imported if name.split(".")[0] in ("torch", "torchvision", "mlflow")]


@pytest.mark.slow
def test_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("sweeplab-train")
    assert script.is_file(), "pip install -e . creates the sweeplab-train console script"
    result = run_train(f"hydra.run.dir={tmp_path / 'run'}", "dataset=fake", "model=mlp", "trainer.epochs=1", *QUIET,
                       cwd=tmp_path, command=[str(script)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / BEST)["config"]["dataset"]["name"] == "fake"


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        pytest.param(["model=torchvision,mlp"], "error: model.name is required", id="missing-value"),
        pytest.param(["model=mlp,nope"], "error: the sweep cannot run model=nope:", id="unknown-option"),
        pytest.param(["optimizer.lr=0.1,-1"], "error: optimizer.lr=-1.0 is invalid", id="out-of-range"),
        pytest.param(["trainer.epochs=zero", "model=mlp,cnn"], "error: Error merging override", id="wrong-type"),
        pytest.param(["model=mlp,cnn", "hydra/launcher=slurm"], "error: hydra/launcher=slurm needs a Slurm cluster",
                     id="no-slurm", marks=pytest.mark.skipif(shutil.which("srun") is not None, reason="Slurm is here")),
    ],
)
def test_a_config_error_in_a_sweep_stops_it_before_any_job(train_here, tmp_path: Path, sweep: list[str],
                                                          message: str) -> None:
    sweep_dir = tmp_path / "sweep"
    result = train_here("-m", *sweep, f"hydra.sweep.dir={sweep_dir}", "trainer.epochs=1", cwd=tmp_path, env=OFFLINE)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr
    assert not list(sweep_dir.glob("*/.hydra")), "no job may start"
    assert not (tmp_path / "mlflow.db").exists(), "no MLflow run may start"
