"""What `sweeplab ui` and `sweeplab server` share about serving: loopback by default, a free port, no GenAI jobs."""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket

from sweeplab.core.errors import UserError

LOOPBACK = "127.0.0.1"


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def port_number(text: str) -> int:
    """--port: a TCP port, 1 to 65535 (argparse says what is wrong in its one error line)."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port: give a number from 1 to 65535, e.g. 5000")
    return port


def check_port_free(host: str, port: int, command: str) -> None:
    """A --host this machine cannot listen on, or a port something already answers on, is refused in one line that
    names the fix."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as listener:
            listener.bind((host, 0))
    except OSError as error:  # socket.gaierror included: a name that does not resolve
        raise UserError(f"--host {host} is not an address this machine can listen on ({error.strerror or error}): "
                        f"use {LOOPBACK} (this machine only) or 0.0.0.0 (every network)") from None
    with socket.socket() as probe:
        probe.settimeout(2)  # a --host that does not answer is no port in use
        if probe.connect_ex((host, port)) == 0:
            raise UserError(f"port {port} on {host} is in use: pass another, e.g. `{command} --port {port + 1}`")


def quiet_mlflow_server() -> None:
    """MLflow 3's server starts GenAI job runners (a dozen huey processes) that training runs never use: off, unless
    the user's environment says otherwise. A UI comes up in seconds, not a minute, on two cores. And each of its
    workers would warn that MLflow imports a deprecated starlette module: once a worker, four times, about MLflow's
    code, not the user's (a filter by message, so no module is imported to name the warning's class)."""
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    os.environ.setdefault("PYTHONWARNINGS", "ignore:starlette.middleware.wsgi is deprecated")
