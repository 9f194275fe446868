"""A real PostgreSQL cluster on a loopback port, for the team tracking server (`sweeplab server`).

initdb refuses to run as root, so under root the cluster belongs to the `postgres` user (else `nobody`), in
a folder of its own under /tmp (pytest's temporary folders are root's alone).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

USER = "sweeplab"  # the database role the server logs in as (trust: loopback only, in a test)
DATABASE = "mlflow"


def binary(name: str) -> str:
    """A PostgreSQL program: on PATH, else Debian's /usr/lib/postgresql/<version>/bin (scripts/install-test-deps.sh)."""
    found = shutil.which(name) or max(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), default=None)
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed: run scripts/install-test-deps.sh")
    return found


def owner() -> str | None:
    """Who runs the cluster: ourselves, unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name).pw_name
        except KeyError:
            continue
    raise RuntimeError("no unprivileged user to run PostgreSQL as")


@dataclass
class Postgres:
    port: int
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sweeplab-postgres-")))

    @property
    def uri(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def run(self, program: str, *arguments: str) -> None:
        user = owner()
        command = [binary(program), *arguments]
        command = ["runuser", "-u", user, "--", *command] if user else command
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed: {result.stdout[-1500:]}{result.stderr[-1500:]}")

    def start(self) -> Postgres:
        if user := owner():
            shutil.chown(self.folder, user)
        self.run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync")
        settings = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "postgres.log"), "-o", settings, "-w", "start")
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, DATABASE)
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
