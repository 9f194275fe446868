"""Shared fixtures: one set of generated data sets per test session, in the real on-disk formats."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from data_formats import write_cifar10, write_image_folder, write_mnist
from sweeplab.config.schema import config_dir, register_configs
from trained_runs import train_run


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: trains real models in subprocesses (deselect with -m 'not slow')")
    # A shell starts a background job (`pytest &`) with SIGINT ignored, and every process started from it inherits
    # that: the tests that press Ctrl-C on train.py would find it ignored.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `paths.data_dir` holding every file-backed data set: CIFAR-10, MNIST, FashionMNIST, hymenoptera."""
    root = tmp_path_factory.mktemp("data")
    write_cifar10(root, per_batch=16, test_size=20)  # 8 validation images (a tenth): what export checks on
    # 100 images: enough for a model to beat chance in an epoch or three, on 40 test images that can tell
    write_mnist(root, "MNIST", train_size=100, test_size=40, seed=1)
    write_mnist(root, "FashionMNIST", train_size=100, test_size=40, seed=2)
    write_image_folder(root / "hymenoptera_data", seed=3)
    return root


@pytest.fixture(scope="session")
def train_only_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image folder with train/ only, so the validation split is carved out of it."""
    return write_image_folder(tmp_path_factory.mktemp("folder"), ("cats", "dogs", "fish"), {"train": 10}, seed=4)


@pytest.fixture(scope="session")
def compose_train():
    """Compose conf/train.yaml with overrides, as `python train.py <overrides>` would."""
    register_configs()

    def compose_with(overrides: list[str] | None = None) -> DictConfig:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            return compose(config_name="train", overrides=overrides or [])

    return compose_with


@pytest.fixture
def trained_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):
    """`trained_run("cnn")` -> the run dir of a one-epoch run, trained once per session."""
    root = tmp_path_factory.getbasetemp() / "trained_runs"
    root.mkdir(exist_ok=True)
    return lambda name: train_run(root, data_dir, name)
