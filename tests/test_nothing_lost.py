"""Nothing recorded is lost or silently wrong: every file written whole or not at all, a refused command that
changes nothing on disk, stops that end within seconds, a dead recorder survived, data that would train on the
wrong labels refused or made right."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from mlflow import MlflowClient
from PIL import Image

from data_formats import write_image_folder
from launch import QUIET, UNEXPORTED, run_train, start_train
from mlflow_server import MlflowServer, free_port
from sweeplab.config.checks import check_ranges
from sweeplab.core.errors import UserError
from sweeplab.data.sources import load_image_folder, read_rgb
from sweeplab.export.onnx import export_classifier
from sweeplab.runs.classify import read_image
from sweeplab.runs.preprocessing import Preprocessing
from sweeplab.runs.results import JobResult, write_result
from sweeplab.tracking.client import client
from sweeplab.tracking.figures import sample_grid
from sweeplab.tracking.pending import keep_pending
from sweeplab.tracking.per_image import SplitPredictions, write_test_split


def one_line(error: BaseException) -> str:
    text = str(error)
    assert text.startswith("could not write") and "\n" not in text and "intact" in text, text
    return text


def big_result(run_dir: Path) -> None:
    write_result(str(run_dir), JobResult("FINISHED", ["x" * 200_000], "val/acc"))


def big_preprocessing(run_dir: Path) -> None:
    Preprocessing([1, 8, 8], "L", ["class" * 40] * 2000).save(run_dir / "model.onnx")


def big_pending(run_dir: Path) -> None:
    keep_pending(run_dir, uri="sqlite:///x.db", metrics=[["train/loss", 0.5, 0, step] for step in range(20_000)])


def big_figure(run_dir: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (9, 3, 128, 128), dtype=np.uint8)
    sample_grid(noise, np.zeros(9, int), np.zeros(9, int), ["a"], run_dir / "figures" / "validation_samples.png")


class Dense(torch.nn.Module):
    """uint8 images in, as sweeplab's classifiers take them; a megabyte of weights."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 4096), torch.nn.Linear(4096, 2))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.float().flatten(1))


def big_test_split(run_dir: Path) -> None:
    labels = np.random.default_rng(0).integers(0, 10, 100_000)  # about 90 KiB compressed
    write_test_split(str(run_dir), SplitPredictions(labels, labels[::-1].copy(), [str(c) for c in range(10)]))


def big_onnx(run_dir: Path) -> None:
    export_classifier(Dense(), Preprocessing([1, 8, 8], "L", ["a", "b"]), torch.zeros(2, 1, 8, 8, dtype=torch.uint8),
                      run_dir / "export")


WRITERS = {"result.json": (big_result, "result.json"), "preprocessing": (big_preprocessing, "model.preprocessing.json"),
           "pending records": (big_pending, "mlflow_pending.json"),
           "figure": (big_figure, "figures/validation_samples.png"), "ONNX export": (big_onnx, "export/model.onnx"),
           "test predictions": (big_test_split, "test/predictions.npz")}


# Bytes every writer may replace (the pending-records writer adds to what a file holds: it must be one of its own).
PREVIOUS = json.dumps({"tracking_uri": None, "run_id": None, "metrics": [], "artifacts": [], "tags": {},
                       "status": None}).encode()


@pytest.mark.parametrize("writer", WRITERS)
def test_a_full_disk_mid_write_keeps_the_previous_file_and_says_so_in_one_line(writer: str, tmp_path: Path,
                                                                              request) -> None:
    write, name = WRITERS[writer]
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PREVIOUS)
    request.getfixturevalue("small_disk")
    with pytest.raises(UserError) as error:
        write(tmp_path)
    one_line(error.value)
    assert path.read_bytes() == PREVIOUS
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")], "no temporary file left"


def test_a_refused_command_changes_nothing_on_disk(train_here, tmp_path: Path) -> None:
    run_dir, sweep_dir = tmp_path / "run", tmp_path / "sweep"
    assert train_here(*QUIET, "trainer.epochs=1", f"hydra.run.dir={run_dir}", cwd=tmp_path).returncode == 0
    assert train_here("-m", *QUIET, "trainer.epochs=1", "seed=0,1", f"hydra.sweep.dir={sweep_dir}",
                      cwd=tmp_path).returncode == 0
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    refusals = {
        "another job in a run dir": ([*QUIET, "trainer.epochs=2", f"hydra.run.dir={run_dir}"],
                                     f"{run_dir} already holds a different run"),
        "a sweep dir as a run dir": ([*QUIET, f"hydra.run.dir={sweep_dir}"], "is a sweep's dir"),
        "a run dir as a sweep dir": (["-m", *QUIET, "seed=0,1", f"hydra.sweep.dir={run_dir}"],
                                     "is a single run's dir, not a sweep's"),
    }
    for case, (arguments, says) in refusals.items():
        result = train_here(*arguments, cwd=tmp_path)
        assert result.returncode == 2 and says in result.stderr and result.stderr.count("\n") == 1, (case, result)
    after = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    assert after == before, "nothing written, nothing overwritten"


def silent_server() -> tuple[socket.socket, int]:
    """A tracking server that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.extend(iter(lambda: listener.accept()[0], None)), daemon=True).start()
    return listener, listener.getsockname()[1]


@pytest.mark.slow
def test_a_store_that_never_answers_is_one_line_before_training_within_seconds(tmp_path: Path) -> None:
    listener, port = silent_server()
    started = time.monotonic()
    result = run_train(f"tracking.uri=http://127.0.0.1:{port}", "trainer.epochs=1", cwd=tmp_path, timeout=120)
    listener.close()
    assert result.returncode == 2 and "is unreachable (ReadTimeout)" in result.stderr.strip().splitlines()[-1]
    assert time.monotonic() - started < 30 and not list(tmp_path.rglob("*.pt"))


def recorder_of(training: psutil.Process) -> psutil.Process:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        children = [child for child in training.children() if "sweeplab.recorder" in " ".join(child.cmdline())]
        if children:
            return children[0]
        time.sleep(0.1)
    raise AssertionError("no recorder process")


def wait_for_epoch(cwd: Path, epoch: int) -> Path:
    """The run dir, once its train.log says the epoch ended."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for log in cwd.glob("outputs/*/*/train.log"):
            if f"epoch {epoch} of" in log.read_text():
                return log.parent
        time.sleep(0.1)
    raise AssertionError(f"epoch {epoch} never ended")


def stopped_within_seconds(tmp_path: Path, silence: Callable[[psutil.Process], None], *overrides: str) -> Path:
    """A run SIGTERMed once `silence(training process)` made its record stall: it ends within 10 s. Its run dir."""
    training = start_train(*UNEXPORTED, "trainer.epochs=300", "tracking.flush_seconds=0", *overrides, cwd=tmp_path,
                           stdout=None, stderr=open(tmp_path / "stderr.txt", "w"))
    try:
        run_dir = wait_for_epoch(tmp_path, 2)
        silence(psutil.Process(training.pid))
        stopped = time.monotonic()
        training.send_signal(signal.SIGTERM)
        assert training.wait(timeout=60) == 143
        assert time.monotonic() - stopped < 10
    finally:
        if training.poll() is None:
            training.kill()
    return run_dir


def assert_kept_killed(tmp_path: Path, run_dir: Path) -> None:
    said = (tmp_path / "stderr.txt").read_text()
    assert "terminated (SIGTERM): resume with `python train.py" in said and "Traceback" not in said, said[-3000:]
    assert json.loads((run_dir / "result.json").read_text())["status"] == "KILLED"
    assert json.loads((run_dir / "mlflow_pending.json").read_text())["status"] == "KILLED"


@pytest.mark.slow
def test_a_stop_ends_within_seconds_while_the_recorder_is_stopped(tmp_path: Path) -> None:
    run_dir = stopped_within_seconds(tmp_path, lambda training: recorder_of(training).suspend())  # SIGSTOP
    assert_kept_killed(tmp_path, run_dir)


@pytest.mark.slow
def test_a_stop_ends_within_seconds_while_the_tracking_server_does_not_answer(tmp_path: Path) -> None:
    server = MlflowServer(tmp_path / "server", free_port())
    server.folder.mkdir()
    server.start()
    try:  # the server's processes stopped (SIGSTOP): connections accepted, nothing answered
        run_dir = stopped_within_seconds(tmp_path, lambda _: os.killpg(server.process.pid, signal.SIGSTOP),
                                         f"tracking.uri={server.uri}", "trainer.log_every_n_steps=1")
    finally:
        os.killpg(server.process.pid, signal.SIGCONT)
        server.stop()
    assert_kept_killed(tmp_path, run_dir)


@pytest.mark.slow
def test_a_killed_recorder_is_survived_and_the_run_delivers_its_records_when_run_again(tmp_path: Path) -> None:
    overrides = [*UNEXPORTED, "trainer.epochs=6", "tracking.flush_seconds=0"]
    training = start_train(*overrides, cwd=tmp_path, stdout=None, stderr=open(tmp_path / "stderr.txt", "w"))
    run_dir = wait_for_epoch(tmp_path, 1)
    recorder_of(psutil.Process(training.pid)).kill()
    assert training.wait(timeout=120) == 2
    said = (tmp_path / "stderr.txt").read_text().strip().splitlines()
    assert said[-1].startswith("error: the recorder process died (exit code -9)") and "Traceback" not in "".join(said)
    assert f"kept in {run_dir / 'mlflow_pending.json'}; deliver them with `python train.py" in said[-1]
    assert json.loads((run_dir / "result.json").read_text())["status"] == "FINISHED", "training went on to the end"
    assert (run_dir / "test" / "predictions.npz").is_file(), "written by the run itself"
    again = run_train(*overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert not (run_dir / "mlflow_pending.json").exists()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/acc")] == [1, 2, 3, 4, 5, 6]
    assert run.info.status == "FINISHED"
    assert "test/predictions.npz" in {a.path for a in client.list_artifacts(run.info.run_id, "test")}


def test_a_link_loop_or_a_link_out_of_a_class_folder_is_not_followed(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "folder", ("a", "b"), {"train": 6}, seed=5)
    (root / "train" / "a" / "again").symlink_to(root / "train")  # a loop, through class b
    (root / "train" / "b" / "inside").mkdir()
    Image.new("RGB", (8, 8)).save(root / "train" / "b" / "inside" / "extra.png")
    (root / "train" / "b" / "alias").symlink_to(root / "train" / "b" / "inside")  # stays in b: followed
    splits = load_image_folder(str(root), 0, 0.25, 8, None)
    labels = [label for _, label in splits.train.dataset.samples]
    assert labels.count(0) == 6 and labels.count(1) == 6 + 1, "a's 6, b's 6 and its extra once (the alias's)"


def test_a_16_bit_image_is_scaled_to_8_bits_not_clipped(tmp_path: Path) -> None:
    gradient = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1024).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(gradient).save(path)
    expected = np.round(gradient / 257).astype(np.uint8)
    assert np.array_equal(np.asarray(read_rgb(str(path)))[..., 0], expected)
    assert np.array_equal(np.asarray(read_image(path, "L")), expected)


@pytest.mark.parametrize(("override", "key"), [
    ("model.hidden=[0]", "model.hidden"), ("dataset.std=[0]", "dataset.std"),
    ("trainer.accumulate_grad_batches=100", "trainer.accumulate_grad_batches")])
def test_a_dead_network_or_a_division_by_zero_is_refused_before_training(override: str, key: str,
                                                                          compose_train) -> None:
    with pytest.raises(UserError, match=f"^{key}="):
        check_ranges(compose_train([override]))


def test_a_stale_store_creation_is_cleaned_up(tmp_path: Path) -> None:
    dead = max(psutil.pids()) + 100_000
    leftovers = [tmp_path / f".mlflow.db.{dead}.creating", tmp_path / f".mlflow.db.{dead}.creating-journal"]
    for leftover in leftovers:
        leftover.write_text("half made")
    client(f"sqlite:///{tmp_path / 'mlflow.db'}")  # the store's first use: it is created
    assert not any(leftover.exists() for leftover in leftovers)
    assert os.path.exists(tmp_path / "mlflow.db")
