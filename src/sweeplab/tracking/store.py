"""Where runs go: the tracking URI, the experiment's name, a reachability check before any compute, and which
MLflow run a run dir started.

Light on purpose (the training process uses it): talking to the store is sweeplab.tracking.client's job.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from sweeplab.core.errors import UserError
from sweeplab.core.masking import masked_text
from sweeplab.core.vocabulary import RUN_DIR_TAG

if TYPE_CHECKING:  # the training process imports this module without mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Run

DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"


def resolve_uri(configured: str | None) -> str:
    """tracking.uri, else $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db; sqlite paths made absolute.

    MLflow resolves `sqlite:///mlflow.db` against the current directory of each process, so a
    relative path would scatter runs; the project root is the directory train.py is run from.
    """
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DB_NAME}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{Path(uri.removeprefix('sqlite:///')).resolve()}"
    elif "://" not in uri:
        raise UserError(f"tracking.uri={uri} is not a URI: use sqlite:///path/mlflow.db or http://host:5000")
    return uri


def sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def is_http(uri: str) -> bool:
    return urlparse(uri).scheme in ("http", "https")


PROBE = "/api/2.0/mlflow/experiments/search"  # what every MLflow tracking server answers, with JSON


def server_error(uri: str, timeout: float = 5.0) -> str | None:
    """What is wrong with an HTTP tracking server (None when it answers as MLflow does), in a few quick
    seconds, as the end of a sentence that begins with its URI: what happened, then how to fix it.

    MLflow's own client retries for minutes, and takes a web server's 404 page for an MLflow error;
    this answers before training starts. (requests is imported only here: a local store needs no check.)
    """
    import requests

    try:
        response = requests.get(f"{uri.rstrip('/')}{PROBE}", params={"max_results": 1}, timeout=timeout,
                                **credentials())
    except requests.RequestException as error:
        return (f"is unreachable ({type(error).__name__}): start it, fix tracking.uri or MLFLOW_TRACKING_URI, "
                "or run with tracking.enabled=false")
    if response.status_code in (401, 403):
        return (f"refused access (HTTP {response.status_code}): set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN), or run with tracking.enabled=false")
    if response.status_code >= 500:
        return (f"answers with errors (HTTP {response.status_code} to {PROBE}): check the server's log, "
                "or run with tracking.enabled=false")
    if not (response.ok and response.headers.get("content-type", "").startswith("application/json")):
        return (f"is not an MLflow tracking server (HTTP {response.status_code} to {PROBE}): point tracking.uri "
                "or MLFLOW_TRACKING_URI at one (`mlflow server`, e.g. http://host:5000), or run with "
                "tracking.enabled=false")
    return None


def credentials() -> dict:
    """The credentials MLflow's client sends, from the variables it reads (basic auth, or a bearer token)."""
    username, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if username and password:
        return {"auth": (username, password)}
    if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return {"headers": {"Authorization": f"Bearer {token}"}}
    return {}


# What MLflow 3 tracks in besides a server (http, https) and sqlite: SQLAlchemy's other databases, Databricks.
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql", "databricks", "databricks-uc", "uc")
SQLITE_MAGIC = b"SQLite format 3\x00"


def check_reachable(uri: str) -> None:
    """Refuse, in one line and within seconds, a tracking store runs cannot be recorded in."""
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        if problem := server_error(uri):
            raise UserError(f"tracking server {masked_text(uri)} {problem}")
    elif scheme == "sqlite":
        if problem := sqlite_error(sqlite_path(uri)):  # type: ignore[arg-type]
            raise UserError(f"tracking.uri={uri}: {problem}")
    elif scheme == "file":
        raise UserError(f"tracking.uri={uri} is a file store, which MLflow 3 no longer writes: use "
                        "sqlite:///mlflow.db (the default), a server (http://host:5000), or run with "
                        "tracking.enabled=false")
    elif scheme.partition("+")[0] not in DATABASE_SCHEMES:
        raise UserError(f"tracking.uri={masked_text(uri)} has a scheme MLflow does not track in ({scheme}): use "
                        "sqlite:///mlflow.db, http(s)://host:port or postgresql://...")


def sqlite_error(path: Path) -> str | None:
    """Why an sqlite store at `path` cannot be written (the end of a sentence), or None."""
    if path.is_dir():
        return f"{path} is a folder, not an sqlite file: name a file in it, e.g. sqlite:///{path}/{DB_NAME}"
    if path.is_file():
        try:
            with path.open("rb") as file:
                start = file.read(len(SQLITE_MAGIC))
        except OSError as error:
            return f"{path} cannot be read ({error.strerror}): fix its permissions, or use another file"
        if start and start != SQLITE_MAGIC:
            return (f"{path} is not an sqlite database (damaged, or another kind of file): move it away to start "
                    "a new one, or name the right file")
        if not os.access(path, os.W_OK):
            return f"{path} is read-only: runs cannot be recorded in it; make it writable, or use another file"
    folder = next(parent for parent in path.parents if parent.exists())
    if not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
        return f"{folder} cannot be written (sqlite writes its journal beside the file): use a writable folder"
    return None


def experiment_name(configured: str | None, dataset: str) -> str:
    return configured or f"sweeplab-{dataset}"


def run_started_in(store: MlflowClient, run_dir: str | Path, experiment_ids: list[str] | None = None) -> Run | None:
    """The MLflow run started in this run dir (its hydra.output_dir tag), in these experiments or in any."""
    ids = experiment_ids or [experiment.experiment_id for experiment in store.search_experiments()]
    runs = store.search_runs(ids, filter_string=f"tags.`{RUN_DIR_TAG}` = '{run_dir}'", max_results=1)
    return runs[0] if runs else None
