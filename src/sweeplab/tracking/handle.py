"""The training process's handle on its MLflow run, which lives in the recorder process.

`tracked_run` starts the run before any compute (an unreachable server fails in seconds, before
any data is loaded) and always ends it with a status: FINISHED, FAILED with the reason, or KILLED
on Ctrl-C. Every call goes to the recorder (sweeplab.recorder) and returns at once; its MLflow
work happens there (sweeplab.tracking.session), beside training. Everything sent is a plain value.
"""

from __future__ import annotations

import os
import platform
import shlex
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from sweeplab.core.errors import UserError, typed_line
from sweeplab.core.hydra_job import HydraJob
from sweeplab.core.interrupts import how_interrupted
from sweeplab.core.ranks import launched, torchrun_arguments
from sweeplab.core.vocabulary import (
    FAILED,
    FINISHED,
    GPU_UUID_TAG,
    JOB_TAG,
    KILLED,
    OPTIMIZED_TAG,
    OPTUNA_STUDY_TAG,
    OPTUNA_TRIAL_TAG,
    OVERRIDES_TAG,
    PARENT_RUN_ENV,
    RUN_DIR_TAG,
    SWEEP_DIR_TAG,
    THREADS_TAG,
    TORCHRUN_TAG,
    selected_metric,
)
from sweeplab.recorder.remote import Remote
from sweeplab.tracking.per_image import SplitPredictions
from sweeplab.tracking.store import check_reachable, experiment_name, resolve_uri

if TYPE_CHECKING:
    from sweeplab.recorder import Call, Inline, Recorder

MetricRow = tuple[str, float, int, int]  # key, value, timestamp (ms), step: what MLflow stores


def metric_rows(values: dict[str, float], step: int) -> list[MetricRow]:
    now = int(time.time() * 1000)
    return [(key, float(value), now, step) for key, value in values.items()]


@dataclass
class RunSpec:
    """What the recorder needs to start (or reopen) a run's MLflow run."""

    uri: str
    experiment: str
    run_name: str | None
    run_dir: str  # absolute: the key of this run in the recorder
    config: dict[str, Any]  # resolved: logged as params
    tags: dict[str, str]
    resume: bool
    parent_id: str | None = None  # a sweep job's parent run, when known here
    sweep_dir: str | None = None  # ... else the recorder knows it by the sweep dir (a sequential sweep)
    code_dir: str = str(Path(__file__).parent)  # sweeplab's source: its git commit, when a checkout
    project_dir: str = field(default_factory=os.getcwd)  # where the run was launched: the user's project
    system_metrics: bool = False  # sample CPU, memory and the run's GPU into the run


@dataclass
class SweepSpec:
    """What the recorder needs to start (or reopen) a sweep's parent run."""

    uri: str
    experiment: str
    sweep_dir: str  # absolute
    tags: dict[str, str]
    code_dir: str = str(Path(__file__).parent)
    project_dir: str = field(default_factory=os.getcwd)


@dataclass
class DatasetRecord:
    """One split a run read, as MLflow's dataset input: the data set's name, the split, what it holds."""

    name: str
    split: str  # train, val or test: the input's context
    digest: str
    size: int
    source: dict[str, Any]  # the resolved `dataset.source` config: the loader, its files, its split seed


GRID_IMAGES = 9  # validation images the figures show, in a 3x3 grid


@dataclass
class FigureData:
    """What the figures show: the epochs, and the best epoch's validation predictions."""

    history: list[dict[str, float]]
    labels: np.ndarray
    predictions: np.ndarray
    images: np.ndarray  # the first validation images, uint8 NCHW
    classes: list[str]


@dataclass
class ExportRecord:
    """A verified export, for the run: its check's metrics, its files, and whether to log it as the run's model."""

    metrics: dict[str, float]
    files: list[str]
    log_model: bool
    registered_name: str | None = None
    example: np.ndarray | None = None  # a few uint8 input images: the logged model's input example
    example_logits: np.ndarray | None = None  # ... and what the model returns for them (its signature)
    metadata: dict[str, Any] = field(default_factory=dict)  # what the model needs to read pictures (classes, ...)


class TrackedRun:
    def __init__(self, recorder: Recorder | Inline, run_dir: Path):
        self.recorder = recorder
        self.run_dir = str(run_dir.resolve())
        self.started: Call | None = None
        self.training = False  # fit() began: an error from here on is the run's own, and its record stays

    def _call(self, function: Remote, *args: Any) -> Call:
        return self.recorder.submit(function, self.run_dir, *args)

    def start(self, spec: RunSpec) -> None:
        self.started = self._call(Remote.START_RUN, spec)

    @property
    def run_id(self) -> str:
        return self.started.result()  # type: ignore[union-attr]

    def log_metrics(self, rows: list[MetricRow]) -> None:
        self._call(Remote.LOG_METRICS, rows)

    def log_missing_epochs(self, epochs: dict[int, dict[str, float]]) -> None:
        """A resumed run's epochs so far (number -> metrics): the recorder logs those the store lacks."""
        self._call(Remote.LOG_MISSING_EPOCHS, epochs)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self._call(Remote.LOG_ARTIFACT, str(path), folder)

    def log_figures(self, data: FigureData) -> None:
        self._call(Remote.LOG_FIGURES, data)

    def log_test_predictions(self, test: SplitPredictions) -> None:
        self._call(Remote.LOG_TEST_PREDICTIONS, test)

    def log_export(self, record: ExportRecord) -> None:
        self._call(Remote.LOG_EXPORT, record)

    def set_tag(self, key: str, value: str) -> None:
        self._call(Remote.SET_TAG, key, value)

    def log_inputs(self, records: list[DatasetRecord]) -> None:
        self._call(Remote.LOG_INPUTS, records)

    def end(self, status: str, reason: str | None = None, discard: bool = False) -> None:
        """`discard`: delete the run once ended (MLflow keeps it with its deleted runs): refused before training."""
        self._call(Remote.END_RUN, status, reason, discard)


@contextmanager
def tracked_run(
    cfg: DictConfig, job: HydraJob, recorder: Recorder | Inline, environment: dict[str, str], resume: bool
) -> Iterator[TrackedRun | None]:
    """Start the run before any compute; end it FINISHED, FAILED (reason tag) or KILLED (Ctrl-C, SIGTERM), or
    delete it when a user error refuses it before training (missing data, weights that cannot be had).

    `resume` reopens the run this run dir started before, if there is one.
    """
    if not cfg.tracking.enabled:
        yield None
        return
    uri = resolve_uri(cfg.tracking.uri)
    check_reachable(uri)
    run = TrackedRun(recorder, Path(cfg.paths.output_dir))
    run.start(run_spec(cfg, job, uri, run.run_dir, environment, resume))
    try:
        yield run
    except KeyboardInterrupt as error:
        run.end(KILLED, f"{type(error).__name__}: {how_interrupted(error)}")
        raise
    except UserError as error:  # refused before it trained, a new run leaves nothing in compare or the UI
        run.end(FAILED, typed_line(error), discard=not (resume or run.training))
        raise
    except BaseException as error:
        run.end(FAILED, typed_line(error))
        raise
    run.end(FINISHED)


def run_spec(
    cfg: DictConfig, job: HydraJob, uri: str, run_dir: str, environment: dict[str, str], resume: bool
) -> RunSpec:
    tags = {
        **environment,
        OVERRIDES_TAG: shlex.join(job.overrides),
        OPTIMIZED_TAG: selected_metric(cfg.optimized_metric, cfg.trainer.ema_for_best),
        RUN_DIR_TAG: run_dir,
    }
    if job.multirun:
        tags |= {JOB_TAG: str(job.num), SWEEP_DIR_TAG: str(job.sweep_dir)}
    elif ranks := launched():
        tags[TORCHRUN_TAG] = torchrun_arguments(ranks)
    if job.study:  # our Optuna sweeper numbers jobs by trial: the job number is the trial number
        tags |= {OPTUNA_TRIAL_TAG: str(job.num), OPTUNA_STUDY_TAG: job.study}
    return RunSpec(
        uri=uri,
        experiment=experiment_name(cfg.tracking.experiment, cfg.dataset.name),
        run_name=cfg.tracking.run_name,
        run_dir=run_dir,
        config=OmegaConf.to_container(cfg, resolve=True),  # type: ignore[arg-type]
        tags=tags,
        resume=resume,
        parent_id=os.environ.get(PARENT_RUN_ENV) if job.multirun else None,
        sweep_dir=job.sweep_dir,
        system_metrics=cfg.tracking.system_metrics,
    )


def environment_tags(device: str, precision: str, torch_version: str, threads: int,
                     gpu: str | None = None) -> dict[str, str]:
    """Where and with what the run computes (the torch facts come from the training process)."""
    return {**({GPU_UUID_TAG: gpu} if gpu else {}),
        "host": socket.gethostname(),
        "device": device,
        "precision": precision,  # what trainer.precision=auto chose here
        "python": platform.python_version(),
        "torch": torch_version,
        "torchvision": version("torchvision"),
        THREADS_TAG: str(threads),
    }

