"""Runs side by side: which runs (an experiment, a sweep, a filter), their rows best first (or folded into
configurations over seeds), the table, and the command that reproduces a run. The `sweeplab compare` command
(sweeplab.cli.compare) prints them."""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from rich import box
from rich.console import Console
from rich.table import Table

from sweeplab.core.aggregate import STATISTICS_LEGEND, aggregate, interval_cell, mean_column, p_cell, spread
from sweeplab.core.errors import UserError
from sweeplab.core.rows import best_first, cell, legend, short_names
from sweeplab.core.vocabulary import (
    COMPARED,
    FINISHED,
    GIT_COMMIT_TAG,
    GIT_DIRTY_TAG,
    HYDRA_OVERRIDES_TAG,
    OPTIMIZED_TAG,
    OVERRIDES_TAG,
    PARENT_TAG,
    SWEEP_DIR_TAG,
    SWEEPLAB_COMMIT_TAG,
    SWEEPLAB_VERSION_TAG,
    SWEPT_TAG,
    TEST_ACC,
    TORCHRUN_TAG,
    VAL_ACC,
    best_metric,
    metric_mode,
)
from sweeplab.runs.resolve import run_id_of

DATA = "data"  # a column: which data (set and splits) a run trained, validated and tested on
IGNORED_PARAMS = {"paths.output_dir"}  # differs between every two runs, says nothing about them
SHORT_ID = 8  # run id characters shown in the table; --command takes such a prefix
MAX_SEARCHED = 50_000  # the most runs one MLflow search returns
LATEST_SWEEPS = 20  # --sweep latest: the newest of the last this many sweeps that has runs


def find_runs(client: MlflowClient, experiment: str | None, sweep: str | None, filter_: str, limit: int) -> list[Run]:
    """The `limit` best training runs (a sweep's parent run holds a summary, not a model: never counted)."""
    experiments = client.search_experiments()
    if experiment:
        experiments = [e for e in experiments if e.name == experiment]
        if not experiments:
            raise UserError(f"no experiment named {experiment!r}: `sweeplab compare` without --experiment lists all")
    ids = [e.experiment_id for e in experiments]
    filters = [filter_] if filter_ else []
    if sweep:
        filters.append(f"tags.`{PARENT_TAG}` = '{sweep_parent(client, ids, sweep)}'")
    try:
        runs = client.search_runs(ids, " and ".join(filters), max_results=MAX_SEARCHED)
    except MlflowException as error:
        raise UserError(f"bad --filter {filter_!r}: {error.message.splitlines()[0]}") from None
    return best_runs([r for r in runs if r.data.params], limit)


def best_runs(runs: list[Run], limit: int) -> list[Run]:
    """The `limit` best training runs, each by the metric it optimized (runs with no value last, newest first)."""
    scored = [{"run": run, "score": higher_is_better(run)} for run in runs]
    return [row["run"] for row in best_first(scored, "score", VAL_ACC)][:limit]


def higher_is_better(run: Run) -> float | None:
    """The run's best value of its optimized metric, negated for a loss: one scale on which runs rank."""
    optimized = run.data.tags.get(OPTIMIZED_TAG, VAL_ACC)
    value = run.data.metrics.get(best_metric(optimized))
    return None if value is None else value if metric_mode(optimized) == "max" else -value


def sweep_parent(client: MlflowClient, experiment_ids: list[str], sweep: str) -> str:
    """The parent run a user means by --sweep: `latest`, a sweep dir, or a parent run's id or prefix."""
    if sweep == "latest" or Path(sweep).is_dir():
        in_dir = "" if sweep == "latest" else f" and tags.`{SWEEP_DIR_TAG}` = '{Path(sweep).resolve()}'"
        parents = [parent for parent in client.search_runs(experiment_ids, f"tags.`{SWEPT_TAG}` != ''{in_dir}",
                                                           max_results=LATEST_SWEEPS, order_by=["start_time DESC"])
                   if has_runs(client, experiment_ids, parent.info.run_id)][:1]  # a sweep refused at once ran none
        if not parents:
            where = "yet" if sweep == "latest" else f"from {Path(sweep).resolve()} in {client.tracking_uri}"
            raise UserError(f"no sweep recorded {where}: run one with `python train.py -m ...` (tracked), or check "
                            "--uri")
        return parents[0].info.run_id
    run_id = run_id_of(client, sweep)
    try:
        tags = client.get_run(run_id).data.tags
    except MlflowException:
        raise UserError(f"no run {run_id} in {client.tracking_uri}: check the id or --uri") from None
    if SWEPT_TAG not in tags:
        job_of = f" (it is a job of sweep {tags[PARENT_TAG][:SHORT_ID]}: pass that)" if PARENT_TAG in tags else ""
        raise UserError(f"run {run_id} is not a sweep's parent run{job_of}: --sweep takes a sweep's parent run id, its "
                        "sweep dir, or latest")
    return run_id


def has_runs(client: MlflowClient, experiment_ids: list[str], parent_id: str) -> bool:
    return bool(client.search_runs(experiment_ids, f"tags.`{PARENT_TAG}` = '{parent_id}'", max_results=1))


@dataclass
class Comparison:
    rows: list[dict[str, Any]]  # run_id, name, status, the params, the metrics; best first
    params: list[str]  # the params that differ between the runs
    metrics: list[str]


def comparison(runs: list[Run], metrics: list[str] | None) -> Comparison:
    """run id, name, status, the params that differ between runs, the metrics; best first."""
    optimized = runs[0].data.tags.get(OPTIMIZED_TAG, VAL_ACC)
    sort_key = best_metric(optimized)
    keys = sorted({key for r in runs for key in r.data.params} - IGNORED_PARAMS)
    differing = [k for k in keys if len({r.data.params.get(k) for r in runs}) > 1]
    data = {r.info.run_id: data_read(r) for r in runs}
    if len(set(data.values())) > 1:  # first among the params: the last a narrow terminal gives up
        differing.insert(0, DATA)
    columns = [sort_key, *(metrics or [m for m in COMPARED if m != sort_key])]
    rows = [
        {
            "run_id": r.info.run_id,
            "name": r.info.run_name,
            "status": r.info.status,
            DATA: data[r.info.run_id],
            **{k: r.data.params.get(k) for k in differing if k != DATA},
            **{m: r.data.metrics.get(m) for m in columns},
        }
        for r in runs
    ]
    return Comparison(best_first(rows, sort_key, optimized), differing, columns)


def data_read(run: Run) -> str:
    """`<data set>@<digest>` of the splits a run read (its MLflow dataset inputs); empty for runs older than those."""
    inputs = sorted((i.dataset.name, i.dataset.digest) for i in run.inputs.dataset_inputs) if run.inputs else []
    if not inputs:
        return ""
    digest = hashlib.blake2b("".join(d for _, d in inputs).encode(), digest_size=4).hexdigest()
    return f"{inputs[0][0]}@{digest}"


@dataclass
class Aggregation:
    rows: list[dict[str, Any]]  # one per configuration: its params, n, failed, <metric>_mean, <metric>_std; best first
    params: list[str]  # the params that tell configurations apart
    metrics: list[str]
    left_out: str  # the param replicates differ in (seed)


def aggregated(runs: list[Run], key: str, metrics: list[str] | None) -> Aggregation:
    """The runs as configurations: runs that differ only in `key` (their seed) are one row, its metrics' mean ± std.

    A param that equals `key` in every run is a copy of it (the fake data set's `${seed}`), so not a
    configuration's own: kept, it would split every configuration back into its seeds.
    """
    if not any(key in run.data.params for run in runs):
        raise UserError(f"no run has a param {key!r}: --aggregate takes the param replicates differ in, e.g. seed")
    compared = comparison(runs, metrics or [TEST_ACC])
    params = [p for p in compared.params if p != key and any(row[p] != row.get(key) for row in compared.rows)]
    return Aggregation(aggregate(compared.rows, params, compared.metrics, key), params, compared.metrics, key)


def print_table(comparison: Comparison, uri: str, wide: bool = False) -> None:
    """The rows, to read in the terminal: the params that differ by their short names, then the metrics."""
    rows = comparison.rows
    metrics = [m for m in comparison.metrics if any(row[m] is not None for row in rows)]  # none logged: no column
    print_fitted(lambda params, shown, names: runs_table(rows, shown, params, names), comparison.params, metrics,
                 f"{len(rows)} runs in {uri} (best first)", wide)
    if DATA in comparison.params:
        Console().print(f"note: these runs read different data (column {DATA}: data set @ digest of its splits), so "
                        "their scores do not compare as they are", style="yellow", markup=False)


def print_aggregation(aggregation: Aggregation, uri: str, wide: bool = False) -> None:
    """The configurations, to read in the terminal: runs, failed runs, the params that tell them apart, then each
    metric's mean ± std (the optimized one with its interval and its test against the best)."""
    rows = aggregation.rows
    metrics = [m for m in aggregation.metrics if any(row[mean_column(m)] is not None for row in rows)]
    title = f"{len(rows)} configurations in {uri}, mean ± std over {aggregation.left_out} (best first)"
    print_fitted(lambda params, shown, names: configurations_table(rows, shown, params, names), aggregation.params,
                 metrics, title, wide, STATISTICS_LEGEND)


def print_fitted(build: Callable[[list[str], list[str], dict[str, str]], Table], params: list[str],
                 metrics: list[str], title: str, wide: bool, note: str | None = None) -> None:
    """`build(params shown, metrics shown, param names)`'s table, printed so that it fits the terminal.

    The params that differ are what the table is for: a terminal too narrow for every column loses the
    secondary metrics first (the optimized one stays), then params from the last, and a line names what it
    left out. `wide` shows every column under its full name, as wide as it takes (never a word or number cut).
    """
    console = Console()
    names = {key: key for key in params} if wide else short_names(params)
    unbounded = console.options.update(max_width=100_000)
    shown_params, shown_metrics = list(params), list(metrics)

    def too_wide() -> bool:
        return console.measure(build(shown_params, shown_metrics, names), options=unbounded).maximum > console.width

    while not wide and too_wide() and (len(shown_metrics) > 1 or shown_params):
        (shown_metrics if len(shown_metrics) > 1 else shown_params).pop()
    table = build(shown_params, shown_metrics, names)
    if wide:
        console.width = max(console.width, console.measure(table, options=unbounded).maximum)
    table.title = title
    table.caption = "\n".join(filter(None, [legend({key: names[key] for key in shown_params}), note]))
    console.print(table)
    hidden = [*params[len(shown_params):], *metrics[len(shown_metrics):]]
    if hidden:
        console.print(f"not shown, for width: {', '.join(hidden)} (--wide shows every column, --csv/--json every "
                      "value)", markup=False)


def runs_table(rows: list[dict[str, Any]], metrics: list[str], params: list[str], names: dict[str, str]) -> Table:
    table = Table(box=box.SIMPLE_HEAVY, pad_edge=False, collapse_padding=True)
    for column in ("run", "status", *(names[key] for key in params), *metrics):
        table.add_column(column, no_wrap=True, justify="left" if column in ("run", "status") else "right")
    for row in rows:
        table.add_row(row["run_id"][:SHORT_ID], status_word(row["status"]),
                      *(cell(row[column]) for column in (*params, *metrics)))
    return table


def status_word(status: str) -> str:
    """A run's status in a word a narrow column keeps whole: done, failed, killed, running."""
    return "done" if status == FINISHED else status.lower()


def configurations_table(rows: list[dict[str, Any]], metrics: list[str], params: list[str],
                         names: dict[str, str]) -> Table:
    table = Table(box=box.SIMPLE_HEAVY, pad_edge=False, collapse_padding=True)
    for column in ("n", "failed", *(names[key] for key in params), metrics[0], "CI", "p", *metrics[1:]):
        table.add_column(column, no_wrap=True, justify="right")
    for row in rows:
        table.add_row(str(row["n"]), str(row["failed"]), *(cell(row[key]) for key in params),
                      spread(row, metrics[0]), interval_cell(row, metrics[0]), p_cell(row, metrics[0]),
                      *(spread(row, metric) for metric in metrics[1:]))
    return table


def reproduce_command(client: MlflowClient, run_id: str) -> str:
    """`git checkout <commit>` (when the run was tracked in a checkout) and the train.py line with its overrides;
    for a sweep's parent run, the sweep's own command (`-m` and its comma lists)."""
    try:
        tags = client.get_run(run_id_of(client, run_id)).data.tags
    except MlflowException:
        raise UserError(f"no run {run_id} in {client.tracking_uri}: copy the id from `sweeplab compare`") from None
    lines = []
    if commit := tags.get(GIT_COMMIT_TAG):  # the project the run was launched from
        dirty = "  # the run had uncommitted changes" if tags.get(GIT_DIRTY_TAG) == "true" else ""
        lines.append(f"git checkout {commit}{dirty}")
    elif commit := tags.get(SWEEPLAB_COMMIT_TAG):
        version = tags.get(SWEEPLAB_VERSION_TAG, "")
        lines.append(f"# launched outside a git checkout; sweeplab {version} at commit {commit}")
    sweep = SWEPT_TAG in tags and PARENT_TAG not in tags
    typed = shlex.split(tags.get(OVERRIDES_TAG, "")) + shlex.split(tags.get(HYDRA_OVERRIDES_TAG, "") if sweep else "")
    start = f"torchrun {tags[TORCHRUN_TAG]} train.py" if TORCHRUN_TAG in tags else "python train.py"
    lines.append(" ".join([start, *(["-m"] if sweep else []), *map(shlex.quote, typed)]))
    return "\n".join(lines)
