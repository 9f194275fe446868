"""Talking to a tracking store from the recorder process: one client per store, the experiment, outages."""

from __future__ import annotations

import functools
import logging
import os
import re
from pathlib import Path

import psutil
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from sweeplab.tracking.store import ARTIFACTS_DIR, sqlite_path

# What a tracking server that went away raises in the client.
DELIVERY_ERRORS = (MlflowException, requests.RequestException, OSError)
# MLflow's HTTP retries, bounded: by default it retries a call 7 times over about 4 minutes (and waits up to
# 120 s for each answer), so a server lost mid-call held the run's end for minutes. Once a call fails the
# session leaves the server alone, probes it every 10 s and keeps what waits (sweeplab.tracking.session):
# MLflow only needs to ride out a blip. A user's own settings win.
BOUNDED_RETRIES = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # 0 s, then 2 s between tries (plus up to 1 s of jitter)
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",  # seconds without a byte from the server: a big upload still streams
}


LOCKED = "database is locked"
LOCK_TRIES = 6  # each waits out sqlite's 20 s for the lock (MLflow's busy_timeout): 2 minutes in all


@functools.cache
def client(uri: str) -> MlflowClient:
    """One client per store for the life of the recorder: a sweep opens its store once."""
    bound_retries()
    db = sqlite_path(uri)
    if not db:
        return MlflowClient(uri)
    if not db.exists():
        create_sqlite_store(db)
    logging.getLogger("mlflow.store.db.utils").addFilter(lambda record: LOCKED not in record.getMessage())
    return WaitsOutLocks(MlflowClient(uri))


class WaitsOutLocks:
    """An MlflowClient on a sqlite store whose calls are tried again while another process holds the store locked.

    sqlite lets a writer wait 20 s for a lock; one that still finds the store locked (a sweep's many jobs, a
    long read elsewhere) fails with `database is locked` and its transaction is rolled back whole, so trying
    it again is safe: no job loses a run or a metric to another's write.
    """

    def __init__(self, client: MlflowClient) -> None:
        self.client = client

    def __getattr__(self, name: str):
        attribute = getattr(self.client, name)
        return functools.partial(retried_while_locked, attribute) if callable(attribute) else attribute


def retried_while_locked(call, *args, **kwargs):
    for attempt in range(LOCK_TRIES):
        try:
            return call(*args, **kwargs)
        except MlflowException as error:
            if LOCKED not in str(error) or attempt == LOCK_TRIES - 1:
                raise


def bound_retries() -> None:
    """BOUNDED_RETRIES, and no urllib3 warning per retry: the session says once that the server is away."""
    for name, value in BOUNDED_RETRIES.items():
        os.environ.setdefault(name, value)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def create_sqlite_store(db: Path) -> None:
    """Build a new sqlite store under another name and link it into place whole.

    MLflow creates a store by running its migrations, a second or two: a run killed meanwhile would
    leave a half-migrated file that no later run can open, and two processes creating one at once
    fail. Linked into place complete, a store is there whole or not at all; the second of two
    processes to finish uses the first one's.
    """
    db.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # no "Creating initial ... tables" per store
    remove_abandoned_creations(db)
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


def remove_abandoned_creations(db: Path) -> None:
    """What a process killed while creating this store left (its half-made file, sqlite's journal of it)."""
    for leftover in db.parent.glob(f".{db.name}.*.creating*"):
        pid = leftover.name.removeprefix(f".{db.name}.").split(".")[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            leftover.unlink(missing_ok=True)


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
