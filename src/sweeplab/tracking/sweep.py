"""Sweeps in MLflow, in the recorder process: one parent run per multirun, every job its child, a summary on it.

The training process's side is the Hydra callback in sweeplab.sweeps.hydra_callbacks. The parent run is
created before any job starts (many processes creating a fresh sqlite file at once race); a sweep
re-run in its sweep dir reopens its parent. The summary is refreshed as jobs end (at most every
SUMMARY_SECONDS) and at the end.
"""

from __future__ import annotations

import csv
import math
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.entities import Run

from sweeplab.core.aggregate import SEED, aggregate, best_config, seeds_vary
from sweeplab.core.errors import first_line
from sweeplab.core.masking import masked_tags, masked_text
from sweeplab.core.overrides import overrides_dict, varying_keys
from sweeplab.core.rows import best_first, cell
from sweeplab.core.vocabulary import (
    BEST_CHILD_TAG,
    FAILED,
    FINISHED,
    JOB_TAG,
    KILLED,
    OPTIMIZED_TAG,
    OVERRIDES_TAG,
    PARENT_TAG,
    RUN_DIR_TAG,
    RUNNING,
    SUMMARY_ARTIFACTS,
    SWEEP_BEST_CONFIG_TAG,
    SWEEP_DIR_TAG,
    SWEEP_FAILED_JOBS_TAG,
    SWEEP_JOBS_TAG,
    SWEPT_TAG,
    TEST_ACC,
    TEST_LOSS,
    TRAIN_ACC,
    TRAIN_LOSS,
    VAL_ACC,
    VAL_LOSS,
    best_metric,
)
from sweeplab.tracking.client import DELIVERY_ERRORS, client, ensure_experiment
from sweeplab.tracking.handle import ExportRecord, SweepSpec
from sweeplab.tracking.logged_model import log_export_to_run
from sweeplab.tracking.metadata import code_tags
from sweeplab.tracking.session import sweep_parents

SUMMARY_SECONDS = 30.0  # while a sweep runs, its summary is rewritten at most this often (and at its end)
last_summary: dict[str, float] = {}  # parent run id -> when its summary was last written (time.monotonic)


def start_sweep(spec: SweepSpec) -> str:
    """The sweep's parent run: a new one, or the one an earlier run of this sweep dir started."""
    store = client(spec.uri)
    experiment_id = ensure_experiment(store, spec.experiment)
    tags = {**masked_tags(spec.tags), **code_tags(spec.project_dir, spec.code_dir)}
    parent_id = resumed_parent(store, experiment_id, spec.sweep_dir) or store.create_run(
        experiment_id, run_name=f"sweep {Path(spec.sweep_dir).name}", tags=tags
    ).info.run_id
    sweep_parents[spec.sweep_dir] = parent_id
    return parent_id


def resumed_parent(store: MlflowClient, experiment_id: str, sweep_dir: str) -> str | None:
    runs = store.search_runs([experiment_id], filter_string=f"tags.`{SWEEP_DIR_TAG}` = '{sweep_dir}'",
                             max_results=10000)
    parents = [run for run in runs if PARENT_TAG not in run.data.tags]
    if not parents:
        return None
    store.update_run(parents[0].info.run_id, status=RUNNING)
    return parents[0].info.run_id


def refresh_summary(uri: str, sweep_dir: str, parent_id: str | None) -> None:
    """After a job: the summary rewritten, unless it was less than SUMMARY_SECONDS ago. A rewrite reads every
    child, so at every job's end it would cost more with every job; the sweep's end rewrites it whatever its age.
    The parent is known by its id, or by its sweep dir where this recorder started it (a sweep's shared one)."""
    parent_id = parent_id or sweep_parents.get(sweep_dir)
    if parent_id and time.monotonic() - last_summary.get(parent_id, -math.inf) >= SUMMARY_SECONDS:
        summarized(uri, parent_id)


def summarized(uri: str, parent_id: str) -> list[Run]:
    """Rewrite the summary now, and return the children; a tracking outage costs the summary, never the sweep."""
    last_summary[parent_id] = time.monotonic()
    try:
        return log_sweep_summary(client(uri), parent_id)
    except DELIVERY_ERRORS as error:
        print(f"warning: could not update the sweep summary of MLflow run {parent_id}: "
              f"{masked_text(first_line(error))}", file=sys.stderr)
        return []


def end_sweep(uri: str, parent_id: str, tags: dict[str, str]) -> None:
    """Hydra calls this however the sweep ended (done, a job raised, Ctrl-C): the children say how."""
    statuses = {child.info.status for child in summarized(uri, parent_id)}
    status = FAILED if FAILED in statuses else KILLED if statuses - {FINISHED} else FINISHED
    try:
        store = client(uri)
        for key, value in tags.items():
            store.set_tag(parent_id, key, value)
        store.set_terminated(parent_id, status)
    except DELIVERY_ERRORS as error:
        print(f"warning: could not end MLflow sweep run {parent_id}: {masked_text(str(error))}", file=sys.stderr)


def log_best_export(uri: str, parent_id: str, run_dir: str, record: ExportRecord) -> None:
    """The sweep's export of its best job, into that job's MLflow run (found by its run dir)."""
    store = client(uri)
    (child,) = [run for run in child_runs(store, parent_id) if run.data.tags.get(RUN_DIR_TAG) == run_dir]
    log_export_to_run(uri, child.info.run_id, run_dir, record)


def child_runs(store: MlflowClient, parent_id: str) -> list[Run]:
    parent = store.get_run(parent_id)
    return store.search_runs([parent.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}'",
                             max_results=10000)


def summary_rows(parent: Run, children: list[Run]) -> tuple[list[dict[str, Any]], list[str], str]:
    """One row per job: swept values, status, metrics; sorted best first. Also the swept keys and metric."""
    metric = parent.data.tags.get(OPTIMIZED_TAG, VAL_ACC)
    overrides = [overrides_dict(shlex.split(child.data.tags.get(OVERRIDES_TAG, ""))) for child in children]
    declared = shlex.split(parent.data.tags.get(SWEPT_TAG, ""))
    keys = declared + [key for key in varying_keys(overrides) if key not in declared]
    rows = [
        {
            "run_id": child.info.run_id,
            "job": child.data.tags.get(JOB_TAG, ""),
            **{key: values.get(key, "") for key in keys},
            "status": child.info.status,
            best_metric(metric): child.data.metrics.get(best_metric(metric)),
            **{name: child.data.metrics.get(name) for name in (TEST_ACC, TEST_LOSS, VAL_ACC, VAL_LOSS, TRAIN_ACC,
                                                                TRAIN_LOSS)},
        }
        for child, values in zip(children, overrides, strict=True)
    ]
    return best_first(rows, best_metric(metric), metric), keys, metric


def log_sweep_summary(store: MlflowClient, parent_id: str) -> list[Run]:
    """Write summary.csv, summary.md and metric-vs-param plots to the parent; tag the best child.

    With seeds swept, also aggregate.csv and aggregate.md (each configuration's mean ± std over its
    seeds) and the best configuration by mean as a tag.
    """
    children = child_runs(store, parent_id)
    if not children:
        return children
    rows, keys, metric = summary_rows(store.get_run(parent_id), children)
    metrics = [best_metric(metric), TEST_ACC]
    configurations = aggregate(rows, keys, metrics) if seeds_vary(rows, keys) else []
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        write_csv(rows, out / "summary.csv")
        (out / "summary.md").write_text(markdown_table(rows))
        if configurations:
            write_csv(configurations, out / "aggregate.csv")
            (out / "aggregate.md").write_text(markdown_table(configurations))
        if keys and rows[0][best_metric(metric)] is not None:  # best first: no value, no job to plot yet
            plot_metric_vs_params(rows, keys, best_metric(metric), out / "metric_vs_params.png")
        store.log_artifacts(parent_id, folder, SUMMARY_ARTIFACTS)
    best = best_row(rows, configurations, keys)
    tags = {SWEEP_JOBS_TAG: str(len(rows)), SWEEP_FAILED_JOBS_TAG: str(sum(row["status"] == FAILED for row in rows))}
    if best[best_metric(metric)] is not None:
        tags[BEST_CHILD_TAG] = best["run_id"]
    if config := best_config(configurations, keys, best_metric(metric)):
        tags[SWEEP_BEST_CONFIG_TAG] = config
    for key, value in tags.items():
        store.set_tag(parent_id, key, value)
    return children


def best_row(rows: list[dict[str, Any]], configurations: list[dict[str, Any]], keys: list[str]) -> dict[str, Any]:
    """The best job (rows come best first): with seeds swept, the best seed of the configuration best by mean, the
    job the sweep exports (sweeplab.runs.results.best_result)."""
    if not configurations:
        return rows[0]
    kept = [key for key in keys if key != SEED]
    return next(row for row in rows if all(str(row[key]) == str(configurations[0][key]) for key in kept))


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(row[key]) for key in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot_metric_vs_params(rows: list[dict[str, Any]], keys: list[str], metric: str, path: Path) -> None:
    """One panel per swept param; numeric params on a log axis when they span decades (learning rates)."""
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
