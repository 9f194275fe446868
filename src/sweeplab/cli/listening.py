"""What `sweeplab ui` and `sweeplab server` share about serving: loopback by default, a free port, no GenAI jobs."""

from __future__ import annotations

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


def check_port_free(host: str, port: int, command: str) -> None:
    """A port something already answers on is refused in one line that names the command with another port."""
    with socket.socket() as probe:
        probe.settimeout(2)  # a --host that does not answer is no port in use
        if probe.connect_ex((host, port)) == 0:
            raise UserError(f"port {port} on {host} is in use: pass another, e.g. `{command} --port {port + 1}`")


def without_genai_jobs() -> None:
    """MLflow 3's server starts GenAI job runners (a dozen huey processes) that training runs never use: off, unless
    the user's environment says otherwise. A UI comes up in seconds, not a minute, on two cores."""
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
