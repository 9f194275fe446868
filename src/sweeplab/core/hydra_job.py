"""The Hydra job this process runs, read once into plain values (none outside a Hydra run).

What the job wrapper (sweeplab.task.job), the run's MLflow tags and the recorder's timing need
to know about the job: its overrides and number, whether it is one of a sweep's jobs, and whether
the sweep runs its jobs in this very process (Hydra's basic launcher).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from sweeplab.core.vocabulary import OPTUNA_SWEEPER

BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


@dataclass
class HydraJob:
    overrides: list[str] = field(default_factory=list)
    num: int | None = None
    multirun: bool = False
    sweep_dir: str | None = None  # absolute
    study: str | None = None  # the Optuna study, when our Optuna sweeper numbers jobs by trial
    storage: str | None = None  # ... where it is stored
    pruner: dict | None = None  # ... and its pruner's config (its jobs report each epoch to their trial)
    threads: int | None = None  # torch threads for this job (None: torch's default, every core)
    in_launching_process: bool = False  # a sequential sweep: the next job trains while this one's record completes
    gpu: int | None = None  # the GPU a parallel sweep's job holds (sweeplab.sweeps.gpu_slots); None: the default
    tasks: int = 1  # processes one job trains on: a submitit job's tasks (tasks_per_node x nodes), in DDP


def current_hydra_job() -> HydraJob:
    if not HydraConfig.initialized():
        return HydraJob()
    hydra = HydraConfig.get()
    multirun = hydra.mode == RunMode.MULTIRUN
    search = hydra.sweeper if multirun and hydra.sweeper.get("_target_") == OPTUNA_SWEEPER else {}
    return HydraJob(
        overrides=list(hydra.overrides.task),
        num=hydra.job.get("num"),
        multirun=multirun,
        sweep_dir=str(Path(hydra.sweep.dir).resolve()) if multirun else None,
        study=search.get("study_name"),
        storage=absolute_sqlite(search.get("storage"), hydra.runtime.cwd),
        pruner=OmegaConf.to_container(search.pruner, resolve=True) if search else None,
        threads=job_threads(hydra.launcher),
        in_launching_process=multirun and hydra.launcher.get("_target_") == BASIC_LAUNCHER,
        tasks=(hydra.launcher.get("tasks_per_node") or 1) * (hydra.launcher.get("nodes") or 1) if multirun else 1,
    )


def job_threads(launcher) -> int | None:
    """Torch threads for one job: a share of the cores under joblib, the cores asked for under submitit."""
    if launcher.get("cpus_per_task"):
        return launcher.cpus_per_task
    n_jobs = launcher.get("n_jobs")  # joblib: a count, or -1 for every core, -2 for all but one, ...
    if not n_jobs:
        return None
    workers = n_jobs if n_jobs > 0 else max(1, usable_cores() + 1 + n_jobs)
    return max(1, usable_cores() // workers) if workers > 1 else None


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def absolute_sqlite(url: str | None, cwd: str) -> str | None:
    """A relative sqlite URL (sqlite:///optuna.db) as the launching process means it: a job may run elsewhere."""
    if url and url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return f"sqlite:///{Path(cwd) / url.removeprefix('sqlite:///')}"
    return url
