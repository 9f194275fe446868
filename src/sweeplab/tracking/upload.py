"""`python -m sweeplab.tracking.upload RUN_DIR/mlflow_pending.json`: deliver what a run could not record.

Replays the metrics, artifacts, tags and final status that a run could not send (its tracking server away, or
its recorder gone: sweeplab.tracking.pending) into the same MLflow run, then removes the file. A resumed run
delivers the file itself, first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric

from sweeplab.core.errors import UserError, exit_on_user_error
from sweeplab.core.vocabulary import MAX_METRICS_PER_BATCH
from sweeplab.tracking.pending import read_pending
from sweeplab.tracking.store import run_started_in


def upload(path: Path) -> str:
    """Everything the file holds, into its MLflow run (by its id, else found by its run dir), then the file goes."""
    pending = read_pending(path)
    client = MlflowClient(pending["tracking_uri"])
    run_id = pending["run_id"] or run_of(client, pending["run_dir"], pending["tracking_uri"])
    deliver(client, run_id, pending)
    if pending["status"]:
        client.set_terminated(run_id, pending["status"])
    path.unlink()
    return run_id


def deliver(client: MlflowClient, run_id: str, pending: dict) -> None:
    """The pending metrics, artifacts and tags into the run (the status is the caller's to set)."""
    metrics = [Metric(*row) for row in pending["metrics"]]
    for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH])
    for local, folder in pending["artifacts"]:
        if Path(local).exists():  # a file the run has since replaced (a resumed run's figures) is sent anew
            (client.log_artifacts if Path(local).is_dir() else client.log_artifact)(run_id, local, folder)
    for key, value in pending["tags"].items():
        client.set_tag(run_id, key, value)


def run_of(client: MlflowClient, run_dir: str, uri: str) -> str:
    """The MLflow run a run dir started (its id was never known here: the recorder died before saying it)."""
    run = run_started_in(client, run_dir)
    if run is None:
        raise UserError(f"no MLflow run in {uri} was started from {run_dir}: resume the run instead "
                        f"(python train.py ... hydra.run.dir={run_dir}), which records it anew")
    return run.info.run_id


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sweeplab.tracking.upload", description=__doc__.splitlines()[0])
    parser.add_argument("pending", type=Path, help="the mlflow_pending.json file in a run dir")
    run_id = upload(parser.parse_args(argv).pending)
    print(f"uploaded to MLflow run {run_id}")


if __name__ == "__main__":
    main()
