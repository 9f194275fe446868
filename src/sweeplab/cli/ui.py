"""`sweeplab ui`: the MLflow UI on this project's tracking store, bound to 127.0.0.1 unless --host says otherwise."""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
from pathlib import Path

from sweeplab.cli.listening import LOOPBACK, check_port_free, is_loopback, port_number, quiet_mlflow_server
from sweeplab.core.masking import masked_text
from sweeplab.tracking.store import check_reachable, is_http, resolve_uri, sqlite_path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ui", help=__doc__.split(": ", 1)[1], description=__doc__)
    parser.add_argument("--uri", help="tracking store (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)")
    parser.add_argument("--port", type=port_number, default=5000)
    parser.add_argument("--host", default=LOOPBACK,
                        help="address to listen on (default: %(default)s, this machine only); 0.0.0.0 exposes the "
                        "runs to anyone who can reach the port: MLflow has no authentication by default")
    parser.set_defaults(run=run)


# MLflow 3's UI opens in its GenAI mode (traces, prompts) unless the page asks for its model-training mode.
TRAINING_MODE = "?workflowType=machine_learning"


def training_runs_page(db: Path) -> str:
    """The runs of the experiment that ran last, in MLflow's model-training mode (a store without runs: the list)."""
    experiment = newest_experiment(db)
    return f"#/experiments/{experiment}/runs{TRAINING_MODE}" if experiment else f"#/experiments{TRAINING_MODE}"


def newest_experiment(db: Path) -> str | None:
    """Read from the store's own table, read-only: MLflow's client would take a second and a half to start."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as store:
            row = store.execute("SELECT experiment_id FROM runs WHERE lifecycle_stage = 'active' "
                                "ORDER BY start_time DESC LIMIT 1").fetchone()
    except sqlite3.Error:  # no store yet, or one MLflow laid out otherwise: the list of experiments will do
        return None
    return str(row[0]) if row else None


def ui_command(uri: str, host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]


def exposure_warning(host: str, port: int) -> str | None:
    """The risk of listening beyond this machine, said once: MLflow's UI lets its visitors delete runs."""
    if is_loopback(host):
        return None
    return (f"warning: the MLflow UI listens on {host}:{port}: anyone who can reach that port can read and delete "
            "every run (MLflow has no authentication by default); use --host 127.0.0.1 (the default) unless the "
            "network is yours alone")


def run(args: argparse.Namespace) -> int:
    uri = resolve_uri(args.uri)
    if is_http(uri):
        print(f"runs are on the tracking server {masked_text(uri)}: open it in a browser (it serves the MLflow UI)")
        return 0
    check_reachable(uri)
    check_port_free(args.host, args.port, "sweeplab ui")
    if warning := exposure_warning(args.host, args.port):
        print(warning, file=sys.stderr)
    page = training_runs_page(sqlite_path(uri))  # type: ignore[arg-type]  # not a server: a local sqlite store
    print(f"MLflow UI for {masked_text(uri)} at http://{args.host}:{args.port}/{page} (Ctrl-C stops it)", flush=True)
    command = ui_command(uri, args.host, args.port)
    quiet_mlflow_server()
    os.execv(command[0], command)  # become the UI: signals (Ctrl-C, a supervisor's TERM) reach it directly
