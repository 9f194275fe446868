"""`sweeplab compare` on a store of 200 runs, against the floor of reading those runs with MLflow's client.

    python benchmarks/compare_speed.py [--sweeps 20] [--jobs 10] [--repeats 3]

A real 2-job sweep (`python train.py -m optimizer.lr=1e-2,1e-3 trainer.epochs=10`, tracked) is the template: its
parent's tags, and a child's params, tags and every metric's history, are copied into `--sweeps` sweeps of
`--jobs` jobs each (a parent run and its children, each job with its own learning rate and scores), in a fresh
sqlite store. Then, alternating, each a fresh process as a user runs it: `sweeplab compare` (every run, best
first), `sweeplab compare --sweep latest`, and the floor, a Python process that imports mlflow and reads the same
runs with `MlflowClient.search_runs`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from floor import timed  # beside this script

from sweeplab.core.vocabulary import JOB_TAG, OVERRIDES_TAG, PARENT_TAG, RUN_DIR_TAG, SWEEP_DIR_TAG

REPO = Path(__file__).resolve().parents[1]
FLOOR = ("from mlflow import MlflowClient; client = MlflowClient({uri!r}); "
         "ids = [e.experiment_id for e in client.search_experiments()]; "
         "print(len(client.search_runs(ids, max_results=50000)))")


def template_sweep(folder: Path) -> tuple[dict, dict, dict, dict]:
    """(parent tags, a child's params, its tags, its metric histories) of a real tracked 2-job sweep."""
    from mlflow import MlflowClient

    command = [sys.executable, str(REPO / "train.py"), "-m", "optimizer.lr=1e-2,1e-3", "trainer.epochs=10",
               "export.onnx=false", "tracking.log_model=false", "trainer.progress=false"]
    subprocess.run(command, cwd=folder, check=True, capture_output=True)
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("sweeplab-digits").experiment_id])
    parent = next(run for run in runs if PARENT_TAG not in run.data.tags)
    child = next(run for run in runs if PARENT_TAG in run.data.tags)
    histories = {key: client.get_metric_history(child.info.run_id, key) for key in child.data.metrics}
    return parent.data.tags, child.data.params, child.data.tags, histories


def filled_store(folder: Path, sweeps: int, jobs: int) -> str:
    """A store of `sweeps` x (1 parent + `jobs` children) runs shaped like the template's."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    parent_tags, params, child_tags, histories = template_sweep(folder / "template")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("sweeplab-digits")
    for sweep in range(sweeps):
        sweep_dir = f"{folder}/multirun/{sweep:02d}"
        parent = client.create_run(experiment, tags={**parent_tags, SWEEP_DIR_TAG: sweep_dir})
        for job in range(jobs):
            lr = f"{10 ** (-1 - 3 * job / jobs):.4g}"
            child = client.create_run(experiment, tags={**child_tags, PARENT_TAG: parent.info.run_id, JOB_TAG: str(job),
                                                        SWEEP_DIR_TAG: sweep_dir, RUN_DIR_TAG: f"{sweep_dir}/{job}",
                                                        OVERRIDES_TAG: f"optimizer.lr={lr}"})
            scale = 1 - abs(job - jobs / 2) / jobs / 4  # each job its own scores
            metrics = [Metric(key, point.value * scale if "acc" in key else point.value, point.timestamp, point.step)
                       for key, history in histories.items() for point in history]
            run_params = [Param(key, value) for key, value in {**params, "optimizer.lr": lr}.items()]
            for start in range(0, len(metrics), 900):  # log_batch takes at most 1000 values
                client.log_batch(child.info.run_id, metrics=metrics[start:start + 900],
                                 params=run_params if start == 0 else [])
            client.set_terminated(child.info.run_id)
        client.set_terminated(parent.info.run_id)
    return uri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "template").mkdir()
        uri = filled_store(folder, args.sweeps, args.jobs)
        sweeplab = str(Path(sys.executable).parent / "sweeplab")
        commands = {
            "sweeplab compare": [sweeplab, "compare", "--uri", uri],
            "sweeplab compare --sweep latest": [sweeplab, "compare", "--uri", uri, "--sweep", "latest"],
            "MLflow's client reading every run": [sys.executable, "-c", FLOOR.format(uri=uri)],
        }
        seconds = {label: [] for label in commands}
        for _ in range(args.repeats):
            for label, command in commands.items():
                seconds[label].append(timed(command, folder)["wall"])
    runs = args.sweeps * (args.jobs + 1)
    floor = statistics.median(seconds["MLflow's client reading every run"])
    print(f"{runs} runs ({args.sweeps} sweeps of {args.jobs} jobs), median of {args.repeats}:")
    for label, values in seconds.items():
        median = statistics.median(values)
        print(f"  {label:36s} {median:5.2f} s  ({median / floor:.2f}x the floor)")


if __name__ == "__main__":
    main()
