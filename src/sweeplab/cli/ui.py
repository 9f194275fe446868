"""`sweeplab ui`: the MLflow UI on this project's tracking store, bound to 127.0.0.1 unless --host says otherwise."""

from __future__ import annotations

import argparse
import os
import sys

from sweeplab.cli.listening import LOOPBACK, check_port_free, is_loopback, port_number, without_genai_jobs
from sweeplab.core.masking import masked_text
from sweeplab.tracking.store import check_reachable, is_http, resolve_uri


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ui", help=__doc__.split(": ", 1)[1], description=__doc__)
    parser.add_argument("--uri", help="tracking store (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)")
    parser.add_argument("--port", type=port_number, default=5000)
    parser.add_argument("--host", default=LOOPBACK,
                        help="address to listen on (default: %(default)s, this machine only); 0.0.0.0 exposes the "
                        "runs to anyone who can reach the port: MLflow has no authentication by default")
    parser.set_defaults(run=run)


# MLflow 3's UI opens in its GenAI mode (traces, prompts) unless the page asks for its model-training mode.
TRAINING_RUNS = "#/experiments?workflowType=machine_learning"


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
    print(f"MLflow UI for {masked_text(uri)} at http://{args.host}:{args.port}/{TRAINING_RUNS} (Ctrl-C stops it)",
          flush=True)
    command = ui_command(uri, args.host, args.port)
    without_genai_jobs()
    os.execv(command[0], command)  # become the UI: signals (Ctrl-C, a supervisor's TERM) reach it directly
