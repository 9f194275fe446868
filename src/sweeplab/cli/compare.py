"""`sweeplab compare`: runs side by side in the terminal, showing only the params that differ.

Pick the runs by experiment, by sweep (its parent run id, or `latest`) or by an MLflow filter;
rows are sorted by the optimized metric. `--csv`/`--json` print the same rows for scripts, and
`--command RUN_ID` prints the exact command that reproduces a run.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
from typing import TYPE_CHECKING, Any

from sweeplab.errors import UserError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

IGNORED_PARAMS = {"paths.output_dir"}  # differs between every two runs, says nothing about them
SHORT_ID = 8  # run id characters shown in the table; --command takes such a prefix
DEFAULT_METRICS = ("val/acc", "val/loss", "train/loss", "epoch_seconds")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compare", help="compare runs or a sweep in a terminal table", description=__doc__)
    parser.add_argument("--uri", help="tracking store (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--experiment", "-e", help="experiment name (default: every experiment)")
    scope.add_argument("--sweep", "-s", help="a sweep's parent run id, or `latest`")
    parser.add_argument("--filter", "-f", default="", help="MLflow filter, e.g. \"params.`model.name` = 'cnn'\"")
    parser.add_argument("--metrics", "-m", help=f"comma-separated metrics (default: {','.join(DEFAULT_METRICS)})")
    parser.add_argument("--limit", type=int, default=200, help="most runs to show")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    output.add_argument("--json", action="store_true", help="print JSON instead of a table")
    output.add_argument("--command", metavar="RUN_ID", help="print the command that reproduces this run")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mlflow import MlflowClient

    from sweeplab.tracking.store import check_reachable, resolve_uri

    uri = resolve_uri(args.uri)
    check_reachable(uri)
    client = MlflowClient(uri)
    if args.command:
        print(reproduce_command(client, args.command))
        return 0
    runs = find_runs(client, args.experiment, args.sweep, args.filter, args.limit)
    if not runs:
        raise UserError(f"no runs match in {uri}: check --experiment/--sweep/--filter, or --uri")
    rows = comparison_rows(runs, args.metrics.split(",") if args.metrics else None)
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
    elif args.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    else:
        print_table(rows, uri)
    return 0


def find_runs(client: MlflowClient, experiment: str | None, sweep: str | None, filter_: str, limit: int) -> list[Run]:
    """Training runs only (a sweep's parent run holds a summary, not a model)."""
    from mlflow.exceptions import MlflowException

    from sweeplab.tracking.tags import PARENT_TAG, SWEPT_TAG

    experiments = client.search_experiments()
    if experiment:
        experiments = [e for e in experiments if e.name == experiment]
        if not experiments:
            raise UserError(f"no experiment named {experiment!r}: `sweeplab compare` without --experiment lists all")
    ids = [e.experiment_id for e in experiments]
    filters = [filter_] if filter_ else []
    if sweep == "latest":
        parents = client.search_runs(ids, f"tags.`{SWEPT_TAG}` != ''", max_results=1, order_by=["start_time DESC"])
        if not parents:
            raise UserError("no sweep recorded yet: run one with `python train.py -m ...`")
        sweep = parents[0].info.run_id
    if sweep:
        filters.append(f"tags.`{PARENT_TAG}` = '{sweep}'")
    try:
        runs = client.search_runs(ids, " and ".join(filters), max_results=limit)
    except MlflowException as error:
        raise UserError(f"bad --filter {filter_!r}: {error.message.splitlines()[0]}") from None
    return [r for r in runs if r.data.params]


def comparison_rows(runs: list[Run], metrics: list[str] | None) -> list[dict[str, Any]]:
    """run id, name, status, the params that differ between runs, the metrics; best first."""
    from sweeplab.config import metric_mode
    from sweeplab.tracking.sweep import best_metric_key
    from sweeplab.tracking.tags import OPTIMIZED_TAG

    optimized = runs[0].data.tags.get(OPTIMIZED_TAG, "val/acc")
    sort_key = best_metric_key(optimized)
    keys = sorted({key for r in runs for key in r.data.params} - IGNORED_PARAMS)
    differing = [k for k in keys if len({r.data.params.get(k) for r in runs}) > 1]
    columns = [sort_key, *(metrics or [m for m in DEFAULT_METRICS if m != sort_key])]
    rows = [
        {
            "run_id": r.info.run_id,
            "name": r.info.run_name,
            "status": r.info.status,
            **{k: r.data.params.get(k) for k in differing},
            **{m: r.data.metrics.get(m) for m in columns},
        }
        for r in runs
    ]
    sign = 1 if metric_mode(optimized) == "max" else -1
    rows.sort(key=lambda row: (row[sort_key] is None, -sign * (row[sort_key] or 0)))
    return rows


def print_table(rows: list[dict[str, Any]], uri: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} runs in {uri} (best first)", caption="`--command RUN` reproduces a run")
    columns = [column for column in rows[0] if column != "name"]  # a sweep job's name repeats its params
    for column in columns:
        table.add_column("run" if column == "run_id" else column, no_wrap=True)
    for row in rows:
        table.add_row(row["run_id"][:SHORT_ID], *(_cell(row[column]) for column in columns[1:]))
    # Never squeeze numbers and names into wrapped fragments: let a wide table be wide.
    console = Console()
    unbounded = console.options.update(max_width=100_000)
    console.width = max(console.width, console.measure(table, options=unbounded).maximum)
    console.print(table)


def _cell(value: Any) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def reproduce_command(client: MlflowClient, run_id: str) -> str:
    """`git checkout <commit>` (when the run was tracked in a checkout) and the train.py line with its overrides."""
    from mlflow.exceptions import MlflowException

    from sweeplab.tracking.tags import OVERRIDES_TAG

    try:
        tags = client.get_run(full_run_id(client, run_id)).data.tags
    except MlflowException:
        raise UserError(f"no run {run_id} in {client.tracking_uri}: copy the id from `sweeplab compare`") from None
    lines = []
    if commit := tags.get("mlflow.source.git.commit"):
        dirty = "  # the run had uncommitted changes" if tags.get("git.dirty") == "true" else ""
        lines.append(f"git checkout {commit}{dirty}")
    lines.append(" ".join(["python train.py", *map(shlex.quote, shlex.split(tags.get(OVERRIDES_TAG, "")))]).strip())
    return "\n".join(lines)


def full_run_id(client: MlflowClient, prefix: str) -> str:
    """The run whose id starts with `prefix` (as the table shows it); the prefix itself when none or many do."""
    if len(prefix) == 32:
        return prefix
    ids = [e.experiment_id for e in client.search_experiments()]
    matches = [r.info.run_id for r in client.search_runs(ids, max_results=50000) if r.info.run_id.startswith(prefix)]
    if len(matches) > 1:
        raise UserError(f"run id prefix {prefix} matches {len(matches)} runs: give more characters")
    return matches[0] if matches else prefix
