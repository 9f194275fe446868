"""Statuses and outages, with real runs and real servers: FAILED with a reason, KILLED on Ctrl-C or SIGTERM, an
unreachable server refused before training, and a server that dies mid-run losing nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
import requests
from mlflow import MlflowClient

from launch import UNEXPORTED, run_train, start_train
from mlflow_server import MlflowServer, free_port, mlflow_server  # noqa: F401
from sweeplab.tracking.handle import metric_rows
from sweeplab.tracking.session import Session

pytestmark = pytest.mark.slow


def runs_of(client: MlflowClient, experiment: str) -> list:
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def test_unreachable_server_is_one_line_before_training(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_train(f"tracking.uri=http://127.0.0.1:{free_port()}", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: tracking server http://127.0.0.1:") and "unreachable" in lines[-1]
    assert "Traceback" not in result.stderr and "tracking.enabled=false" in lines[-1]
    assert not list(tmp_path.rglob("*.pt")) and time.monotonic() - started < 60


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_training_left_behind():
    """A failing assert must not leave train.py running (its recorder ends with it)."""
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.wait()


def start_training(uri: str, experiment: str, cwd: Path, *overrides: str) -> subprocess.Popen:
    STARTED.append(start_train(f"tracking.uri={uri}", f"tracking.experiment={experiment}", "tracking.flush_seconds=0",
                               *UNEXPORTED, *overrides, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    return STARTED[-1]


def wait_for_epochs(client: MlflowClient, experiment: str, epochs: int, timeout: float = 120) -> str:
    """The run id, once its val/acc history has `epochs` points."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in runs_of(client, experiment):
            if len(client.get_metric_history(run.info.run_id, "val/acc")) >= epochs:
                return run.info.run_id
        time.sleep(0.5)
    raise AssertionError(f"no run of {experiment} reached {epochs} epochs in {timeout} s")


def stop(process: subprocess.Popen, sig: signal.Signals) -> None:
    """Ctrl-C reaches the training process (its recorder has its own session); a SIGTERM from a cluster's
    scheduler (Slurm's scancel, a time limit) reaches every process of the job."""
    training = psutil.Process(process.pid)
    for each in [training, *(training.children(recursive=True) if sig == signal.SIGTERM else [])]:
        each.send_signal(sig)


@pytest.mark.parametrize("sig, code, said, reason", [
    (signal.SIGINT, 130, "interrupted (Ctrl-C)", "KeyboardInterrupt: interrupted (Ctrl-C)"),
    (signal.SIGTERM, 143, "terminated (SIGTERM)", "Terminated: terminated (SIGTERM)"),
], ids=["ctrl-c", "sigterm"])
def test_a_stopped_run_is_killed_and_says_how_to_resume(sig: signal.Signals, code: int, said: str, reason: str,
                                                        mlflow_server: MlflowServer, tmp_path: Path) -> None:  # noqa: F811
    client = MlflowClient(mlflow_server.uri)
    experiment = f"stopped-{sig.name}"
    process = start_training(mlflow_server.uri, experiment, tmp_path, "trainer.epochs=200")
    run_id = wait_for_epochs(client, experiment, 1)
    stop(process, sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code and "Traceback" not in stderr, stderr[-3000:]
    assert f"{said}: resume with `python train.py " in stderr and "hydra.run.dir=" in stderr
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["sweeplab.failure"] == reason
    assert json.loads(next(tmp_path.glob("outputs/*/*/result.json")).read_text())["reason"] == said


def test_server_outage_mid_run_keeps_training_and_every_metric(tmp_path: Path) -> None:
    server = MlflowServer(tmp_path / "server", free_port())
    server.folder.mkdir()
    server.start()
    client = MlflowClient(server.uri)
    epochs = 4
    try:
        # Batches of 8: 143 steps an epoch, long enough for the server to die mid-run even on a quiet machine.
        process = start_training(server.uri, "outage", tmp_path, f"trainer.epochs={epochs}", "dataset.batch_size=8")
        run_id = wait_for_epochs(client, "outage", 2)
        server.stop(signal.SIGKILL)
        _, stderr = process.communicate(timeout=300)
    finally:
        server.stop()
    assert process.returncode == 0, stderr[-3000:]
    (pending,) = tmp_path.glob("outputs/*/*/mlflow_pending.json")
    assert one_warning(stderr).endswith(f"kept in {pending}: upload them with `python -m sweeplab.tracking.upload "
                                        f"{pending}`"), "MLflow's own retries bounded, and silent"
    kept = json.loads(pending.read_text())
    assert kept["run_id"] == run_id and kept["status"] == "FINISHED" and kept["metrics"]

    server.start()
    try:
        upload = subprocess.run([sys.executable, "-m", "sweeplab.tracking.upload", str(pending)],
                                capture_output=True, text=True, timeout=120)
        assert upload.returncode == 0, upload.stderr[-3000:]
        run = client.get_run(run_id)
        history = client.get_metric_history(run_id, "val/acc")
        step_losses = client.get_metric_history(run_id, "train/step_loss")  # every trainer.log_every_n_steps=50
        artifacts = {a.path for a in client.list_artifacts(run_id, "figures")}
    finally:
        server.stop()
    assert run.info.status == "FINISHED"
    assert sorted(m.step for m in history) == list(range(1, epochs + 1))
    steps = sorted(m.step for m in step_losses)
    assert steps == list(range(50, 4 * 143 + 1, 50))  # none lost, before or after the outage
    assert "figures/learning_curves.png" in artifacts
    assert not pending.exists()


def one_warning(stderr: str) -> str:
    """The one line a run prints about its lost server, checked to be the only one (no urllib3 retry lines)."""
    noisy = [line for line in stderr.splitlines() if "warning" in line.lower() or "retr" in line.lower()]
    assert len(noisy) == 1 and noisy[0].startswith("warning: tracking server "), stderr[-3000:]
    return noisy[0]


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    """A real HTTP server on a free loopback port, in a thread; stopped however the test ends."""
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class FailingProxy(BaseHTTPRequestHandler):
    """Passes requests on to a real MLflow server until one carries the second epoch's val/acc, then answers
    HTTP 500 to that one and all that follow: the outage always falls mid-run, however slow the machine."""

    target = ""
    failing = threading.Event()
    failing_since = 0.0

    def relay(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.failing.is_set() and self.carries_second_epoch(body):
            type(self).failing_since = time.monotonic()
            self.failing.set()
        if self.failing.is_set():
            self.send_error(500, "Internal Server Error")
            return
        headers = {key: value for key, value in self.headers.items() if key.lower() not in ("host", "authorization")}
        answer = requests.request(self.command, self.target + self.path, data=body, headers=headers, timeout=60)
        self.send_response(answer.status_code)
        for key in ("Content-Type", "Content-Length"):
            if key in answer.headers:
                self.send_header(key, str(len(answer.content)) if key == "Content-Length" else answer.headers[key])
        self.end_headers()
        self.wfile.write(answer.content)

    @staticmethod
    def carries_second_epoch(body: bytes) -> bool:
        try:
            metrics = json.loads(body).get("metrics", [])
        except (ValueError, AttributeError):
            return False
        return any(metric["key"] == "val/acc" and int(metric.get("step", 0)) >= 2 for metric in metrics)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = relay

    def log_message(self, *args) -> None:
        """Quiet: the test reads the run's output, not the proxy's."""


def test_a_server_answering_errors_mid_run_costs_one_warning_and_keeps_the_record(
        mlflow_server: MlflowServer, tmp_path: Path) -> None:  # noqa: F811
    """A server that starts answering HTTP 500 (its database gone, a proxy in trouble) is left alone like a lost
    one: no minutes of MLflow retries, one warning with the pending file, the run's own outcome. Its URI's
    credentials are never printed."""
    FailingProxy.target, secret = mlflow_server.uri, "hunter2"
    FailingProxy.failing.clear()
    with http_server(FailingProxy) as proxy:
        uri = f"http://alice:{secret}@127.0.0.1:{proxy.server_port}"
        process = start_training(uri, "errors", tmp_path, "trainer.epochs=2")
        try:
            _, stderr = process.communicate(timeout=240)
        finally:
            process.kill()
        seconds = time.monotonic() - FailingProxy.failing_since
    (run,) = runs_of(MlflowClient(mlflow_server.uri), "errors")
    assert process.returncode == 0, stderr[-3000:]
    (pending,) = tmp_path.glob("outputs/*/*/mlflow_pending.json")
    line = one_warning(stderr)
    assert line.startswith(f"warning: tracking server http://***@127.0.0.1:{proxy.server_port} went away or failed")
    assert line.endswith(f"`python -m sweeplab.tracking.upload {pending}`") and secret not in stderr
    kept = json.loads(pending.read_text())
    assert kept["run_id"] == run.info.run_id and kept["status"] == "FINISHED"
    assert any(key == "val/acc" and step == 2 for key, _, _, step in kept["metrics"])
    assert seconds < 120, f"{seconds:.0f} s from the first HTTP 500 to the end of the run's second (last) epoch"


class NotMlflow(SimpleHTTPRequestHandler):
    """`python -m http.server`: a web server that answers MLflow's API with a 404 page."""

    def log_message(self, *args) -> None:
        """Quiet."""


@pytest.mark.parametrize("sweep", [False, True], ids=["run", "sweep"])
def test_a_web_server_that_is_not_mlflow_is_one_line_before_anything_runs(sweep: bool, tmp_path: Path) -> None:
    with http_server(NotMlflow) as web:
        result = run_train(*(["-m", "optimizer.lr=0.1,0.01"] if sweep else []), f"tracking.uri=http://127.0.0.1:"
                           f"{web.server_port}", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: tracking server http://127.0.0.1:{web.server_port} is not an MLflow tracking "
                           "server (HTTP 404 to /api/2.0/mlflow/experiments/search): point tracking.uri")
    assert not (tmp_path / "sweep").exists() and not list(tmp_path.rglob("*.pt")), "nothing ran"


def test_an_unreachable_server_stops_a_sweep_before_any_job(tmp_path: Path) -> None:
    result = run_train("-m", "optimizer.lr=0.1,0.01", f"tracking.uri=http://127.0.0.1:{free_port()}",
                       f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: tracking server http://127.0.0.1:") and "is unreachable" in line
    assert not (tmp_path / "sweep").exists(), "no job launched"


def test_export_parity_failure_marks_the_run_failed_and_keeps_its_files(tmp_path: Path) -> None:
    """A 1e-12 tolerance is below float32 rounding: the run fails loudly, with everything logged. (The cnn: on some
    CPUs onnxruntime computes the MLP bit for bit as torch does, its convolutions not.)"""
    result = run_train("trainer.epochs=1", "model=cnn", "tracking.log_model=false", "export.tolerance=1e-12",
                       cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: the ONNX model disagrees with PyTorch")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = runs_of(client, "sweeplab-digits")
    assert run.info.status == "FAILED"
    assert run.data.tags["sweeplab.failure"].startswith("ExportParityError: the ONNX model disagrees")
    assert run.data.metrics["onnx/max_abs_diff"] > 0
    artifacts = {a.path for folder in ("onnx", "figures") for a in client.list_artifacts(run.info.run_id, folder)}
    assert {"onnx/model.onnx", "figures/confusion_matrix.png"} <= artifacts


def test_a_server_back_after_an_outage_gets_what_waited(tmp_path: Path) -> None:
    """A server that fails a probe (gone, or only slow under load) is tried again: at the latest when the run
    ends, what waited for it is delivered and the run ends FINISHED, with no pending file left."""
    server = MlflowServer(tmp_path / "server", free_port())
    server.folder.mkdir()
    server.start()
    try:
        client = MlflowClient(server.uri)
        run_id = client.create_run(client.create_experiment("back")).info.run_id
        session = Session(client, run_id, tmp_path)
        server.stop(signal.SIGKILL)
        session.log_metrics(metric_rows({"val/acc": 0.5}, 1))
        assert not session.online and session.pending_metrics
        server.start()
        session.end("FINISHED", None)
        assert client.get_run(run_id).info.status == "FINISHED"
        assert [m.value for m in client.get_metric_history(run_id, "val/acc")] == [0.5]
        assert not (tmp_path / "mlflow_pending.json").exists()
    finally:
        server.stop()
