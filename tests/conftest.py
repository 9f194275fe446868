"""Shared fixtures: one set of generated data sets per test session, in the real on-disk formats; train.py run in
this process (`train_here`) with what a run leaves behind in the process put back after it."""

from __future__ import annotations

import logging
import os
import random
import resource
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from data_formats import write_cifar10, write_image_folder, write_mnist
from launch import TRAIN
from sweeplab.cli.train import main as train_main
from sweeplab.config.schema import config_dir, register_configs
from sweeplab.data import load_source
from sweeplab.recorder import this_process
from trained_runs import train_run

# One pytest-xdist worker runs these files one after another: they share one PostgreSQL-backed tracking server
# (a session fixture), and the browser is kept beside them rather than beside the heavier training tests.
SERVERS_AND_BROWSER = ("test_team_server.py", "test_tracking_sweep.py", "test_ui_browser.py")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: trains real models in subprocesses (deselect with -m 'not slow')")
    # A shell starts a background job (`pytest &`) with SIGINT ignored, and every process started from it inherits
    # that: the tests that press Ctrl-C on train.py would find it ignored.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`--dist loadgroup` (pyproject's addopts): a file's tests stay in one worker, so its module fixtures (shared
    reference runs) are built once; the servers' and the browser's files share one worker."""
    for item in items:
        file = item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group("servers" if Path(file).name in SERVERS_AND_BROWSER else file))


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


class ProcessState:
    """What a run changes in the process that runs it, to put back: torch's threads and determinism, every random
    state, the environment, signal handlers, loggers' handlers, the data cache and this process's recorder."""

    def __init__(self) -> None:
        self.threads = torch.get_num_threads()
        self.deterministic = torch.are_deterministic_algorithms_enabled()
        self.random = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        self.environ = dict(os.environ)
        self.handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        self.loggers = {name: (logger.handlers[:], logger.level, logger.propagate) for name, logger in loggers()}

    def restore(self) -> None:
        torch.set_num_threads(self.threads)
        torch.use_deterministic_algorithms(self.deterministic)
        random.setstate(self.random[0])
        np.random.set_state(self.random[1])
        torch.set_rng_state(self.random[2])
        os.environ.clear()
        os.environ.update(self.environ)
        for sig, handler in self.handlers.items():
            signal.signal(sig, handler)
        for name, logger in loggers():
            handlers, level, propagate = self.loggers.get(name, ([], logging.NOTSET, True))
            for handler in set(logger.handlers) - set(handlers):
                handler.close()
            logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate
        load_source.cache_clear()
        if this_process.current is not None:
            this_process.current.close()
            this_process.current = None


def loggers() -> Iterator[tuple[str, logging.Logger]]:
    yield "", logging.getLogger()
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            yield name, logger


@pytest.fixture
def train_here(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
               ) -> Iterator[Callable[..., subprocess.CompletedProcess]]:
    """`python train.py <arguments>` run in this process, as Lightning-Hydra-Template's tests call `train(cfg)`: the
    whole command (Hydra, its callbacks, the job, the recorder) without a process start. Returns what a process
    would: the exit code, stdout and stderr (this process's: the recorder's own lines are not among them). What
    the run leaves behind in the process is put back afterwards, so
    no test depends on another's order."""
    saved = ProcessState()

    def run(*arguments: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", [str(TRAIN), *arguments])
        capsys.readouterr()
        try:
            train_main()
            code = 0
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        finally:
            if this_process.current is not None:  # its records complete before the test reads them
                this_process.current.wait(raise_errors=False)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(sys.argv, code, out, err)

    try:
        yield run
    finally:
        saved.restore()


@pytest.fixture
def small_disk():
    """Files may grow to 64 KiB in this process (RLIMIT_FSIZE, a full disk's failed write without the disk)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    yield
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    signal.signal(signal.SIGXFSZ, previous)


@pytest.fixture
def trained_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, train_here):
    """`trained_run("cnn")` -> the run dir of a one-epoch run, trained once per session."""
    root = tmp_path_factory.getbasetemp() / "trained_runs"
    root.mkdir(exist_ok=True)
    return lambda name: train_run(train_here, root, data_dir, name)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Where the suite's time goes, file by file (setup, call and teardown), slowest first."""
    seconds: dict[str, float] = defaultdict(float)
    tests: dict[str, int] = defaultdict(int)
    for reports in terminalreporter.stats.values():
        for report in reports:
            if isinstance(report, pytest.TestReport):
                file = report.nodeid.split("::")[0]
                seconds[file] += report.duration
                tests[file] += report.when == "call"
    if seconds:
        terminalreporter.write_sep("=", "seconds per test file")
        for file, total in sorted(seconds.items(), key=lambda item: -item[1]):
            terminalreporter.write_line(f"{total:8.1f}  {file} ({tests[file]} tests)")
        terminalreporter.write_line(f"{sum(seconds.values()):8.1f}  in all")
