"""One MLflow run's lifecycle: start (before any compute), log, and end with a status that is always set.

Everything goes through `MlflowClient` with an explicit run id (no fluent active-run state), so
sequential sweep jobs in one process cannot leak into each other's runs. If the tracking server
goes away, training goes on; what could not be delivered is written to `mlflow_pending.json` in
the run dir with the command that uploads it (see sweeplab.tracking.upload).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from sweeplab.sweeps import OPTUNA_SWEEPER
from sweeplab.tracking.metadata import environment_tags, flatten, git_state
from sweeplab.tracking.metrics import MetricLogger
from sweeplab.tracking.store import (
    check_reachable,
    delivery_errors,
    ensure_experiment,
    experiment_name,
    is_http,
    resolve_uri,
    server_error,
)
from sweeplab.tracking.tags import (
    FAILURE_TAG,
    OPTIMIZED_TAG,
    OPTUNA_STUDY_TAG,
    OPTUNA_TRIAL_TAG,
    OVERRIDES_TAG,
    PARENT_RUN_ENV,
    PARENT_TAG,
    RUN_DIR_TAG,
    SWEEP_DIR_TAG,
    SWEPT_TAG,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from torch import nn
PENDING_FILE = "mlflow_pending.json"


@dataclass
class TrackedRun:
    client: MlflowClient
    run_id: str
    run_dir: Path
    metrics: MetricLogger
    online: bool = True
    # (local path, artifact folder) not delivered because the server was away.
    pending_artifacts: list[tuple[str, str | None]] = field(default_factory=list)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        """Upload a file or a whole directory; kept for later upload when the server is away."""
        if self.online:
            try:
                upload = self.client.log_artifacts if path.is_dir() else self.client.log_artifact
                upload(self.run_id, str(path), folder)
                return
            except delivery_errors():
                self.online = False
        self.pending_artifacts.append((str(path), folder))

    def log_model(self, model: nn.Module, example: Any, registered_name: str | None) -> None:
        """The model in MLflow's pytorch flavour, as a pt2 (torch.export) program.

        pt2 needs no pickled code to load, and an example batch larger than one keeps the batch
        dimension dynamic (a batch of one would freeze it). Models that torch.export cannot trace
        are recorded as a tag, not a failed run: the checkpoint artifact still holds the weights
        (the model is not kept for a later upload: it is rebuilt from that checkpoint).
        """
        if not self.online:
            return
        import mlflow
        import torch
        from mlflow.models import infer_signature

        with torch.no_grad():
            output = model(example).cpu().numpy()
        try:
            mlflow.set_experiment(experiment_id=self.client.get_run(self.run_id).info.experiment_id)  # model's home
            mlflow.pytorch.log_model(
                model, name="model", input_example=example.cpu().numpy(),
                signature=infer_signature(example.cpu().numpy(), output), serialization_format="pt2",
                registered_model_name=registered_name, run_id=self.run_id,
                # Stated, not inferred: inference re-imports the model in a subprocess (~10 s a run).
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            )
        except Exception as error:  # torch.export raises many types for untraceable models; or the server left
            if self.check_online():
                self.client.set_tag(self.run_id, "sweeplab.model_logging_error", _one_line(error))

    def check_online(self) -> bool:
        """Re-test a remote server before the uploads at the end of a run (a dead one costs minutes of retries)."""
        uri = self.client.tracking_uri
        self.online = self.online and not (is_http(uri) and server_error(uri))
        return self.online

    def end(self, status: str, reason: str | None = None) -> None:
        lost = self.metrics.undelivered()
        if reason:
            self._set_tag(FAILURE_TAG, reason)
        if self.online and not lost and not self.pending_artifacts:
            try:
                self.client.set_terminated(self.run_id, status)
                return
            except delivery_errors():
                pass
        self._write_pending(lost, status, reason)

    def _set_tag(self, key: str, value: str) -> None:
        if self.online:
            try:
                self.client.set_tag(self.run_id, key, value, synchronous=False)
            except delivery_errors():
                self.online = False

    def _write_pending(self, lost: list, status: str, reason: str | None) -> None:
        pending = {
            "tracking_uri": self.client.tracking_uri,
            "run_id": self.run_id,
            "status": status,
            "tags": {FAILURE_TAG: reason} if reason else {},
            "metrics": [[m.key, m.value, m.timestamp, m.step] for m in lost],
            "artifacts": self.pending_artifacts,
        }
        path = self.run_dir / PENDING_FILE
        path.write_text(json.dumps(pending, indent=1))
        print(
            f"warning: tracking server {self.client.tracking_uri} was unreachable; {len(lost)} metrics and "
            f"{len(self.pending_artifacts)} artifacts kept in {path}: upload them with "
            f"`python -m sweeplab.tracking.upload {path}`",
            file=sys.stderr,
        )


@contextmanager
def tracked_run(cfg: DictConfig, device: str, resume: bool = False) -> Iterator[TrackedRun | None]:
    """Start the run before any compute; end it FINISHED, FAILED (reason tag) or KILLED (Ctrl-C).

    `resume` reopens the run this run dir started before, if there is one.
    """
    if not cfg.tracking.enabled:
        yield None
        return
    run = start_run(cfg, device, resume)
    try:
        yield run
    except KeyboardInterrupt:
        run.end("KILLED", "KeyboardInterrupt: interrupted (Ctrl-C)")
        raise
    except BaseException as error:
        run.end("FAILED", _one_line(error))
        raise
    run.end("FINISHED")


def start_run(cfg: DictConfig, device: str, resume: bool = False) -> TrackedRun:
    import mlflow
    from mlflow import MlflowClient

    uri = resolve_uri(cfg.tracking.uri)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)  # mlflow.pytorch.log_model reads the global URI
    client = MlflowClient(uri)
    job = hydra_job()
    parent_id = os.environ.get(PARENT_RUN_ENV) if job.get("multirun") else None
    if parent_id:
        parent = client.get_run(parent_id)
        experiment_id = parent.info.experiment_id
        name = cfg.tracking.run_name or job_name(job["overrides"], shlex.split(parent.data.tags.get(SWEPT_TAG, "")))
    else:
        experiment_id = ensure_experiment(client, experiment_name(cfg.tracking.experiment, cfg.dataset.name))
        name = cfg.tracking.run_name
    run_dir = Path(cfg.paths.output_dir)
    previous = find_run(client, experiment_id, run_dir) if resume else None
    if previous:
        run_id = previous.info.run_id
        client.update_run(run_id, status="RUNNING")
        if FAILURE_TAG in previous.data.tags:
            client.delete_tag(run_id, FAILURE_TAG)
        return TrackedRun(client, run_id, run_dir, MetricLogger(client, run_id, cfg.tracking.flush_seconds))
    tags = {
        **environment_tags(device),
        **git_state(Path(__file__).parent),  # the code that ran, not the dir it ran from
        OVERRIDES_TAG: shlex.join(job.get("overrides", [])),
        OPTIMIZED_TAG: cfg.optimized_metric,
        RUN_DIR_TAG: str(run_dir.resolve()),
        **({PARENT_TAG: parent_id, "sweep.job": str(job["num"]), SWEEP_DIR_TAG: job["sweep_dir"]} if parent_id else {}),
        **({OPTUNA_TRIAL_TAG: str(job["num"]), OPTUNA_STUDY_TAG: job["study"]} if job.get("study") else {}),
    }
    run = client.create_run(experiment_id, run_name=name, tags=tags)
    run_id = run.info.run_id
    log_params(client, run_id, OmegaConf.to_container(cfg, resolve=True))
    tracked = TrackedRun(client, run_id, run_dir, MetricLogger(client, run_id, cfg.tracking.flush_seconds))
    if (run_dir / ".hydra").is_dir():
        tracked.log_artifact(run_dir / ".hydra", ".hydra")
    return tracked


def find_run(client: MlflowClient, experiment_id: str, run_dir: Path) -> Run | None:
    """The run an earlier attempt started in this run dir."""
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{RUN_DIR_TAG}` = '{run_dir.resolve()}'", max_results=1
    )
    return runs[0] if runs else None


def job_name(overrides: list[str], swept: list[str]) -> str | None:
    """A sweep job is named by its swept values (`optimizer.lr=0.01 model=cnn`), the rest being common."""
    named = [item for item in overrides if item.split("=", 1)[0].lstrip("+~") in swept] or overrides
    return " ".join(named)[:250] or None


def log_params(client: MlflowClient, run_id: str, config: dict) -> None:
    from mlflow.entities import Param

    params = [Param(key, value) for key, value in flatten(config).items()]
    for start in range(0, len(params), 100):  # MLflow accepts at most 100 params per batch
        client.log_batch(run_id, params=params[start : start + 100])


def hydra_job() -> dict[str, Any]:
    """The Hydra job this process runs (overrides, job number, sweep dir); empty outside Hydra."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return {}
    hydra = HydraConfig.get()
    return {
        "overrides": list(hydra.overrides.task),
        "multirun": hydra.mode == RunMode.MULTIRUN,
        "num": hydra.job.get("num", 0),
        "sweep_dir": str(Path(hydra.sweep.dir).resolve()),
        # The sweeplab Optuna sweeper numbers jobs by trial, so the job number is the trial number.
        "study": hydra.sweeper.get("study_name") if hydra.sweeper.get("_target_") == OPTUNA_SWEEPER else None,
    }


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:500]
