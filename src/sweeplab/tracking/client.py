"""Talking to a tracking store from the recorder process: one client per store, the experiment, outages."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from sweeplab.tracking.store import ARTIFACTS_DIR, sqlite_path

# What a tracking server that went away raises in the client.
DELIVERY_ERRORS = (MlflowException, requests.RequestException, OSError)


@functools.cache
def client(uri: str) -> MlflowClient:
    """One client per store for the life of the recorder: a sweep opens its store once."""
    db = sqlite_path(uri)
    if db and not db.exists():
        create_sqlite_store(db)
    return MlflowClient(uri)


def create_sqlite_store(db: Path) -> None:
    """Build a new sqlite store under another name and link it into place whole.

    MLflow creates a store by running its migrations, a second or two: a run killed meanwhile would
    leave a half-migrated file that no later run can open, and two processes creating one at once
    fail. Linked into place complete, a store is there whole or not at all; the second of two
    processes to finish uses the first one's.
    """
    db.parent.mkdir(parents=True, exist_ok=True)
    temporary = db.with_name(f".{db.name}.{os.getpid()}.creating")
    SqlAlchemyStore(f"sqlite:///{temporary}", DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH).engine.dispose()
    try:
        os.link(temporary, db)  # fails if the store exists by now: then that one is used
    except FileExistsError:
        pass
    except OSError:  # a filesystem without hard links
        if not db.exists():
            os.replace(temporary, db)
    finally:
        temporary.unlink(missing_ok=True)


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """The experiment's id, created if absent (by whichever process gets there first); on sqlite its
    artifacts go beside the database."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    db = sqlite_path(client.tracking_uri)
    location = str(db.parent / ARTIFACTS_DIR / re.sub(r"[^\w.-]+", "_", name)) if db else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id
