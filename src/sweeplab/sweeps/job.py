"""One Hydra job, in a single run or a sweep: skip it if it finished, continue it if it was cut off,
and in a sweep keep its failure inside it.

A job's run dir tells its story (sweeplab.sweeps.results): re-running a sweep with
`hydra.sweep.dir=<that sweep>` gives every job the same dir, so finished jobs return their recorded
value and interrupted ones resume from `checkpoints/last.pt` in the same MLflow run.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from omegaconf import DictConfig

from sweeplab.errors import UserError, first_line
from sweeplab.sweeps.results import (
    FAILED,
    FINISHED,
    KILLED,
    RUNNING,
    JobResult,
    check_same_job,
    read_result,
    write_result,
)

log = logging.getLogger(__name__)


def run_job(cfg: DictConfig, contain_failures: bool) -> float:
    """Train (or skip, or resume); return the best value of optimized_metric, NaN for a failed sweep job.

    With `contain_failures` (sweeps) an error is recorded and logged, not raised, so the sweeper
    goes on with the other jobs; Ctrl-C still stops everything.
    """
    from sweeplab.run import train

    run_dir = Path(cfg.paths.output_dir)
    job = current_job()
    previous = read_result(run_dir)
    if previous:
        check_same_job(previous, job["overrides"], run_dir)
        if previous.status == FINISHED:
            log.info(f"{run_dir} finished before ({previous.metric} {previous.value:.4g}): skipped")
            return previous.objective
    share_cores(job["threads"])
    result = JobResult(RUNNING, job["overrides"], cfg.optimized_metric, job=job["num"])
    write_result(run_dir, result)
    started = time.perf_counter()
    try:
        result.value = train(cfg, resume=previous is not None)
        result.status = FINISHED
    except KeyboardInterrupt:
        result.status, result.reason = KILLED, "interrupted (Ctrl-C)"
        raise
    except Exception as error:
        result.status, result.reason = FAILED, failure_reason(error)
        if not contain_failures:
            raise
        report_failure(job["num"], error, result.reason)
    finally:
        result.seconds = round(time.perf_counter() - started, 3)
        write_result(run_dir, result)
    if result.status == FAILED:
        release_memory()
    return result.objective


def failure_reason(error: Exception) -> str:
    """One line for the run's record: user mistakes and divergence as they are, memory with the fix."""
    import torch

    from sweeplab.engine import DivergedError

    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return f"out of memory ({first_line(error)[:200]}): lower dataset.batch_size or use a smaller model"
    if isinstance(error, (UserError, DivergedError)):
        return first_line(error)
    return f"{type(error).__name__}: {first_line(error)}"[:500]


def report_failure(job: int, error: Exception, reason: str) -> None:
    """Expected failures as one line; anything else is a bug and keeps its traceback (in the job's log too)."""
    import torch

    from sweeplab.engine import DivergedError

    if isinstance(error, (UserError, DivergedError, torch.OutOfMemoryError, MemoryError)):
        log.error(f"job {job} failed: {reason}")
    else:
        log.exception(f"job {job} failed: {reason}")


def release_memory() -> None:
    """A failed job's tensors (held by its traceback's frames) must not starve the next job in this process."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def share_cores(threads: int | None) -> None:
    """Jobs run side by side on one machine split its cores, instead of each taking all of them."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def current_job() -> dict:
    """This job's overrides, number, and torch threads (None keeps torch's default: every core)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {"overrides": [], "num": None, "threads": None}
    hydra = HydraConfig.get()
    threads = job_threads(hydra.launcher)
    return {"overrides": list(hydra.overrides.task), "num": hydra.job.get("num"), "threads": threads}


def job_threads(launcher: DictConfig) -> int | None:
    """Torch threads for one job: a share of the cores under joblib, the cores asked for under submitit."""
    if launcher.get("cpus_per_task"):
        return launcher.cpus_per_task
    n_jobs = launcher.get("n_jobs")  # joblib: a count, or -1 for every core, -2 for all but one, ...
    if not n_jobs:
        return None
    workers = n_jobs if n_jobs > 0 else max(1, usable_cores() + 1 + n_jobs)
    return max(1, usable_cores() // workers) if workers > 1 else None
