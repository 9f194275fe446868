"""Talking to a tracking store from the recorder process: one client per store, the experiment, outages."""

from __future__ import annotations

import functools
import re

import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from sweeplab.tracking.store import ARTIFACTS_DIR, sqlite_path

# What a tracking server that went away raises in the client.
DELIVERY_ERRORS = (MlflowException, requests.RequestException, OSError)


@functools.cache
def client(uri: str) -> MlflowClient:
    """One client per store for the life of the recorder: a sweep opens its store once."""
    return MlflowClient(uri)


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """The experiment's id, created if absent; on sqlite its artifacts go beside the database."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    db = sqlite_path(client.tracking_uri)
    location = str(db.parent / ARTIFACTS_DIR / re.sub(r"[^\w.-]+", "_", name)) if db else None
    return client.create_experiment(name, artifact_location=location)
