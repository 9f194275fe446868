"""Runs SIGKILLed at eight moments and resumed: each ends as one uninterrupted run ends, bit for bit.

tests/faults/sitecustomize.py kills the run (training process and recorder together) when the named
function is called; the resume is the user's: the same command with `hydra.run.dir=<its dir>` (a
sweep: `hydra.sweep.dir=`). Every case is checked against one shared uninterrupted run: the same
per-epoch metrics and test score in MLflow, each metric once per step, one MLflow run (and one
logged model) per job, a readable last.pt and result.json FINISHED.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from omegaconf import OmegaConf
from PIL import Image

from launch import REPO, UNEXPORTED, run_train
from sweeplab.cli.main import main
from sweeplab.core.errors import UserError
from sweeplab.task.train import resume_state
from sweeplab.training.checkpoint import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.slow
FAULTS = REPO / "tests" / "faults"
# 1,150 digits in batches of 128: 8 steps an epoch, train/step_loss every 4. deterministic: a sequential sweep
# keeps its thread count.
RUN = ["trainer.epochs=3", "dataset.batch_size=128", "trainer.log_every_n_steps=4", "trainer.deterministic=true"]
EPOCH_METRICS = ("train/loss", "train/acc", "val/loss", "val/acc", "lr")
RUN_METRICS = ("best/val/acc", "test/acc", "test/loss")

# name: (process, function, nth call, kill before it starts or after it returns, extra overrides)
KILL_POINTS = {
    "during an epoch": ("train", "sweeplab.training.engine:Trainer.train_step", 12, "before", UNEXPORTED),
    # Steps 11 to 13 are trained and their losses sent twice: MLflow must hold them once.
    "inside an epoch, after a step checkpoint": ("train", "sweeplab.training.engine:Trainer.train_step", 14, "before",
                                                 [*UNEXPORTED, "trainer.checkpoint_every_n_steps=5",
                                                  "tracking.flush_seconds=0"]),
    "during the checkpoint write": ("train", "torch:save", 2, "after", UNEXPORTED),  # written, not yet renamed
    "between the last checkpoint and result.json": ("train", "sweeplab.task.train:record_results", 1, "before",
                                                    UNEXPORTED),
    "during the metric flush": ("recorder", "sweeplab.tracking.session:Session.log_metrics", 1, "before", UNEXPORTED),
    "during the figures": ("recorder", "sweeplab.tracking.figures:draw_all", 1, "before", UNEXPORTED),
    "during the ONNX export": ("train", "sweeplab.export.onnx:write_onnx", 1, "before", []),
    "after the model is logged, before the run ends": ("recorder", "sweeplab.tracking.logged_model:log_onnx_model",
                                                       1, "after", ["tracking.register_model=faults"]),
}


def train(cwd: Path, *overrides: str, kill_at: dict | None = None) -> subprocess.CompletedProcess:
    killing = {"PYTHONPATH": os.pathsep.join([str(FAULTS), os.environ.get("PYTHONPATH", "")]),
               "SWEEPLAB_KILL_AT": json.dumps(kill_at)} if kill_at else {}
    return run_train(*overrides, *RUN, cwd=cwd, env=killing)


def store(cwd: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")


def all_runs(client: MlflowClient) -> list:
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def recorded(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every metric the run holds: its (step, value) pairs, in step order."""
    keys = client.get_run(run_id).data.metrics
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key)) for key in keys}


def the_score(metrics: dict[str, list[tuple[int, float]]]) -> dict[str, list[tuple[int, float]]]:
    return {key: metrics[key] for key in (*EPOCH_METRICS, *RUN_METRICS)}


@pytest.fixture(scope="module")
def uninterrupted_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference run, keeping only best.pt once finished (keep_checkpoints changes nothing it trains)."""
    cwd = tmp_path_factory.mktemp("uninterrupted")
    result = train(cwd, *UNEXPORTED, "trainer.keep_checkpoints=best", f"hydra.run.dir={cwd / 'run'}")
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd


@pytest.fixture(scope="module")
def uninterrupted(uninterrupted_dir: Path) -> dict[str, list[tuple[int, float]]]:
    (run,) = all_runs(store(uninterrupted_dir))
    return the_score(recorded(store(uninterrupted_dir), run.info.run_id))


def test_a_finished_run_keeps_what_keep_checkpoints_says_and_tells_its_story(uninterrupted_dir: Path) -> None:
    run_dir = uninterrupted_dir / "run"
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == ["best.pt"]
    story = (run_dir / "train.log").read_text()
    assert "training mlp on digits (1150 train / 288 val / 359 test images) with Adam lr 0.001, batch 128" in story
    assert [line.split(" - ", 1)[1].split(":")[0] for line in story.splitlines() if " - epoch " in line] == \
        ["epoch 1 of 3", "epoch 2 of 3", "epoch 3 of 3"]
    assert "FINISHED after" in story.splitlines()[-1] and "best val/acc" in story.splitlines()[-1]


def test_a_resume_with_another_config_is_refused_naming_the_keys(tmp_path: Path, compose_train) -> None:
    checkpoint = tmp_path / "run" / "checkpoints" / "last.pt"
    run_dir = f"paths.output_dir={tmp_path / 'run'}"  # what Hydra sets
    save_checkpoint({"config": OmegaConf.to_container(compose_train([run_dir]), resolve=True)}, checkpoint)
    assert resume_state(compose_train([run_dir, "trainer.progress=false", "tracking.enabled=false"]), checkpoint)
    with pytest.raises(UserError) as refused:
        resume_state(compose_train([run_dir, "optimizer.lr=0.1", "seed=3"]), checkpoint)
    assert str(refused.value) == (f"{tmp_path / 'run'} was trained with another config (optimizer.lr 0.001 -> 0.1, "
                                  "seed 0 -> 3): resume it with the config it started with, or start a new run in "
                                  "another hydra.run.dir")


def assert_complete(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """FINISHED, every epoch once, no metric twice at one step; returns the metrics."""
    assert client.get_run(run_id).info.status == "FINISHED"
    metrics = recorded(client, run_id)
    assert [step for step, _ in metrics["val/acc"]] == [1, 2, 3], "every epoch once"
    doubled = {key for key, values in metrics.items() if len({step for step, _ in values}) < len(values)}
    assert not doubled, f"logged twice at one step: {doubled}"
    return metrics


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_run_killed_at_any_moment_resumes_to_the_uninterrupted_result(tmp_path: Path, point: str,
                                                                         uninterrupted: dict) -> None:
    process, call, nth, when, extra = KILL_POINTS[point]
    command = [*extra, f"hydra.run.dir={tmp_path / 'run'}"]
    killed = train(tmp_path, *command, kill_at={"process": process, "call": call, "nth": nth, "when": when})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "RUNNING"

    resumed = train(tmp_path, *command)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stderr
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "FINISHED"
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] == 3
    client = store(tmp_path)
    (run,) = all_runs(client)
    assert the_score(assert_complete(client, run.info.run_id)) == uninterrupted
    if "tracking.register_model=faults" in extra:
        experiment = run.info.experiment_id
        assert len(client.search_logged_models([experiment])) == 1, "one logged model"
        assert len(client.search_model_versions("name='faults'")) == 1, "one registered version"


def test_a_sweep_killed_between_jobs_resumes_its_jobs_in_their_runs(tmp_path: Path, uninterrupted: dict,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed as job 1 starts, while job 0's record may still be completing beside it; keep_checkpoints=none leaves
    no checkpoint once the sweep is done (jobs cut off keep theirs until then), and MLflow's copy serves."""
    command = ["-m", "optimizer.lr=0.001,0.003", *UNEXPORTED, "trainer.keep_checkpoints=none",
               f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    killed = train(tmp_path, *command, kill_at={"process": "train", "call": "sweeplab.data:build_data", "nth": 2})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    client = store(tmp_path)
    before = {run.info.run_id for run in all_runs(client)}

    resumed = train(tmp_path, *command)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    runs = all_runs(client)
    assert before <= {run.info.run_id for run in runs} and len(runs) == 3, "a parent and one run per job"
    children = {int(run.data.tags["sweep.job"]): run for run in runs if "sweep.job" in run.data.tags}
    metrics = {job: assert_complete(client, run.info.run_id) for job, run in children.items()}
    assert the_score(metrics[0]) == uninterrupted, "job 0 is the uninterrupted run's config"
    results = [json.loads(path.read_text()) for path in (tmp_path / "sweep").glob("*/result.json")]
    assert [result["status"] for result in results] == ["FINISHED", "FINISHED"]
    assert not list((tmp_path / "sweep").glob("*/checkpoints/*.pt"))

    # With no checkpoint left in the run dirs, export and predict fetch best.pt from the MLflow run.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run_id, uri = children[0].info.run_id, f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["export", run_id, "--uri", uri]) == 0
    assert (elsewhere / "downloaded_runs" / run_id / "export" / "model.onnx").is_file()
    Image.fromarray(np.full((8, 8), 128, dtype=np.uint8)).save(elsewhere / "digit.png")
    assert main(["predict", "--run", run_id, "--uri", uri, str(elsewhere / "digit.png")]) == 0
