"""Sweeps that survive failures and resume: real sweeps of digits jobs, checked on disk and in MLflow.

Each test runs `python train.py -m ...` as a user would, in its own directory with the default
sqlite store, and reads the outcome back through MlflowClient, Optuna and the jobs' result.json.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import optuna
import psutil
import pytest
from mlflow import MlflowClient

from launch import QUICK, run_train, start_train

pytestmark = pytest.mark.slow


def sweep_runs(cwd: Path) -> tuple:
    """The one parent run of the sweep(s) in cwd's store, and its children by job number."""
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {int(r.data.tags["sweep.job"]): r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children.values())
    return client, parent, children


def results(sweep_dir: Path) -> dict[int, dict]:
    return {int(path.parent.name): json.loads(path.read_text()) for path in sweep_dir.glob("*/result.json")}


def epochs_logged(client: MlflowClient, run_id: str) -> list[int]:
    return sorted(metric.step for metric in client.get_metric_history(run_id, "val/acc"))


def test_a_diverging_job_fails_alone_and_the_table_shows_every_job(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    result = run_train("-m", "optimizer=sgd", "optimizer.lr=0.05,1e6", "trainer.epochs=3",
                       f"hydra.sweep.dir={sweep_dir}", *QUICK, cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: 1 of 2 jobs did not finish")
    table = result.stdout[result.stdout.index("sweep: best val/acc marked *"):]
    assert "0*" in table and "0.05" in table and "FINISHED" in table
    assert "1e+06" in table and "FAILED" in table and "loss became nan" in table

    jobs = results(sweep_dir)
    assert jobs[0]["status"] == "FINISHED" and 0.5 < jobs[0]["value"] <= 1
    assert jobs[1]["status"] == "FAILED" and jobs[1]["reason"].startswith("loss became nan")

    client, parent, children = sweep_runs(tmp_path)
    assert parent.info.status == "FAILED" and parent.data.tags["sweep.failed_jobs"] == "1"
    assert children[0].info.status == "FINISHED"
    assert children[1].info.status == "FAILED"
    assert children[1].data.tags["sweeplab.failure"].startswith("DivergedError: loss became nan")
    assert epochs_logged(client, children[1].info.run_id) == [], "divergence stops the job in its first epoch"
    summary = Path(client.download_artifacts(parent.info.run_id, "summary/summary.md", str(tmp_path))).read_text()
    assert "| FAILED |" in summary and "| FINISHED |" in summary
    assert parent.data.tags["best_child_run_id"] == children[0].info.run_id


def start_training(cwd: Path, *arguments: str) -> subprocess.Popen:
    return start_train(*arguments, *QUICK, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_when(process: subprocess.Popen, path: Path, timeout: float = 180, ready=lambda: True,
              sig: signal.Signals = signal.SIGKILL) -> None:
    """SIGKILL the sweep once `path` exists (and `ready()`): no handler, no atexit, nothing gets to clean up."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and ready()):
        assert process.poll() is None, "the sweep ended before it could be killed"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    process.send_signal(sig)
    process.wait(timeout=60)


def finished(run_dir: Path) -> bool:
    """A job's result says FINISHED (in a sequential sweep, once its record is complete, beside the next job)."""
    try:
        return json.loads((run_dir / "result.json").read_text())["status"] == "FINISHED"
    except (OSError, ValueError):
        return False


def run_started(cwd: Path, run_dir: Path) -> bool:
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return bool(client.search_runs(experiments, f"tags.`hydra.output_dir` = '{run_dir}'"))


def test_a_killed_sweep_resumes_in_the_same_mlflow_runs(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    command = ["optimizer.lr=0.01,0.003", "trainer.epochs=12", "dataset.batch_size=32", f"hydra.sweep.dir={sweep_dir}"]
    # Mid-job 1, with job 0's record complete and job 1's MLflow run started (the recorder does both beside it).
    kill_when(start_training(tmp_path, "-m", *command), sweep_dir / "1" / "checkpoints" / "last.pt",
              ready=lambda: finished(sweep_dir / "0") and run_started(tmp_path, sweep_dir / "1"))
    jobs = results(sweep_dir)
    assert jobs[0]["status"] == "FINISHED" and jobs[1]["status"] == "RUNNING"
    client, parent, before = sweep_runs(tmp_path)
    assert before[1].info.status == "RUNNING"

    result = run_train("-m", *QUICK, *command, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{sweep_dir / '0'} finished before" in result.stdout + result.stderr
    assert f"Resuming {sweep_dir / '1'} after epoch" in result.stdout

    client, resumed_parent, after = sweep_runs(tmp_path)
    assert resumed_parent.info.run_id == parent.info.run_id and resumed_parent.info.status == "FINISHED"
    assert {job: run.info.run_id for job, run in after.items()} == {job: run.info.run_id for job, run in before.items()}
    assert {run.info.status for run in after.values()} == {"FINISHED"}
    assert epochs_logged(client, after[1].info.run_id) == list(range(1, 13)), "every epoch once, none repeated"
    assert {job["status"] for job in results(sweep_dir).values()} == {"FINISHED"}

    other = run_train("-m", *QUICK, "optimizer.lr=0.1,0.01", *command[1:], cwd=tmp_path)  # another grid, same dir
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert other.stderr.strip().splitlines()[-1].startswith(f"error: {sweep_dir / '0'} already holds a different job")


def test_ctrl_c_ends_a_sweep_with_its_parent_run_and_table(tmp_path: Path) -> None:
    """Hydra 1.3 skips the callbacks' end when a sweep raises: sweeplab ends it all the same, and counts and
    names the jobs it never reached."""
    sweep_dir = tmp_path / "sweep"
    command = ["-m", "optimizer.lr=0.01,0.003,0.001,0.0003", "trainer.epochs=30", f"hydra.sweep.dir={sweep_dir}"]
    process = start_train(*command, *QUICK, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    kill_when(process, sweep_dir / "1" / "checkpoints" / "last.pt", sig=signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode != 0 and "sweep: best val/acc marked *" in stdout
    assert (f"error: 3 of 4 jobs did not finish: 1 stopped (reasons in the table) and 2 never started (jobs 2, 3); "
            f"re-run the same command with hydra.sweep.dir={sweep_dir} to run only those") in stderr
    table = stdout[stdout.index("sweep: best val/acc marked *"):]
    assert "KILLED" in table and table.count("NOT_STARTED") == 2 and "0.001" in table and "0.0003" in table
    jobs = results(sweep_dir)
    assert jobs[0]["status"] == "FINISHED" and jobs[1]["status"] == "KILLED" and set(jobs) == {0, 1}
    _, parent, children = sweep_runs(tmp_path)
    assert parent.info.status == "KILLED" and children[1].info.status == "KILLED"

    resumed = run_train(*command, *QUICK, cwd=tmp_path)  # the line's advice: the same command, the same sweep dir
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert {job["status"] for job in results(sweep_dir).values()} == {"FINISHED"} and len(results(sweep_dir)) == 4
    client, parent_after, after = sweep_runs(tmp_path)
    assert parent_after.info.run_id == parent.info.run_id and parent_after.info.status == "FINISHED"
    assert after[1].info.run_id == children[1].info.run_id and after[1].info.status == "FINISHED"
    assert epochs_logged(client, after[1].info.run_id) == list(range(1, 31)), "every epoch once"


def test_a_ray_sweep_runs_its_jobs_as_tasks_of_a_local_ray(tmp_path: Path) -> None:
    """hydra/launcher=ray (pip install -e ".[ray]"): the sweep starts a local Ray, runs each job as a Ray task and
    leaves no Ray process behind. (submitit's launcher is tested in test_torchrun.py, with jobs of 2 tasks.)"""
    sweep_dir = tmp_path / "sweep"
    started = time.time()
    result = run_train("-m", "hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2",
                       "+hydra.launcher.ray.init.include_dashboard=false", "optimizer.lr=0.01,0.003",
                       "trainer.epochs=2", f"hydra.sweep.dir={sweep_dir}", *QUICK, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Ray Launcher is launching 2 jobs" in output
    assert "\x1b[" not in output and "repeated" not in output, "Ray's colour codes and folded lines are off"
    assert output.count("sweeplab run (best epoch") == 2, "each job's table, whole"
    client, parent, children = sweep_runs(tmp_path)
    assert parent.info.status == "FINISHED" and sorted(children) == [0, 1]
    assert {run.info.status for run in children.values()} == {"FINISHED"}
    assert [epochs_logged(client, run.info.run_id) for run in children.values()] == [[1, 2], [1, 2]]
    assert {run.data.tags["torch.threads"] for run in children.values()} == {"1"}, "Ray's one CPU a task"
    assert {job["status"] for job in results(sweep_dir).values()} == {"FINISHED"}
    assert "0.003" in result.stdout.split("sweep: best")[-1], "the sweep's table"
    deadline = time.monotonic() + 30  # Ray's daemons end a moment after its driver
    while (left := ray_processes_since(started)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"Ray processes left running: {left}"


def ray_processes_since(started: float) -> list[str]:
    return [p.info["name"] for p in psutil.process_iter(["name", "create_time"])  # None for one gone meanwhile
            if (p.info["create_time"] or 0) >= started and "ray" in (p.info["name"] or "").lower()]


def study(cwd: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{cwd / 'optuna.db'}")


def test_an_optuna_search_stopped_mid_trial_resumes_its_study(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "search"
    command = ["hparams_search=digits_mlp", "hydra.sweeper.n_trials=3", "optimizer.lr=tag(log,interval(1e-3,1e-2))",
               "trainer.epochs=12", "dataset.batch_size=32", f"hydra.sweep.dir={sweep_dir}"]
    kill_when(start_training(tmp_path, "-m", *command), sweep_dir / "1" / "checkpoints" / "last.pt")
    states = [trial.state.name for trial in study(tmp_path, "digits_mlp").trials]
    assert states == ["COMPLETE", "RUNNING"]

    result = run_train("-m", *QUICK, *command, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Trial 1 was cut off: running it again" in result.stdout
    assert f"Resuming {sweep_dir / '1'} after epoch" in result.stdout
    trials = study(tmp_path, "digits_mlp").trials
    assert [trial.state.name for trial in trials] == ["COMPLETE"] * 3
    client, parent, children = sweep_runs(tmp_path)
    assert {job: run.data.tags["optuna.trial"] for job, run in children.items()} == {0: "0", 1: "1", 2: "2"}
    assert {run.info.status for run in children.values()} == {"FINISHED"}
    assert epochs_logged(client, children[1].info.run_id) == list(range(1, 13))
    assert sorted(trials[1].intermediate_values) == list(range(1, 13)), "the resumed trial reported each epoch once"
    assert "already reported" not in result.stdout + result.stderr
    for trial in trials:  # the study's value is what the trial's MLflow run recorded as its best
        assert children[trial.number].data.metrics["best/val/acc"] == pytest.approx(trial.value)
    insight = Path(client.download_artifacts(parent.info.run_id, "search", str(tmp_path / "insight")))
    assert {path.name for path in insight.iterdir()} == {"optimization_history.png", "param_importances.png",
                                                         "importance.json"}
    importances = json.loads((insight / "importance.json").read_text())
    assert "optimizer.lr" in importances and set(importances) <= {"optimizer", "optimizer.lr", "optimizer.weight_decay"}
    assert sum(importances.values()) == pytest.approx(1)


def test_failed_optuna_trials_are_recorded_and_the_search_goes_on(tmp_path: Path) -> None:
    result = run_train("-m", "hparams_search=digits_mlp", "hydra.sweeper.n_trials=2", "optimizer=sgd",
                       "optimizer.lr=choice(1e6)", "trainer.epochs=1", *QUICK, cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert [trial.state.name for trial in study(tmp_path, "digits_mlp").trials] == ["FAIL", "FAIL"]
    _, parent, children = sweep_runs(tmp_path)
    assert {run.info.status for run in children.values()} == {"FAILED"} and len(children) == 2
