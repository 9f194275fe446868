"""The MLflow runs of the recorder process, one per run dir: started, logged, and always ended with a status.

The training process calls these functions through the recorder (sweeplab.tracking.handle). Everything
goes through `MlflowClient` with an explicit run id (no fluent active-run state), so the runs of a
sequential sweep cannot leak into each other. If the tracking server goes away, training goes on:
what could not be delivered is written to `mlflow_pending.json` in the run dir, with the command that
uploads it (sweeplab.tracking.upload). Secrets are masked on their way out (sweeplab.core.masking).
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, Run
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from sweeplab.core.atomic import write_text_atomically
from sweeplab.core.masking import (
    masked,
    masked_params,
    masked_tag,
    masked_tags,
    masked_text,
    masked_yaml_documents,
)
from sweeplab.core.overrides import override_key
from sweeplab.core.vocabulary import (
    ENVIRONMENT_DIR,
    FAILURE_TAG,
    FIGURES_DIR,
    HYDRA_DIR,
    MASKED_HYDRA_DIR,
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_PER_BATCH,
    OVERRIDES_TAG,
    PACKAGES_FILE,
    PARENT_TAG,
    PENDING_FILE,
    PROJECT_DIFF_FILE,
    RUNNING,
    SWEPT_TAG,
    TEST_DIR,
)
from sweeplab.tracking import figures
from sweeplab.tracking.client import DELIVERY_ERRORS, client, ensure_experiment
from sweeplab.tracking.handle import DatasetRecord, FigureData, MetricRow, RunSpec, metric_rows
from sweeplab.tracking.metadata import code_tags, flatten, installed_packages, uncommitted_diff
from sweeplab.tracking.pending import keep_pending, read_pending
from sweeplab.tracking.per_image import SplitPredictions, write_test_split
from sweeplab.tracking.store import is_http, run_started_in, server_error
from sweeplab.tracking.system_metrics import finished, started
from sweeplab.tracking.upload import deliver

DATASET_SOURCE_TYPE = "sweeplab"  # the source is a loader's config (dataset.source), not a file MLflow can read
RETRY_SECONDS = 10.0  # a server that failed a probe or a delivery is left alone this long
sweep_parents: dict[str, str] = {}  # sweep dir -> its parent run id, for the sweeps this recorder started


@dataclass
class Session:
    client: MlflowClient
    run_id: str
    run_dir: Path
    online: bool = True
    offline_at: float = 0.0  # when a probe or delivery last failed (time.monotonic)
    # What could not be delivered because the server was away: metric rows, (local path, artifact folder).
    pending_metrics: list[MetricRow] = field(default_factory=list)
    pending_artifacts: list[tuple[str, str | None]] = field(default_factory=list)
    pending_inputs: list[DatasetInput] = field(default_factory=list)  # re-sent when the server is back
    # A resumed run: each metric's last step an earlier attempt delivered. The resume trains those steps
    # again, exactly, and logs them again: they are dropped, so no metric appears twice at one step.
    delivered: dict[str, int] = field(default_factory=dict)
    system_metrics: Any = None  # MLflow's SystemMetricsMonitor, when tracking.system_metrics is on

    def reachable(self, retry_now: bool = False) -> bool:
        """A remote server is probed (seconds) before a delivery, rather than retried for minutes by MLflow. One
        that failed (gone, or only slow under load) is tried again after RETRY_SECONDS, or now at the run's end;
        back, it gets what waited for it first."""
        if not self.online and not retry_now and time.monotonic() - self.offline_at < RETRY_SECONDS:
            return False
        uri = self.client.tracking_uri
        if is_http(uri) and server_error(uri):
            return self.went_offline()
        if not self.online:
            self.online = True
            self.deliver_pending()
        return self.online

    def went_offline(self) -> bool:
        self.online, self.offline_at = False, time.monotonic()
        return False

    def deliver_pending(self) -> None:
        rows, artifacts, inputs = self.pending_metrics, self.pending_artifacts, self.pending_inputs
        self.pending_metrics, self.pending_artifacts, self.pending_inputs = [], [], []
        self.log_inputs(inputs)
        self.log_metrics(rows)
        for path, folder in artifacts:
            self.log_artifact(Path(path), folder)

    def log_metrics(self, rows: list[MetricRow]) -> None:
        rows = [row for row in rows if row[3] > self.delivered.get(row[0], -1)]
        if rows and self.reachable():
            start = 0
            try:
                for start in range(0, len(rows), MAX_METRICS_PER_BATCH):
                    batch = [Metric(*row[:3], row[3]) for row in rows[start : start + MAX_METRICS_PER_BATCH]]
                    self.client.log_batch(self.run_id, metrics=batch)
                return
            except DELIVERY_ERRORS:
                self.went_offline()
                rows = rows[start:]  # the batches before this one were delivered
        self.pending_metrics += rows

    def log_inputs(self, inputs: list[DatasetInput]) -> None:
        if inputs and self.reachable():
            try:
                self.client.log_inputs(self.run_id, datasets=inputs)
                return
            except DELIVERY_ERRORS:
                self.went_offline()
        self.pending_inputs += inputs

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        """Upload a file or a whole directory; kept for later upload when the server is away."""
        if self.reachable():
            try:
                upload = self.client.log_artifacts if path.is_dir() else self.client.log_artifact
                upload(self.run_id, str(path), folder)
                return
            except DELIVERY_ERRORS:
                self.went_offline()
        self.pending_artifacts.append((str(path), folder))

    def end(self, status: str, reason: str | None, discard: bool = False) -> None:
        if self.system_metrics:
            finished(self.system_metrics)
        reason = reason and masked_text(reason)
        back = self.reachable(retry_now=True)  # a last try: what waited is delivered if the server answers now
        if reason and back:
            try:
                self.client.set_tag(self.run_id, FAILURE_TAG, reason)
            except DELIVERY_ERRORS:
                back = self.went_offline()
        if back and not self.pending_metrics and not self.pending_artifacts:
            try:
                self.client.set_terminated(self.run_id, status)
                if discard:
                    self.client.delete_run(self.run_id)
                return
            except DELIVERY_ERRORS:
                pass
        self.write_pending(status, reason)

    def write_pending(self, status: str, reason: str | None) -> None:
        path = keep_pending(self.run_dir, uri=self.client.tracking_uri, run_id=self.run_id, status=status,
                            metrics=self.pending_metrics, artifacts=self.pending_artifacts,
                            tags={FAILURE_TAG: reason} if reason else {})
        print(
            f"warning: tracking server {masked_text(self.client.tracking_uri)} went away or failed mid-run; "
            f"{len(self.pending_metrics)} metrics and {len(self.pending_artifacts)} artifacts kept in {path}: "
            f"upload them with `python -m sweeplab.tracking.upload {path}`",
            file=sys.stderr,
        )


sessions: dict[str, Session] = {}  # this recorder's open runs, by run dir


def start_run(run_dir: str, spec: RunSpec) -> str:
    """Create the run (or reopen the one an earlier attempt started in this run dir); return its id."""
    store = client(spec.uri)
    parent_id = spec.parent_id or sweep_parents.get(spec.sweep_dir or "")
    tags = masked_tags(spec.tags)
    if parent_id:
        parent = store.get_run(parent_id)
        experiment_id = parent.info.experiment_id
        name = spec.run_name or job_name(shlex.split(tags.get(OVERRIDES_TAG, "")),
                                         shlex.split(parent.data.tags.get(SWEPT_TAG, "")))
    else:
        experiment_id = ensure_experiment(store, spec.experiment)
        name = spec.run_name
    previous = run_started_in(store, run_dir, [experiment_id]) if spec.resume else None
    if previous:
        run_id = previous.info.run_id
        store.update_run(run_id, status=RUNNING)
        if FAILURE_TAG in previous.data.tags:
            store.delete_tag(run_id, FAILURE_TAG)
        deliver_kept(store, run_id, Path(run_dir))
        session = sessions[run_dir] = Session(store, run_id, Path(run_dir), delivered=last_steps(store, previous))
        watch_system(session, spec, resumed=True)
        return run_id
    tags |= {**code_tags(spec.project_dir, spec.code_dir), **({PARENT_TAG: parent_id} if parent_id else {})}
    run_id = store.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    params = [Param(key, value) for key, value in masked_params(flatten(spec.config)).items()]
    for start in range(0, len(params), MAX_PARAMS_PER_BATCH):
        store.log_batch(run_id, params=params[start : start + MAX_PARAMS_PER_BATCH])
    deliver_kept(store, run_id, Path(run_dir))
    session = sessions[run_dir] = Session(store, run_id, Path(run_dir))
    if (Path(run_dir) / HYDRA_DIR).is_dir():
        session.log_artifact(masked_hydra_dir(Path(run_dir)), HYDRA_DIR)
    session.log_artifact(environment_record(Path(run_dir), spec.project_dir), ENVIRONMENT_DIR)
    watch_system(session, spec, resumed=False)
    return run_id


def environment_record(run_dir: Path, project_dir: str) -> Path:
    """The run's `environment/`: the installed packages, and the project's uncommitted changes when small."""
    folder = run_dir / ENVIRONMENT_DIR
    write_text_atomically(folder / PACKAGES_FILE, installed_packages())
    if diff := uncommitted_diff(project_dir):
        write_text_atomically(folder / PROJECT_DIFF_FILE, masked_text(diff))
    return folder


def masked_hydra_dir(run_dir: Path) -> Path:
    """The run's `.hydra/` to upload: itself, or a masked copy beside it where a config holds a secret."""
    documents = masked_yaml_documents(run_dir / HYDRA_DIR)
    if documents is None:
        return run_dir / HYDRA_DIR
    for name, text in documents.items():
        write_text_atomically(run_dir / MASKED_HYDRA_DIR / name, text)
    return run_dir / MASKED_HYDRA_DIR


def deliver_kept(store: MlflowClient, run_id: str, run_dir: Path) -> None:
    """A resumed run's records an earlier attempt could not deliver (sweeplab.tracking.pending), sent first."""
    path = run_dir / PENDING_FILE
    if path.is_file():
        deliver(store, run_id, read_pending(path))
        path.unlink()


def watch_system(session: Session, spec: RunSpec, resumed: bool) -> None:
    if spec.system_metrics:
        session.system_metrics = started(session.run_id, spec.uri, spec.tags, resumed)


def last_steps(store: MlflowClient, run: Run) -> dict[str, int]:
    return {key: max(m.step for m in store.get_metric_history(run.info.run_id, key)) for key in run.data.metrics}


def job_name(overrides: list[str], swept: list[str]) -> str | None:
    """A sweep job is named by its swept values (`optimizer.lr=0.01 model=cnn`), the rest being common."""
    named = [item for item in overrides if override_key(item) in swept] or overrides
    return " ".join(named)[:250] or None


def log_metrics(run_dir: str, rows: list[MetricRow]) -> None:
    sessions[run_dir].log_metrics(rows)


def log_missing_epochs(run_dir: str, epochs: dict[int, dict[str, float]]) -> None:
    """A resumed run: log the restored epochs that the interrupted attempt never delivered (Session.delivered)."""
    sessions[run_dir].log_metrics([row for epoch, metrics in epochs.items() for row in metric_rows(metrics, epoch)])


def log_artifact(run_dir: str, path: str, folder: str | None) -> None:
    sessions[run_dir].log_artifact(Path(path), folder)


def set_tag(run_dir: str, key: str, value: str) -> None:
    session = sessions[run_dir]
    if session.reachable():
        try:
            session.client.set_tag(session.run_id, key, masked_tag(key, value))
        except DELIVERY_ERRORS:
            session.went_offline()


def log_inputs(run_dir: str, records: list[DatasetRecord]) -> None:
    """The splits as MLflow dataset inputs (the UI's Dataset column); MLflow keeps one per digest and context."""
    sessions[run_dir].log_inputs([
        DatasetInput(Dataset(record.name, record.digest, DATASET_SOURCE_TYPE, json.dumps(masked(record.source)),
                             profile=json.dumps({"num_rows": record.size})),
                     tags=[InputTag(MLFLOW_DATASET_CONTEXT, record.split)])
        for record in records
    ])


def log_figures(run_dir: str, data: FigureData) -> None:
    """Draw the run's figures into its run dir and upload them."""
    folder = Path(run_dir) / FIGURES_DIR
    figures.draw_all(data, folder)
    sessions[run_dir].log_artifact(folder, FIGURES_DIR)


def log_test_predictions(run_dir: str, test: SplitPredictions) -> None:
    """The test split image by image, written into the run dir's `test/` and uploaded."""
    sessions[run_dir].log_artifact(write_test_split(run_dir, test), TEST_DIR)


def end_run(run_dir: str, status: str, reason: str | None, discard: bool = False) -> None:
    session = sessions.pop(run_dir, None)
    if session:  # else the run never started: that error was reported already
        session.end(status, reason, discard)
