"""`sweeplab ui`: the MLflow UI on this project's tracking store, bound to 127.0.0.1."""

from __future__ import annotations

import argparse
import os
import socket
import sys

from sweeplab.errors import UserError
from sweeplab.tracking.store import is_http, resolve_uri


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ui", help=__doc__.split(": ", 1)[1], description=__doc__)
    parser.add_argument("--uri", help="tracking store (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)")
    parser.add_argument("--port", type=int, default=5000)
    parser.set_defaults(run=run)


def ui_command(uri: str, port: int) -> list[str]:
    host = ["--host", "127.0.0.1", "--port", str(port)]
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, *host]


def run(args: argparse.Namespace) -> int:
    uri = resolve_uri(args.uri)
    if is_http(uri):
        print(f"runs are on the tracking server {uri}: open it in a browser (it serves the MLflow UI)")
        return 0
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", args.port)) == 0:
            raise UserError(f"port {args.port} on 127.0.0.1 is in use: pass another, e.g. `sweeplab ui --port 5001`")
    print(f"MLflow UI for {uri} at http://127.0.0.1:{args.port} (Ctrl-C stops it)", flush=True)
    command = ui_command(uri, args.port)
    os.execv(command[0], command)  # become the UI: signals (Ctrl-C, a supervisor's TERM) reach it directly
