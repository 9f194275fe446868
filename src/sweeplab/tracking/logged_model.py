"""An export in its MLflow run, in the recorder process: the check's metrics, the files, and the ONNX file as
the run's model (uint8 images in, logits out, as `mlflow.pyfunc.load_model(...).predict` takes them)."""

from __future__ import annotations

import contextlib
import logging
import sys
from importlib.metadata import version
from pathlib import Path

import mlflow
import mlflow.onnx
import onnx
from mlflow.models import infer_signature
from mlflow.utils import requirements_utils

from sweeplab.core.errors import typed_line
from sweeplab.core.masking import masked_text
from sweeplab.core.vocabulary import MODEL_ARTIFACT, MODEL_LOGGING_ERROR_TAG, ONNX_ARTIFACTS
from sweeplab.tracking.client import client
from sweeplab.tracking.handle import ExportRecord, metric_rows
from sweeplab.tracking.session import Session, sessions


def log_export(run_dir: str, record: ExportRecord) -> None:
    record_export(sessions[run_dir], record)


def log_export_to_run(uri: str, run_id: str, run_dir: str, record: ExportRecord) -> None:
    """An export after its run ended (`sweeplab export <run>`, a sweep's best job) lands in that run."""
    session = Session(client(uri), run_id, Path(run_dir))
    record_export(session, record)
    if session.pending_metrics or session.pending_artifacts:
        print(f"warning: tracking server {masked_text(uri)} was unreachable: the export is in "
              f"{Path(record.files[0]).parent} but not in MLflow run {run_id}; export it again once the server is back",
              file=sys.stderr)


def record_export(session: Session, record: ExportRecord) -> None:
    """The export check's metrics and files; the ONNX file as the run's MLflow model when asked."""
    session.log_metrics(metric_rows(record.metrics, 0))
    for file in record.files:
        session.log_artifact(Path(file), ONNX_ARTIFACTS)
    if record.log_model and session.reachable() and not model_logged(session):
        log_onnx_model(session, record)


def model_logged(session: Session) -> bool:
    """A resumed run whose model was logged before it was cut off: logging again would add a registry version."""
    experiment_id = session.client.get_run(session.run_id).info.experiment_id
    models = session.client.search_logged_models([experiment_id], f"source_run_id = '{session.run_id}'")
    return any(model.name == MODEL_ARTIFACT for model in models)


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
            session.client.set_tag(session.run_id, MODEL_LOGGING_ERROR_TAG, masked_text(typed_line(error)))


def warm_up() -> None:
    """Done while training runs: MLflow maps every installed package to its modules (a scan of site-packages,
    about a second) to check a logged model's requirements; the first model would otherwise wait for it."""
    with contextlib.suppress(Exception):  # a private helper of MLflow's: if it moves, the first model pays as before
        requirements_utils._init_packages_to_modules_map()
