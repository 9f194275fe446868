"""`sweeplab compare`: runs side by side in the terminal, showing only the params that differ.

Pick the runs by experiment, by sweep (its parent run id, a prefix of it, its sweep dir, or `latest`) or by an
MLflow filter; rows are sorted by the optimized metric. `--aggregate seed` folds runs that differ only in their
seed into one row per configuration (runs, failed runs, mean ± std). `--csv`/`--json` print the same rows
for scripts, and `--command RUN` prints the exact command that reproduces a run (or a sweep).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys

from sweeplab.core.errors import UserError
from sweeplab.core.masking import masked_text
from sweeplab.core.vocabulary import COMPARED
from sweeplab.tracking.store import check_reachable, resolve_uri


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compare", help="compare runs or a sweep in a terminal table", description=__doc__)
    parser.add_argument("--uri", help="tracking store (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--experiment", "-e", help="experiment name (default: every experiment)")
    scope.add_argument("--sweep", "-s", help="a sweep's parent run id (or its first 8 characters), its sweep dir "
                       "(multirun/...), or `latest`")
    parser.add_argument("--filter", "-f", default="", help="MLflow filter, e.g. \"params.`model.name` = 'cnn'\"")
    parser.add_argument("--metrics", "-m", help=f"comma-separated metrics (default: {','.join(COMPARED)})")
    parser.add_argument("--limit", type=int, default=200, help="the N best runs to show (sweep parents not counted)")
    parser.add_argument("--aggregate", "-a", metavar="KEY",
                        help="one row per configuration of the runs that differ only in param KEY (e.g. seed): "
                             "their number, failures, and mean ± std of the optimized metric and test/acc")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    output.add_argument("--json", action="store_true", help="print JSON instead of a table")
    output.add_argument("--command", metavar="RUN", help="print the command that reproduces this run (or sweep)")
    parser.add_argument("--wide", action="store_true", help="every column under its full name, however wide")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mlflow import MlflowClient  # here, not at the top: `sweeplab --help` stays instant

    from sweeplab.runs.run_table import (
        aggregated,
        comparison,
        find_runs,
        print_aggregation,
        print_table,
        reproduce_command,
    )

    if args.limit < 1:
        raise UserError(f"--limit {args.limit} is invalid: show at least 1 run")
    uri = resolve_uri(args.uri)
    check_reachable(uri)
    client = MlflowClient(uri)
    if args.command:
        print(reproduce_command(client, args.command))
        return 0
    runs = find_runs(client, args.experiment, args.sweep, args.filter, args.limit)
    if not runs:
        raise UserError(f"no runs match in {uri}: check --experiment/--sweep/--filter, or --uri")
    metrics = args.metrics.split(",") if args.metrics else None
    table = aggregated(runs, args.aggregate, metrics) if args.aggregate else comparison(runs, metrics)
    if args.json:
        json.dump(table.rows, sys.stdout, indent=1)
        print()
    elif args.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(table.rows[0]))
        writer.writeheader()
        writer.writerows(table.rows)
    elif args.aggregate:
        print_aggregation(table, masked_text(uri), args.wide)
    else:
        print_table(table, masked_text(uri), args.wide)
    return 0
