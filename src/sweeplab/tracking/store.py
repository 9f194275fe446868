"""Where runs go: the tracking URI, the experiment's name, and a reachability check before any compute.

Light on purpose (the training process uses it): talking to the store is sweeplab.tracking.client's job.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from sweeplab.errors import UserError

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


def server_error(uri: str, timeout: float = 5.0) -> str | None:
    """Why an HTTP tracking server cannot be reached (None when it answers), in a few quick seconds.

    MLflow's own client retries for minutes; this answers before training starts. (requests is
    imported only here: a local store needs no check.)
    """
    import requests

    try:
        requests.get(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search", params={"max_results": 1},
                     timeout=timeout)
    except requests.RequestException as error:
        return type(error).__name__
    return None


def check_reachable(uri: str) -> None:
    if is_http(uri) and (reason := server_error(uri)):
        raise UserError(
            f"tracking server {uri} is unreachable ({reason}): start it, fix tracking.uri or MLFLOW_TRACKING_URI, "
            "or run with tracking.enabled=false"
        )


def experiment_name(configured: str | None, dataset: str) -> str:
    return configured or f"sweeplab-{dataset}"
