"""A real tracking server (`sweeplab server`) on a loopback port, for tests that log over HTTP: on a sqlite file, or on
PostgreSQL as a team runs it (the session's shared server)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from postgres import Postgres

SWEEPLAB = str(Path(sys.executable).parent / "sweeplab")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class MlflowServer:
    folder: Path
    port: int
    backend: str | None = None  # a database URI; None: a sqlite file in `folder`
    admin_password: str | None = None  # set: `--auth`, MLflow's basic auth, its admin user created with this
    process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> MlflowServer:
        backend = self.backend or f"sqlite:///{self.folder / 'mlflow.db'}"
        command = [SWEEPLAB, "server", backend, "--port", str(self.port), "--artifacts", str(self.folder / "artifacts"),
                   "--workers", "1", *(["--auth"] if self.admin_password else [])]
        auth = {"MLFLOW_AUTH_CONFIG_PATH": str(self.auth_config()), "MLFLOW_FLASK_SERVER_SECRET_KEY": "a-test-key"}
        env = {**os.environ, **(auth if self.admin_password else {})}
        with (self.folder / "server.log").open("ab") as log:  # in `folder`: --auth keeps its users there
            self.process = subprocess.Popen(command, stdout=log, stderr=log, cwd=self.folder, env=env,
                                            start_new_session=True)
        try:
            self.wait_until_healthy(timeout)
        except BaseException:  # a server that never answered is not left running
            self.stop(signal.SIGKILL)
            raise
        return self

    def auth_config(self) -> Path:
        """MLflow's basic-auth settings as README advises a team: users in a file of their own, and each password
        checked once a minute rather than at every request (a PBKDF2 hash: a second or more a request here)."""
        path = self.folder / "basic_auth.ini"
        path.write_text(f"""[mlflow]
default_permission = READ
database_uri = sqlite:///{self.folder / 'basic_auth.db'}
admin_username = admin
admin_password = {self.admin_password}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = 60
""")
        return path

    def wait_until_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sweeplab server exited: {(self.folder / 'server.log').read_text()[-2000:]}")
            try:
                if requests.get(f"{self.uri}/health", timeout=2).ok:
                    return
            except requests.RequestException:
                time.sleep(0.5)
        raise RuntimeError(f"mlflow server did not answer on {self.uri} within {timeout} s")

    def stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        """Stop the server and its uvicorn workers (its own process group, started above); SIGKILL: a crash."""
        if self.process:
            stop_group(self.process, how)


def stop_group(process: subprocess.Popen, how: signal.Signals = signal.SIGTERM, timeout: float = 20) -> None:
    """Signal the process group a `start_new_session=True` child leads, then SIGKILL what is left after `timeout`
    (the group too: workers outlive a leader that exited)."""
    try:
        os.killpg(process.pid, how)
        process.wait(timeout=timeout)
    except ProcessLookupError:  # the group is gone already
        pass
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A team's tracking server: `sweeplab server` on PostgreSQL, serving its artifacts."""
    database = Postgres(free_port())
    try:
        database.start()
        server = MlflowServer(tmp_path_factory.mktemp("mlflow_server"), free_port(), database.uri).start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        database.stop()
