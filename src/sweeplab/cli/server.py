"""`sweeplab server BACKEND`: a team's MLflow tracking server, runs kept in BACKEND (PostgreSQL), artifacts served.

Every machine then trains with `tracking.uri=http://<host>:<port>`: runs, metrics, models and artifacts all go
through the server, so nodes share no file system and no sqlite file. The backend is checked (seconds) before
the server starts, so a wrong URI or a stopped database is one line, not a traceback from each worker.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from sweeplab.cli.listening import LOOPBACK, check_port_free, is_loopback, port_number, quiet_mlflow_server
from sweeplab.core.errors import UserError, first_line
from sweeplab.core.masking import masked_text
from sweeplab.tracking.store import ARTIFACTS_DIR, resolve_uri

CONNECT_SECONDS = 5
SECRET_KEY = "MLFLOW_FLASK_SERVER_SECRET_KEY"  # MLflow's auth app signs its CSRF tokens with it
AUTH_DB = "basic_auth.db"  # where MLflow's basic-auth app keeps its users by default: the current directory


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("server", help="start a team's MLflow tracking server on a database",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("backend", help="the database runs are kept in: postgresql://USER:PASSWORD@HOST:5432/DB "
                        "(or sqlite:///path/mlflow.db, for one machine)")
    parser.add_argument("--artifacts", default=ARTIFACTS_DIR,
                        help="where the server keeps the artifacts it serves: a folder or s3://... "
                        "(default: ./%(default)s)")
    parser.add_argument("--host", default=LOOPBACK,
                        help="address to listen on (default: %(default)s, this machine only; 0.0.0.0 for a team)")
    parser.add_argument("--port", type=port_number, default=5000)
    parser.add_argument("--workers", type=int, default=4, help="server processes (default: %(default)s)")
    parser.add_argument("--auth", action="store_true",
                        help="MLflow's basic auth: users and passwords, per-experiment permissions")
    parser.add_argument("--allowed-hosts",
                        help="Host headers the server answers (MLflow's default: localhost and private addresses); "
                        "e.g. mlflow.example.org,10.0.0.5:5000")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    backend = resolve_uri(args.backend)
    check_backend(backend)
    if args.auth:
        check_auth()
    check_port_free(args.host, args.port, "sweeplab server")
    if warning := exposure_warning(args.host, args.port, args.auth):
        print(warning, file=sys.stderr)
    artifacts = args.artifacts if "://" in args.artifacts else str(Path(args.artifacts).resolve())
    address = f"http://{socket.gethostname() if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
    print(f"MLflow tracking server at {address}: runs in {masked_text(backend)}, artifacts in {artifacts} "
          f"(Ctrl-C stops it)\ntrain against it: python train.py tracking.uri={address} "
          f"(or export MLFLOW_TRACKING_URI={address})", flush=True)
    command = server_command(backend, artifacts, args)
    quiet_mlflow_server()
    os.execv(command[0], command)  # become the server: a supervisor's TERM and Ctrl-C reach it directly


def server_command(backend: str, artifacts: str, args: argparse.Namespace) -> list[str]:
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
               "--artifacts-destination", artifacts, "--serve-artifacts",
               "--host", args.host, "--port", str(args.port), "--workers", str(args.workers)]
    if args.allowed_hosts:
        command += ["--allowed-hosts", args.allowed_hosts]
    if args.auth:
        command += ["--app-name", "basic-auth"]
    return command


def check_backend(uri: str) -> None:
    """The database answers and lets us in, checked in seconds (MLflow's workers would each fail at length)."""
    import sqlalchemy

    try:
        url = sqlalchemy.engine.make_url(uri)
        url.get_dialect().import_dbapi()
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError):
        raise UserError(f"{masked_text(uri)} is not a database URI: pass one such as "
                        "postgresql://HOST:5432/DB (with the user and password before HOST)") from None
    except ImportError as error:  # postgresql:// is psycopg (3) to SQLAlchemy 2.1, psycopg2 to 2.0
        raise UserError(f"a {url.get_backend_name()} backend needs the {error.name} driver: "
                        "pip install 'sweeplab[server]'") from None
    arguments = {"connect_timeout": CONNECT_SECONDS} if url.get_backend_name() == "postgresql" else {}
    engine = sqlalchemy.create_engine(url, connect_args=arguments)
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.SQLAlchemyError as error:
        raise UserError(f"cannot open the backend {masked_text(uri)} ({first_line(error.orig or error)}): start the "
                        "database, create it (`createdb mlflow`) or fix the URI") from None
    finally:
        engine.dispose()


def check_auth() -> None:
    """MLflow's basic-auth app: installed, and able to create its admin on a first start (it refuses otherwise)."""
    try:
        import flask_wtf  # noqa: F401 - MLflow's basic-auth app needs it for CSRF protection
    except ImportError:
        raise UserError("--auth needs MLflow's auth extra: pip install 'sweeplab[server]'") from None
    if not os.environ.get(SECRET_KEY):
        raise UserError(f"--auth protects its forms with a secret key: set {SECRET_KEY} to a long random string "
                        "(`python -c 'import secrets; print(secrets.token_hex(32))'`), the same on every restart")
    configured = {"MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_AUTH_CONFIG_PATH"} & set(os.environ)
    if not configured and not Path(AUTH_DB).exists():
        raise UserError("--auth creates its admin user on a first start and needs a password for it: set "
                        "MLFLOW_AUTH_ADMIN_PASSWORD (or MLFLOW_AUTH_CONFIG_PATH, an ini file with admin_password)")


def exposure_warning(host: str, port: int, auth: bool) -> str | None:
    """What listening beyond this machine risks, said once before the server starts."""
    if is_loopback(host):
        return None
    if not auth:
        return (f"warning: the tracking server listens on {host}:{port} with no authentication: anyone who can reach "
                "that port can read, change and delete every run, model and artifact; add --auth, or keep the "
                "network yours alone")
    return (f"warning: the tracking server listens on {host}:{port} over plain HTTP: passwords and artifacts cross "
            "the network unencrypted; put an HTTPS proxy in front of it (see README, Team tracking server)")
