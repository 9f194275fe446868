"""torchrun: real `torchrun --nproc_per_node=2` processes on the CPU (gloo) train one run, rank 0's.

One plain run and one torchrun run with the same global batch are shared by the tests; a torchrun
run killed mid-epoch (tests/faults/sitecustomize.py) resumes under torchrun to the same metrics, one sent
SIGTERM ends KILLED, and a sweep whose jobs each train on 2 submitit tasks trains its default job as the
torchrun run does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from launch import REPO, TORCHRUN, UNEXPORTED, rerun_printed, run_train, start_train
from sweeplab.runs.run_table import reproduce_command
from sweeplab.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow
FAULTS = REPO / "tests" / "faults"
# 1,150 digits in global batches of 64: 17 steps an epoch, each rank 32 images a step.
RUN = ["trainer.epochs=4", "dataset.batch_size=64", "trainer.deterministic=true", *UNEXPORTED,
       "trainer.log_every_n_steps=8"]
EPOCH_METRICS = ("train/loss", "train/acc", "val/loss", "val/acc", "lr")




def run(cwd: Path, torchrun: bool, *overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    flags = [override for override in overrides if override.startswith("-")]  # -m: before every override
    arguments = [*flags, *RUN, *(override for override in overrides if override not in flags)]
    return run_train(*arguments, cwd=cwd, env=env, command=TORCHRUN if torchrun else None)


def killing(kill_at: dict) -> dict:
    return {"PYTHONPATH": os.pathsep.join([str(FAULTS), os.environ.get("PYTHONPATH", "")]),
            "SWEEPLAB_KILL_AT": json.dumps(kill_at)}


def only_run(cwd: Path) -> tuple[MlflowClient, str]:
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return client, run.info.run_id


def per_epoch(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key)) for key in EPOCH_METRICS}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, Path]:
    """One plain run and one torchrun run, both with global batches of 64."""
    folders = {name: tmp_path_factory.mktemp(name) for name in ("plain", "torchrun")}
    for name, folder in folders.items():
        result = run(folder, name == "torchrun")
        assert result.returncode == 0, result.stderr[-3000:]
        (folder / "stdout.txt").write_text(result.stdout)
    return folders


def test_compare_prints_the_torchrun_command_that_composes_the_same_config(reference: dict[str, Path]) -> None:
    folder = reference["torchrun"]
    client, run_id = only_run(folder)
    command = reproduce_command(client, run_id).splitlines()[-1]
    assert command.startswith("torchrun --nproc_per_node=2 train.py "), command
    composed = rerun_printed(command, "--cfg", "job", cwd=folder)
    (run_dir,) = [path.parent for path in folder.glob("outputs/*/*/.hydra")]
    ran = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert {**yaml.safe_load(composed.stdout), "paths": None} == {**ran, "paths": None}, "paths hold the run's dir"


def test_two_processes_train_one_run_as_one_process_does(reference: dict[str, Path]) -> None:
    """Rank 0's run dir is the run's (one .hydra/, one train.log, one summary); one MLflow run; the validation
    accuracy within a point of the plain run's; last.pt holds both ranks' random states."""
    folder = reference["torchrun"]
    (run_dir,) = [path.parent for path in folder.glob("outputs/*/*/.hydra")]
    assert [path for path in folder.glob("outputs/*/*")] == [run_dir], "one run dir, not one per rank"
    assert "epoch 4 of 4: " in (run_dir / "train.log").read_text()
    assert (folder / "stdout.txt").read_text().count("sweeplab run (best epoch") == 1
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert checkpoint["world_size"] == 2 and len(checkpoint["rng"]) == 2
    assert not (checkpoint["rng"][0]["torch"] == checkpoint["rng"][1]["torch"]).all(), "each rank augments its own way"

    accuracies = {}
    for name, path in reference.items():
        client, run_id = only_run(path)
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and len(client.get_metric_history(run_id, "val/acc")) == 4
        accuracies[name] = run.data.metrics["best/val/acc"]
    assert abs(accuracies["torchrun"] - accuracies["plain"]) <= 0.01, accuracies
    assert accuracies["plain"] > 0.8


def test_a_killed_torchrun_run_resumes_under_torchrun_as_if_never_stopped(reference: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    """SIGKILL in epoch 3 (torchrun and rank 0; rank 1 then loses its peer); a plain resume is refused in one line;
    torchrun resumes it in the same MLflow run to the uninterrupted run's per-epoch metrics, bit for bit."""
    killed = run(tmp_path, True, env=killing({"process": "train", "call": "sweeplab.training.engine:Trainer.train_step",
                                               "nth": 40, "when": "before"}))
    assert killed.returncode != 0
    (run_dir,) = [path.parent for path in tmp_path.glob("outputs/*/*/.hydra")]
    resume = f"hydra.run.dir={run_dir}"

    plain = run(tmp_path, False, resume)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines()[-1].startswith(f"error: {run_dir} was trained on 2 process(es), not 1: "
                                                            "resume it with `torchrun --nproc_per_node=2 train.py")

    resumed = run(tmp_path, True, resume)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run_dir / "result.json").read_text())["status"] == "FINISHED"
    client, run_id = only_run(tmp_path)
    expected_client, expected_id = only_run(reference["torchrun"])
    assert per_epoch(client, run_id) == per_epoch(expected_client, expected_id)


def test_a_sigterm_to_torchrun_ends_its_run_killed_as_rank_0_says(tmp_path: Path) -> None:
    """scancel or a time limit: torchrun passes the SIGTERM to its ranks; rank 0 ends the MLflow run KILLED and
    says how to resume, once."""
    training = start_train("trainer.epochs=200", *UNEXPORTED, cwd=tmp_path, command=TORCHRUN,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # An epoch done, and the MLflow run created (its environment/ is written right after): on 2 loaded cores the
    # recorder can take longer to create a fresh store than the first epoch takes, and the run would only be pending.
    while not (list(tmp_path.glob("outputs/*/*/checkpoints/last.pt")) and
               list(tmp_path.glob("outputs/*/*/environment"))) and training.poll() is None:
        time.sleep(0.2)
    training.send_signal(signal.SIGTERM)
    _, stderr = training.communicate(timeout=120)
    assert training.returncode != 0
    (run_dir,) = [path.parent for path in tmp_path.glob("outputs/*/*/.hydra")]
    said = [line for line in stderr.splitlines() if line.startswith("terminated (SIGTERM): resume with `")]
    assert said == [f"terminated (SIGTERM): resume with `torchrun --nproc_per_node=2 train.py trainer.epochs=200 "
                    f"export.onnx=false tracking.log_model=false trainer.progress=false hydra.run.dir={run_dir}`"]
    assert json.loads((run_dir / "result.json").read_text())["status"] == "KILLED"
    client, run_id = only_run(tmp_path)
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["sweeplab.failure"] == "Terminated: terminated (SIGTERM)"


def test_a_sweep_of_two_task_jobs_trains_each_job_as_torchrun_does(reference: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    """hydra/launcher=submitit_local with 2 tasks a job: one run dir, one train.log and one MLflow child per job
    (not one per task), and the job with the default config has the torchrun run's per-epoch metrics."""
    swept = run(tmp_path, False, "-m", "seed=0,1", "hydra/launcher=submitit_local",
                "hydra.launcher.tasks_per_node=2", "hydra.launcher.cpus_per_task=1")
    assert swept.returncode == 0, swept.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    children = {int(r.data.tags["sweep.job"]): r.info.run_id for r in runs if "sweep.job" in r.data.tags}
    assert len(runs) == 3 and sorted(children) == [0, 1], "a parent and one child per job"
    assert len(list(tmp_path.glob("multirun/*/*/.submitit/*/*_result.pkl"))) == 4, "2 submitit jobs of 2 tasks"
    assert {client.get_run(i).data.tags["torch.threads"] for i in children.values()} == {"1"}, "cpus_per_task"
    for job in (0, 1):
        (run_dir,) = tmp_path.glob(f"multirun/*/*/{job}")
        assert (run_dir / "train.log").read_text().count("epoch 4 of 4: ") == 1, "rank 0 alone logs"
        assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["world_size"] == 2
        assert json.loads((run_dir / "result.json").read_text())["status"] == "FINISHED"
    expected_client, expected_id = only_run(reference["torchrun"])
    assert per_epoch(client, children[0]) == per_epoch(expected_client, expected_id)


def test_one_ranks_user_error_ends_every_rank_with_one_line(tmp_path: Path) -> None:
    """Rank 1 alone meets trouble mid-epoch: it says so once, torchrun ends rank 0, nothing hangs."""
    failed = run(tmp_path, True, "tracking.enabled=false", env=killing(
        {"process": "train", "call": "sweeplab.training.engine:Trainer.train_step", "nth": 5, "rank": 1,
         "error": "an image of rank 1's shard is unreadable"}))
    assert failed.returncode != 0
    lines = [line for line in failed.stderr.splitlines() if "unreadable" in line]
    assert lines == ["error on rank 1: an image of rank 1's shard is unreadable"], failed.stderr[-3000:]


@pytest.mark.parametrize("overrides, line", [
    (["dataset.batch_size=63"], "error: dataset.batch_size=63 is the global batch, split over torchrun's 2 processes: "
                                "use a multiple of 2"),
    (["-m", "optimizer.lr=0.1,0.01"], "error: torchrun trains one run on several processes, not a sweep (-m)"),
], ids=["uneven batch", "sweep"])
def test_torchrun_refusals_are_one_line(tmp_path: Path, overrides: list[str], line: str) -> None:
    """Said by rank 0 only: every rank meets a config's mistakes."""
    refused = run(tmp_path, True, "tracking.enabled=false", *overrides)
    assert refused.returncode != 0
    said = [text for text in refused.stderr.splitlines() if text.startswith("error")]
    assert len(said) == 1 and said[0].startswith(line), refused.stderr[-3000:]
