"""A team's tracking server on PostgreSQL (`sweeplab server`): a torchrun run logged to it (with MLflow's system
metrics) and served back to a directory that never saw its run dir; and 16 jobs in 8 joblib workers, on the
server and on a fresh sqlite file that another process locks for longer than sqlite waits, losing no run and
no metric.

(The shared 4-job sweep against the same server, read back param by param: tests/test_tracking_sweep.py.)
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from omegaconf import OmegaConf
from PIL import Image

from launch import TORCHRUN, run_train, start_train
from mlflow_server import MlflowServer, free_port, mlflow_server  # noqa: F401 - mlflow_server is a fixture
from sweeplab.cli.main import main
from sweeplab.tracking.metadata import flatten

pytestmark = pytest.mark.slow
EPOCH_METRICS = ("train/loss", "train/acc", "val/loss", "val/acc", "lr")
LEARNING_RATES, SEEDS = ("0.1", "0.03", "0.01", "0.003"), ("1", "2", "3", "4")
SIXTEEN_JOBS = ["-m", f"optimizer.lr={','.join(LEARNING_RATES)}", f"seed={','.join(SEEDS)}", "trainer.epochs=1",
                "hydra/launcher=joblib", "hydra.launcher.n_jobs=8", "export.onnx=false", "tracking.log_model=false"]
LOCK_SECONDS = 45  # over twice the 20 s sqlite lets a writer wait for a lock


def runs_of(client: MlflowClient, experiment: str) -> list:
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def test_a_torchrun_run_on_the_server_is_exported_and_predicted_where_its_run_dir_never_was(
        mlflow_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    trained = tmp_path / "trained"
    trained.mkdir()
    result = run_train("trainer.epochs=2", "export.onnx=false", f"tracking.uri={mlflow_server.uri}",
                       "tracking.experiment=team-torchrun", "tracking.system_metrics=true", cwd=trained,
                       env={"MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"}, command=TORCHRUN)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(mlflow_server.uri)
    (run,) = runs_of(client, "team-torchrun")  # rank 0's alone
    (run_dir,) = [path.parent for path in trained.glob("outputs/*/*/.hydra")]
    assert run.info.status == "FINISHED"
    assert set(run.data.params) >= set(flatten(OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra/config.yaml"))))
    assert run.data.params["trainer.epochs"] == "2" and run.data.params["dataset.name"] == "digits"
    for key in EPOCH_METRICS:
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2], key
    assert {"test/acc", "best/val/acc"} <= set(run.data.metrics)
    system = {key for key in run.data.metrics if key.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system, system
    assert not any(key.startswith("system/gpu") for key in system), "a CPU run samples no GPU"
    artifacts = {entry.path for entry in client.list_artifacts(run.info.run_id)}
    assert {".hydra", "checkpoints", "figures"} <= artifacts, artifacts

    shutil.rmtree(trained)  # from here on, only the server knows the run
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run_id = run.info.run_id
    assert main(["export", run_id[:8], "--uri", mlflow_server.uri]) == 0
    assert (elsewhere / "downloaded_runs" / run_id / "export" / "model.onnx").is_file()
    assert "onnx/max_abs_diff" in client.get_run(run_id).data.metrics, "the export is logged back to the run"
    Image.fromarray(np.full((8, 8), 128, dtype=np.uint8)).save(elsewhere / "digit.png")
    assert main(["predict", "--run", run_id, "--uri", mlflow_server.uri, "--json", str(elsewhere / "digit.png")]) == 0


def hold_locked(db: Path, started: threading.Event) -> None:
    """Hold the whole store locked, as a long write elsewhere would, for LOCK_SECONDS."""
    connection = sqlite3.connect(db, timeout=60)
    connection.execute("BEGIN EXCLUSIVE")
    started.set()
    time.sleep(LOCK_SECONDS)
    connection.rollback()
    connection.close()


def run_sixteen_jobs(cwd: Path, lock: bool, *overrides: str) -> subprocess.CompletedProcess:
    """The sweep in 8 workers; with lock, the store is locked for LOCK_SECONDS as the second wave of jobs starts
    (job 8's run dir is there; its run, and those of the jobs after it, are created meanwhile)."""
    if not lock:
        return run_train(*SIXTEEN_JOBS, *overrides, cwd=cwd, timeout=600)
    sweep = start_train(*SIXTEEN_JOBS, *overrides, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while len(list(cwd.glob("multirun/*/*/*/.hydra"))) < 9 and sweep.poll() is None:
        time.sleep(0.2)
    started = threading.Event()
    locker = threading.Thread(target=hold_locked, args=(cwd / "mlflow.db", started))
    locker.start()
    started.wait(60)
    stdout, stderr = sweep.communicate(timeout=600)
    locker.join()
    return subprocess.CompletedProcess(sweep.args, sweep.returncode, stdout, stderr)


@pytest.mark.parametrize("store", ["fresh sqlite, locked mid-sweep", "team server"])
def test_sixteen_jobs_in_eight_workers_lose_no_run_and_no_metric(
        store: str, mlflow_server: MlflowServer, tmp_path: Path) -> None:  # noqa: F811
    experiment = f"sixteen-{store.split()[0]}"
    server = store == "team server"
    uri = mlflow_server.uri if server else f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_sixteen_jobs(tmp_path, not server, f"tracking.uri={uri}", f"tracking.experiment={experiment}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list(tmp_path.glob("multirun/**/mlflow_pending.json")), "every metric reached the store"

    client = MlflowClient(uri)
    runs = runs_of(client, experiment)
    (parent,) = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 17 and {run.info.status for run in runs} == {"FINISHED"}
    assert sorted(int(child.data.tags["sweep.job"]) for child in children) == list(range(16))
    assert parent.data.tags["sweep.jobs"] == "16" and parent.data.tags["sweep.failed_jobs"] == "0"
    assert sorted((c.data.params["optimizer.lr"], c.data.params["seed"]) for c in children) == sorted(
        (str(float(lr)), seed) for lr in LEARNING_RATES for seed in SEEDS)
    assert len({len(child.data.params) for child in children}) == 1, "every job holds its whole config"
    for child in children:
        for key in EPOCH_METRICS:
            assert [m.step for m in client.get_metric_history(child.info.run_id, key)] == [1], (child, key)
        assert {"test/acc", "test/loss", "best/val/acc", "epoch_seconds"} <= set(child.data.metrics)


def test_a_server_with_auth_takes_runs_with_credentials_only(tmp_path: Path) -> None:
    """`sweeplab server --auth`: a run with the admin's credentials is recorded; one without is one line."""
    password = "a-long-admin-password"
    server = MlflowServer(tmp_path / "server", free_port(), admin_password=password)
    server.folder.mkdir()
    server.start()
    try:
        run = ["trainer.epochs=1", "export.onnx=false", "tracking.log_model=false", f"tracking.uri={server.uri}",
               "tracking.experiment=guarded"]
        refused = run_train(*run, cwd=tmp_path)
        assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1].startswith(
            f"error: tracking server {server.uri} refused access (HTTP 401)"), refused.stderr[-2000:]
        credentials = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": password}
        admitted = run_train(*run, cwd=tmp_path, env=credentials)
        assert admitted.returncode == 0, admitted.stderr[-3000:]
        with pytest.MonkeyPatch.context() as environment:
            for key, value in credentials.items():
                environment.setenv(key, value)
            (recorded,) = runs_of(MlflowClient(server.uri), "guarded")
            assert recorded.info.status == "FINISHED" and "val/acc" in recorded.data.metrics
    finally:
        server.stop()
