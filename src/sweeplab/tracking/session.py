"""The MLflow runs of the recorder process, one per run dir: started, logged, and always ended with a status.

The training process calls these functions through the recorder (sweeplab.tracking.handle). Everything
goes through `MlflowClient` with an explicit run id (no fluent active-run state), so the runs of a
sequential sweep cannot leak into each other. If the tracking server goes away, training goes on:
what could not be delivered is written to `mlflow_pending.json` in the run dir, with the command that
uploads it (sweeplab.tracking.upload).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import mlflow
import mlflow.onnx
import onnx
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run
from mlflow.models import infer_signature
from mlflow.utils import requirements_utils

from sweeplab.errors import typed_line
from sweeplab.tracking import figures
from sweeplab.tracking.client import DELIVERY_ERRORS, client, ensure_experiment
from sweeplab.tracking.handle import ExportRecord, FigureData, RunSpec
from sweeplab.tracking.metadata import flatten, git_state
from sweeplab.tracking.store import is_http, server_error
from sweeplab.vocabulary import (
    FAILURE_TAG,
    FIGURES_DIR,
    HYDRA_DIR,
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_PER_BATCH,
    MODEL_ARTIFACT,
    MODEL_LOGGING_ERROR_TAG,
    ONNX_ARTIFACTS,
    OVERRIDES_TAG,
    PARENT_TAG,
    PENDING_FILE,
    RUN_DIR_TAG,
    RUNNING,
    SWEPT_TAG,
    VAL_ACC,
)

sweep_parents: dict[str, str] = {}  # sweep dir -> its parent run id, for the sweeps this recorder started


@dataclass
class Session:
    client: MlflowClient
    run_id: str
    run_dir: Path
    online: bool = True
    # What could not be delivered because the server was away: metric rows, (local path, artifact folder).
    pending_metrics: list[tuple[str, float, int, int]] = field(default_factory=list)
    pending_artifacts: list[tuple[str, str | None]] = field(default_factory=list)

    def reachable(self) -> bool:
        """A remote server is probed (seconds) before a delivery, rather than retried for minutes by MLflow."""
        uri = self.client.tracking_uri
        self.online = self.online and not (is_http(uri) and server_error(uri))
        return self.online

    def log_metrics(self, rows: list[tuple[str, float, int, int]]) -> None:
        if self.reachable():
            try:
                for start in range(0, len(rows), MAX_METRICS_PER_BATCH):
                    batch = [Metric(*row[:3], row[3]) for row in rows[start : start + MAX_METRICS_PER_BATCH]]
                    self.client.log_batch(self.run_id, metrics=batch)
                return
            except DELIVERY_ERRORS:
                self.online = False
        self.pending_metrics += rows

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        """Upload a file or a whole directory; kept for later upload when the server is away."""
        if self.reachable():
            try:
                upload = self.client.log_artifacts if path.is_dir() else self.client.log_artifact
                upload(self.run_id, str(path), folder)
                return
            except DELIVERY_ERRORS:
                self.online = False
        self.pending_artifacts.append((str(path), folder))

    def end(self, status: str, reason: str | None) -> None:
        if reason and self.reachable():
            try:
                self.client.set_tag(self.run_id, FAILURE_TAG, reason)
            except DELIVERY_ERRORS:
                self.online = False
        if self.reachable() and not self.pending_metrics and not self.pending_artifacts:
            try:
                self.client.set_terminated(self.run_id, status)
                return
            except DELIVERY_ERRORS:
                pass
        self.write_pending(status, reason)

    def write_pending(self, status: str, reason: str | None) -> None:
        pending = {
            "tracking_uri": self.client.tracking_uri,
            "run_id": self.run_id,
            "status": status,
            "tags": {FAILURE_TAG: reason} if reason else {},
            "metrics": self.pending_metrics,
            "artifacts": self.pending_artifacts,
        }
        path = self.run_dir / PENDING_FILE
        path.write_text(json.dumps(pending, indent=1))
        print(
            f"warning: tracking server {self.client.tracking_uri} was unreachable; {len(self.pending_metrics)} "
            f"metrics and {len(self.pending_artifacts)} artifacts kept in {path}: upload them with "
            f"`python -m sweeplab.tracking.upload {path}`",
            file=sys.stderr,
        )


sessions: dict[str, Session] = {}  # this recorder's open runs, by run dir


def start_run(run_dir: str, spec: RunSpec) -> str:
    """Create the run (or reopen the one an earlier attempt started in this run dir); return its id."""
    store = client(spec.uri)
    parent_id = spec.parent_id or sweep_parents.get(spec.sweep_dir or "")
    if parent_id:
        parent = store.get_run(parent_id)
        experiment_id = parent.info.experiment_id
        name = spec.run_name or job_name(shlex.split(spec.tags.get(OVERRIDES_TAG, "")),
                                         shlex.split(parent.data.tags.get(SWEPT_TAG, "")))
    else:
        experiment_id = ensure_experiment(store, spec.experiment)
        name = spec.run_name
    previous = find_run(store, experiment_id, run_dir) if spec.resume else None
    if previous:
        run_id = previous.info.run_id
        store.update_run(run_id, status=RUNNING)
        if FAILURE_TAG in previous.data.tags:
            store.delete_tag(run_id, FAILURE_TAG)
        sessions[run_dir] = Session(store, run_id, Path(run_dir))
        return run_id
    tags = {**spec.tags, **git_state(Path(spec.code_dir)), **({PARENT_TAG: parent_id} if parent_id else {})}
    run_id = store.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    params = [Param(key, value) for key, value in flatten(spec.config).items()]
    for start in range(0, len(params), MAX_PARAMS_PER_BATCH):
        store.log_batch(run_id, params=params[start : start + MAX_PARAMS_PER_BATCH])
    session = sessions[run_dir] = Session(store, run_id, Path(run_dir))
    if (Path(run_dir) / HYDRA_DIR).is_dir():
        session.log_artifact(Path(run_dir) / HYDRA_DIR, HYDRA_DIR)
    return run_id


def find_run(store: MlflowClient, experiment_id: str, run_dir: str) -> Run | None:
    """The run an earlier attempt started in this run dir."""
    runs = store.search_runs([experiment_id], filter_string=f"tags.`{RUN_DIR_TAG}` = '{run_dir}'", max_results=1)
    return runs[0] if runs else None


def job_name(overrides: list[str], swept: list[str]) -> str | None:
    """A sweep job is named by its swept values (`optimizer.lr=0.01 model=cnn`), the rest being common."""
    named = [item for item in overrides if item.split("=", 1)[0].lstrip("+~") in swept] or overrides
    return " ".join(named)[:250] or None


def log_metrics(run_dir: str, rows: list[tuple[str, float, int, int]]) -> None:
    sessions[run_dir].log_metrics(rows)


def log_missing_epochs(run_dir: str, epochs: dict[int, dict[str, float]]) -> None:
    """A resumed run: log the restored epochs that the interrupted attempt never delivered."""
    session = sessions[run_dir]
    logged = {metric.step for metric in session.client.get_metric_history(session.run_id, VAL_ACC)}
    now = int(time.time() * 1000)
    session.log_metrics([(key, value, now, epoch) for epoch, metrics in epochs.items() if epoch not in logged
                         for key, value in metrics.items()])


def log_artifact(run_dir: str, path: str, folder: str | None) -> None:
    sessions[run_dir].log_artifact(Path(path), folder)


def log_figures(run_dir: str, data: FigureData) -> None:
    """Draw the run's figures into its run dir and upload them."""
    folder = Path(run_dir) / FIGURES_DIR
    figures.draw_all(data, folder)
    sessions[run_dir].log_artifact(folder, FIGURES_DIR)


def log_export(run_dir: str, record: ExportRecord) -> None:
    record_export(sessions[run_dir], record)


def log_export_to_run(uri: str, run_id: str, run_dir: str, record: ExportRecord) -> None:
    """An export after its run ended (`sweeplab export <run>`, a sweep's best job) lands in that run."""
    session = Session(client(uri), run_id, Path(run_dir))
    record_export(session, record)
    if session.pending_metrics or session.pending_artifacts:
        print(f"warning: tracking server {uri} was unreachable: the export is in {Path(record.files[0]).parent} "
              f"but not in MLflow run {run_id}; export it again once the server is back", file=sys.stderr)


def record_export(session: Session, record: ExportRecord) -> None:
    """The export check's metrics and files; the ONNX file as the run's MLflow model when asked."""
    now = int(time.time() * 1000)
    session.log_metrics([(key, value, now, 0) for key, value in record.metrics.items()])
    for file in record.files:
        session.log_artifact(Path(file), ONNX_ARTIFACTS)
    if record.log_model and session.reachable():
        log_onnx_model(session, record)


def warm_up() -> None:
    """Done while training runs: what the first figure and the first logged model would otherwise pay for.

    matplotlib loads its font list when it first draws text; MLflow maps every installed package to its
    modules (a scan of site-packages, about a second) to check a model's requirements.
    """
    with tempfile.TemporaryDirectory() as folder:
        epoch = {"epoch": 1, "train_loss": 0, "val_loss": 0, "train_acc": 0, "val_acc": 0}
        figures.learning_curves([epoch], Path(folder) / "warm_up.png")
    with contextlib.suppress(Exception):  # a private helper of MLflow's: if it moves, the first model pays as before
        requirements_utils._init_packages_to_modules_map()


def log_onnx_model(session: Session, record: ExportRecord) -> None:
    """The verified ONNX file as an MLflow model: it takes uint8 images as they are and returns logits.

    A model that fails to log is recorded as a tag, not a failed run: its ONNX file is an artifact anyway.
    """
    try:
        mlflow.set_tracking_uri(session.client.tracking_uri)  # log_model uses the global URI
        # MLflow warns, while it checks the input example here, that the CUDA provider it lists for
        # the model is absent on this machine: true and harmless (it serves on CPU where there is no GPU).
        logging.getLogger("mlflow.onnx").setLevel(logging.ERROR)
        mlflow.set_experiment(experiment_id=session.client.get_run(session.run_id).info.experiment_id)
        mlflow.onnx.log_model(
            onnx.load(record.files[0]), name=MODEL_ARTIFACT, run_id=session.run_id, input_example=record.example,
            signature=infer_signature(record.example, record.example_logits),
            registered_model_name=record.registered_name, metadata=record.metadata,
            # Stated, not inferred: inference imports the model in a subprocess.
            pip_requirements=[f"onnxruntime=={version('onnxruntime')}", f"onnx=={version('onnx')}"],
        )
    except Exception as error:  # or the server left
        if session.reachable():
            session.client.set_tag(session.run_id, MODEL_LOGGING_ERROR_TAG, typed_line(error))


def end_run(run_dir: str, status: str, reason: str | None) -> None:
    session = sessions.pop(run_dir, None)
    if session:  # else the run never started: that error was reported already
        session.end(status, reason)
