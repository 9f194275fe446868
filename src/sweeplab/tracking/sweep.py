"""Sweeps in MLflow: one parent run per multirun, every job its child, a summary on the parent.

`SweepTracking` is a Hydra callback (conf/train.yaml, hydra.callbacks). It creates the store and
the parent run in the launching process before any job starts (many processes creating a fresh
sqlite file at once race), and hands the parent's id to jobs through the environment, which
joblib/submitit worker processes inherit. The summary is refreshed after every job, wherever it
runs, and once more when the sweep ends. Re-running a sweep in its sweep dir reopens its parent.
"""

from __future__ import annotations

import csv
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sweeplab.config import metric_mode
from sweeplab.sweeps.preflight import sweep_overrides
from sweeplab.sweeps.results import overrides_dict, varying_keys
from sweeplab.tracking.tags import OPTIMIZED_TAG, OVERRIDES_TAG, PARENT_RUN_ENV, PARENT_TAG, SWEEP_DIR_TAG, SWEPT_TAG

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

BEST_CHILD_TAG = "best_child_run_id"
SUMMARY_DIR = "summary"


def best_metric_key(metric: str) -> str:
    """The metric each run logs at its end: the best value of optimized_metric over its epochs."""
    return f"best/{metric}"


class SweepTracking(Callback):
    def __init__(self) -> None:
        self.parent_id: str | None = None
        self.uri: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not config.tracking.enabled:
            return
        from mlflow import MlflowClient

        from sweeplab.tracking.store import check_reachable, ensure_experiment, experiment_name, resolve_uri

        self.uri = resolve_uri(config.tracking.uri)
        check_reachable(self.uri)
        client = MlflowClient(self.uri)
        experiment_id = ensure_experiment(client, experiment_name(config.tracking.experiment, config.dataset.name))
        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        overrides = list(config.hydra.overrides.task)
        tags = {
            SWEEP_DIR_TAG: str(sweep_dir),
            OVERRIDES_TAG: shlex.join(overrides),
            SWEPT_TAG: shlex.join(o.get_key_element() for o in sweep_overrides(config) if o.is_sweep_override()),
            OPTIMIZED_TAG: config.optimized_metric,
        }
        self.parent_id = resumed_parent(client, experiment_id, sweep_dir) or client.create_run(
            experiment_id, run_name=f"sweep {sweep_dir.name}", tags=tags
        ).info.run_id
        os.environ[PARENT_RUN_ENV] = self.parent_id
        print(f"MLflow sweep run {self.parent_id} in {self.uri}", file=sys.stderr)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.types import RunMode

        from sweeplab.tracking.store import resolve_uri

        parent_id = os.environ.get(PARENT_RUN_ENV)
        if parent_id and config.tracking.enabled and config.hydra.mode == RunMode.MULTIRUN:
            _refresh(resolve_uri(config.tracking.uri), parent_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Hydra calls this however the sweep ended (done, a job raised, Ctrl-C): the children say how."""
        if self.parent_id is None:
            return
        from mlflow import MlflowClient

        from sweeplab.tracking.store import delivery_errors

        parent_id, self.parent_id = self.parent_id, None
        statuses = {child.info.status for child in _refresh(self.uri, parent_id) or []}
        status = "FAILED" if "FAILED" in statuses else "KILLED" if statuses - {"FINISHED"} else "FINISHED"
        try:
            MlflowClient(self.uri).set_terminated(parent_id, status)
        except delivery_errors() as error:
            print(f"warning: could not end MLflow sweep run {parent_id}: {error}", file=sys.stderr)


def resumed_parent(client: MlflowClient, experiment_id: str, sweep_dir: Path) -> str | None:
    """The parent run of an earlier sweep in this sweep dir, running again: a resumed sweep keeps one parent."""
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{SWEEP_DIR_TAG}` = '{sweep_dir}'", max_results=10000
    )
    parents = [run for run in runs if PARENT_TAG not in run.data.tags]
    if not parents:
        return None
    client.update_run(parents[0].info.run_id, status="RUNNING")
    return parents[0].info.run_id


def _refresh(uri: str, parent_id: str) -> list[Run] | None:
    """Rewrite the summary; a tracking outage costs the summary, never the sweep."""
    from mlflow import MlflowClient

    from sweeplab.tracking.store import delivery_errors

    try:
        return log_sweep_summary(MlflowClient(uri), parent_id)
    except delivery_errors() as error:
        print(f"warning: could not update the sweep summary of MLflow run {parent_id}: {error}", file=sys.stderr)
        return None


def child_runs(client: MlflowClient, parent_id: str) -> list[Run]:
    parent = client.get_run(parent_id)
    return client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'", max_results=10000
    )


def summary_rows(parent: Run, children: list[Run]) -> tuple[list[dict[str, Any]], list[str], str]:
    """One row per job: swept values, status, metrics; sorted best first. Also the swept keys and metric."""
    metric = parent.data.tags.get(OPTIMIZED_TAG, "val/acc")
    overrides = [overrides_dict(shlex.split(child.data.tags.get(OVERRIDES_TAG, ""))) for child in children]
    declared = shlex.split(parent.data.tags.get(SWEPT_TAG, ""))
    keys = declared + [key for key in varying_keys(overrides) if key not in declared]
    rows = []
    for child, values in zip(children, overrides, strict=True):
        metrics = child.data.metrics
        rows.append({
            "run_id": child.info.run_id,
            "job": child.data.tags.get("sweep.job", ""),
            **{key: values.get(key, "") for key in keys},
            "status": child.info.status,
            best_metric_key(metric): metrics.get(best_metric_key(metric)),
            **{name: metrics.get(name) for name in ("val/acc", "val/loss", "train/acc", "train/loss")},
        })
    sign = 1 if metric_mode(metric) == "max" else -1
    rows.sort(key=lambda row: (row[best_metric_key(metric)] is None, -sign * (row[best_metric_key(metric)] or 0)))
    return rows, keys, metric


def log_sweep_summary(client: MlflowClient, parent_id: str) -> list[Run]:
    """Write summary.csv, summary.md and metric-vs-param plots to the parent; tag the best child."""
    children = child_runs(client, parent_id)
    if not children:
        return children
    rows, keys, metric = summary_rows(client.get_run(parent_id), children)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        write_csv(rows, out / "summary.csv")
        (out / "summary.md").write_text(markdown_table(rows))
        if keys:
            plot_metric_vs_params(rows, keys, best_metric_key(metric), out / "metric_vs_params.png")
        client.log_artifacts(parent_id, folder, SUMMARY_DIR)
    best = rows[0]
    tags = {"sweep.jobs": str(len(rows)), "sweep.failed_jobs": str(sum(row["status"] == "FAILED" for row in rows))}
    if best[best_metric_key(metric)] is not None:
        tags[BEST_CHILD_TAG] = best["run_id"]
    for key, value in tags.items():
        client.set_tag(parent_id, key, value)
    return children


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)

    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(row[key]) for key in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot_metric_vs_params(rows: list[dict[str, Any]], keys: list[str], metric: str, path: Path) -> None:
    """One panel per swept param; numeric params on a log axis when they span decades (learning rates)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.5 * len(keys), 4), layout="constrained")
    done = [row for row in rows if row[metric] is not None]
    for axes, key in zip(figure.subplots(1, len(keys), squeeze=False).flat, keys, strict=True):
        values = [row[key] for row in done]
        numbers = _as_numbers(values)
        axes.scatter(numbers if numbers is not None else values, [row[metric] for row in done])
        if numbers is not None and min(numbers) > 0 and max(numbers) / min(numbers) >= 100:
            axes.set_xscale("log")
        axes.set(xlabel=key, ylabel=metric, title=f"{metric} vs {key}")
        axes.grid(alpha=0.3)
    figure.savefig(path, dpi=100)


def _as_numbers(values: list[str]) -> list[float] | None:
    try:
        return [float(value) for value in values]
    except ValueError:
        return None
