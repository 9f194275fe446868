"""`sweeplab diff A B`: why two runs differ, and whether the difference in their test accuracy is more than chance.

A and B are run ids (or their first 8 characters) or run dirs; `--sweep S --best 2` takes a sweep's two best
runs (A the runner-up, B the best). Printed, in order and only where the runs differ: their config (old ->
new), the code (the project's and sweeplab's commits, `git diff --stat` when the checkout is here), the
environment (device, precision, threads, package versions), the data (split digests and sizes), the outcome
(curves, best epoch, scores, the test classes that moved most) and a paired comparison on the test images: B's
accuracy minus A's with a 95% bootstrap interval, and the exact McNemar test.
"""

from __future__ import annotations

import argparse
import json
import sys

from sweeplab.core.errors import UserError
from sweeplab.core.vocabulary import CURVE_TOLERANCE
from sweeplab.tracking.store import check_reachable, resolve_uri


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("diff", help="why run A differs from run B, and whether it is more than chance",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", metavar="RUN", help="two runs: ids, 8-character prefixes or run dirs")
    parser.add_argument("--uri", help="tracking store (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)")
    parser.add_argument("--sweep", "-s", help="a sweep (parent run id or prefix, sweep dir, or latest): with --best")
    parser.add_argument("--best", type=int, metavar="2", help="with --sweep: diff its two best runs")
    parser.add_argument("--tolerance", type=float, default=CURVE_TOLERANCE,
                        help=f"curves closer than this count as the same up to rounding (default {CURVE_TOLERANCE:g})")
    parser.add_argument("--json", action="store_true", help="print JSON instead of lines")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mlflow import MlflowClient  # here, not at the top: `sweeplab --help` stays instant

    from sweeplab.runs.run_diff import diff_lines, diff_runs, find_run

    uri = resolve_uri(args.uri)
    check_reachable(uri)
    client = MlflowClient(uri)
    a, b = best_two(client, args.sweep, args.best) if args.sweep else [find_run(client, text) for text in
                                                                        two_runs(args)]
    diff = diff_runs(client, a, b, args.tolerance)
    if args.json:
        json.dump(diff, sys.stdout, indent=1)
        print()
    else:
        if args.sweep:
            print(f"sweep {args.sweep}: a is its runner-up, b its best")
        print("\n".join(diff_lines(diff)))
    return 0


def two_runs(args: argparse.Namespace) -> list[str]:
    if len(args.runs) != 2 or args.best:
        raise UserError("sweeplab diff takes two runs (ids, prefixes or run dirs), or --sweep S --best 2")
    return args.runs


def best_two(client, sweep: str, best: int | None) -> list:
    """The runner-up and the best run of a sweep, by its optimized metric."""
    from sweeplab.runs.run_table import find_runs

    if best != 2 or sweep is None:
        raise UserError("--sweep takes --best 2 (its two best runs): to diff other runs, name them")
    ranked = find_runs(client, None, sweep, "", 2)
    if len(ranked) < 2:
        raise UserError(f"sweep {sweep} has {len(ranked)} run(s) with params: a diff takes two")
    return ranked[::-1]
