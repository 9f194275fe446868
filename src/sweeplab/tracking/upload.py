"""`python -m sweeplab.tracking.upload RUN_DIR/mlflow_pending.json`: deliver what an outage kept back.

Replays the metrics, artifacts, tags and final status that a run could not send while its
tracking server was away, into the same MLflow run, then removes the file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric

from sweeplab.core.errors import UserError, exit_on_user_error, first_line
from sweeplab.core.vocabulary import MAX_METRICS_PER_BATCH

PENDING_KEYS = {"tracking_uri", "run_id", "metrics", "artifacts", "tags", "status"}


def upload(path: Path) -> str:
    pending = read_pending(path)
    client = MlflowClient(pending["tracking_uri"])
    run_id = pending["run_id"]
    metrics = [Metric(*row) for row in pending["metrics"]]
    for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH])
    for local, folder in pending["artifacts"]:
        (client.log_artifacts if Path(local).is_dir() else client.log_artifact)(run_id, local, folder)
    for key, value in pending["tags"].items():
        client.set_tag(run_id, key, value)
    client.set_terminated(run_id, pending["status"])
    path.unlink()
    return run_id


def read_pending(path: Path) -> dict:
    """The file's contents, checked before anything is sent: a damaged file is kept, never half uploaded."""
    if not path.is_file():
        raise UserError(f"no pending-upload file at {path}: pass the mlflow_pending.json a run wrote")
    try:
        pending = json.loads(path.read_text())
    except ValueError as error:  # not JSON, or not UTF-8
        raise UserError(f"{path} is damaged ({first_line(error)}): restore it from a copy; the run's own files beside "
                        "it are untouched") from None
    missing = PENDING_KEYS - pending.keys() if isinstance(pending, dict) else PENDING_KEYS
    if missing:
        raise UserError(f"{path} is not a pending upload sweeplab wrote (no {', '.join(sorted(missing))}): pass the "
                        "mlflow_pending.json a run wrote")
    return pending


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sweeplab.tracking.upload", description=__doc__.splitlines()[0])
    parser.add_argument("pending", type=Path, help="the mlflow_pending.json file in a run dir")
    run_id = upload(parser.parse_args(argv).pending)
    print(f"uploaded to MLflow run {run_id}")


if __name__ == "__main__":
    main()
