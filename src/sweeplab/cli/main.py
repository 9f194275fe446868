"""`sweeplab <command>`: the tools around training runs (compare, diff, confirm, ui, server, export, predict, cache).

Each command lives in its own module exposing `add_parser(subparsers)`, which registers its
arguments and sets `run`; modules import heavy libraries inside `run`, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from sweeplab.core.errors import exit_on_user_error

COMMANDS = ("compare", "diff", "confirm", "ui", "server", "export", "predict", "cache")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sweeplab", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        importlib.import_module(f"sweeplab.cli.{command}").add_parser(subparsers)
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # What predict, diff and export print is their result, not MLflow's download bar (a setting of yours wins).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        return args.run(args) or 0
    except BrokenPipeError:  # `sweeplab compare --json | head` read what it wanted: no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit would fail again
        return 1


if __name__ == "__main__":
    sys.exit(main())
