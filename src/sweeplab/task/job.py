"""What every Hydra job does around training: skip it if it finished, continue it if it was cut off, and
in a sweep keep its failure inside it (Lightning-Hydra-Template's task_wrapper, for our runs).

Under torchrun rank 0 does all of this; the other ranks only train, as rank 0's reading of the run dir says.

A job's run dir tells its story (sweeplab.runs.results): re-running a sweep with
`hydra.sweep.dir=<that sweep>` gives every job the same dir, so finished jobs return their recorded
value and interrupted ones resume from `checkpoints/last.pt` in the same MLflow run. The final
result.json goes through the recorder, after the run's MLflow record: FINISHED means recorded.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from omegaconf import DictConfig

from sweeplab.core.errors import UserError, first_line, typed_line
from sweeplab.core.hydra_job import HydraJob
from sweeplab.core.interrupts import how_interrupted
from sweeplab.core.ranks import follower, launched
from sweeplab.core.vocabulary import (
    CHECKPOINTS_DIR,
    FAILED,
    FINISHED,
    KEEP_ALL,
    KEEP_BEST,
    KEEP_NONE,
    KILLED,
    LAST_CHECKPOINT,
    NOT_STARTED,
    PENDING_FILE,
    PRUNED,
    RUNNING,
    SWEEP_STARTED_ENV,
    selected_metric,
)
from sweeplab.recorder import Inline, Recorder
from sweeplab.recorder.calls import RecorderGone
from sweeplab.recorder.remote import Remote
from sweeplab.runs.rank_zero_dir import follow_rank_0
from sweeplab.runs.results import ENDED, JobResult, Scores, check_same_job, read_result, write_result
from sweeplab.sweeps.gpu_slots import DeviceSlots
from sweeplab.sweeps.kept_records import keep_undelivered
from sweeplab.tracking.handle import TrackedRun, run_spec
from sweeplab.tracking.pending import read_pending
from sweeplab.tracking.store import resolve_uri
from sweeplab.training.distributed import join_job_tasks, read_by_main
from sweeplab.training.run_log import log_outcome

log = logging.getLogger(__name__)
STOP_SECONDS = 5.0  # a stopped run waits at most this long for its record: a stop ends within seconds
Train = Callable[[DictConfig, HydraJob, bool, "Recorder | Inline"], Scores]


def run_job(cfg: DictConfig, job: HydraJob, train: Train, recorder: Recorder | Inline) -> JobResult | None:
    """`train(cfg, job, resume, recorder)` as a Hydra job: returns how it ended (a failed sweep job too: the
    sweeper records it and goes on), what result.json says; a job that finished before returns its record
    untrained. A rank other than 0 returns None: rank 0's is the job's."""
    if job.tasks > 1:  # a submitit job's tasks train it as torchrun's processes would
        join_job_tasks()
        cfg = follow_rank_0(cfg) if follower() else cfg
    run_dir = Path(cfg.paths.output_dir)
    previous = read_by_main(read_result, run_dir)
    if previous:
        check_same_job(previous, job.overrides, run_dir, multirun=job.multirun)
        if previous.status in ENDED:
            deliver_pending(cfg, job, run_dir, recorder)
            log.info(f"{run_dir} finished before ({previous.metric} {previous.value:.4g}): skipped")
            return previous
    if (timeout := past_timeout(cfg, job)) is not None:
        return not_started(cfg, job, run_dir, timeout)
    if job.threads:  # jobs side by side on one machine share its cores
        torch.set_num_threads(job.threads)
    if follower():  # rank 0 writes the result, records the run and says how it ended
        train(cfg, job, previous is not None, Inline())
        return None
    return recorded_job(cfg, job, train, recorder, previous)


def deliver_pending(cfg: DictConfig, job: HydraJob, run_dir: Path, recorder: Recorder | Inline) -> None:
    """What an earlier attempt could not record (its recorder gone), delivered now: its MLflow run reopened (or
    made, when the recorder died before it was) delivers the pending file first, then ends as the job ended."""
    path = run_dir / PENDING_FILE
    if not path.is_file() or follower() or not cfg.tracking.enabled:
        return
    status = read_pending(path)["status"] or FINISHED
    run = TrackedRun(recorder, run_dir)
    run.start(run_spec(cfg, job, resolve_uri(cfg.tracking.uri), run.run_dir, {}, resume=True))
    run.end(status)
    run.started.result()  # type: ignore[union-attr]
    log.info(f"{run_dir}: the records kept in {path} are in MLflow now")


def recorded_job(cfg: DictConfig, job: HydraJob, train: Train, recorder: Recorder | Inline,
                 previous: JobResult | None) -> JobResult:
    """result.json says RUNNING while it trains, then how it ended, once the run's record is complete; a resume
    refused before it trained (a damaged checkpoint, a changed config) keeps the record it had (`previous`)."""
    run_dir = Path(cfg.paths.output_dir)
    metric = selected_metric(cfg.optimized_metric, cfg.trainer.ema_for_best)
    result = JobResult(RUNNING, job.overrides, metric, job=job.num)
    write_result(str(run_dir), result)
    started = time.perf_counter()
    last_checkpoint = run_dir / CHECKPOINTS_DIR / LAST_CHECKPOINT
    written = modified(last_checkpoint)
    try:
        with gpu_slot(cfg, job) as gpu:
            scores = train(cfg, replace(job, gpu=gpu), previous is not None, recorder)
        result.value, result.test_acc, result.objectives = scores.best, scores.test_acc, scores.objectives
        result.status = PRUNED if scores.pruned_at else FINISHED
    except KeyboardInterrupt as error:
        result.status, result.reason = KILLED, how_interrupted(error)
        if not job.multirun:  # a sweep says how to resume at its end (sweeplab.sweeps.hydra_callbacks)
            print(f"{result.reason}: resume with `{resume_command(job.overrides, run_dir)}`", file=sys.stderr)
        raise
    except Exception as error:
        if previous and isinstance(error, UserError) and modified(last_checkpoint) == written:
            result = previous  # nothing trained: the run dir holds what it held
        else:
            result.status, result.reason = FAILED, failure_reason(error)
        if not job.multirun:
            raise
        report_failure(job.num, error, failure_reason(error))
    finally:
        if result is not previous:
            result.seconds = round(time.perf_counter() - started, 3)
            log_outcome(result.status, result.seconds, result.reason, metric, result.value)
        late = finish(recorder, str(run_dir), result, job, kept_checkpoints(cfg, job))
    if late and not job.multirun:
        raise late[0]
    if result.status == FAILED:
        release_memory()
    return result


def modified(path: Path) -> int | None:
    """When `path` was last written (None: it is not there)."""
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def past_timeout(cfg: DictConfig, job: HydraJob) -> float | None:
    """sweep.timeout, where a grid's job starts after it (a search asks no trial after it: the sweeper's check)."""
    started = os.environ.get(SWEEP_STARTED_ENV)
    timeout = cfg.sweep.timeout
    if not job.multirun or job.study is not None or timeout is None or started is None:
        return None
    return timeout if time.time() - float(started) >= timeout else None


def not_started(cfg: DictConfig, job: HydraJob, run_dir: Path, timeout: float) -> JobResult:
    """Recorded as never started, and nothing else: a re-run of the sweep runs it."""
    metric = selected_metric(cfg.optimized_metric, cfg.trainer.ema_for_best)
    reason = f"sweep.timeout={timeout:g} s had passed"
    log.info(f"{run_dir} not started: {reason}")
    result = JobResult(NOT_STARTED, job.overrides, metric, job=job.num, reason=reason)
    write_result(str(run_dir), result)
    return result


def gpu_slot(cfg: DictConfig, job: HydraJob) -> contextlib.AbstractContextManager[int | None]:
    """A sweep's job holds a slot of a GPU while it trains: a GPU of its own on a machine with several, or one of
sweep.jobs_per_gpu places on each GPU when that is set, on a single GPU too (None: the default GPU, shared by any
number of jobs; a job of several tasks takes a GPU per task by local rank)."""
    if not job.multirun or job.tasks > 1 or cfg.device.type not in ("auto", "cuda"):
        return contextlib.nullcontext(None)
    gpus = torch.cuda.device_count()  # NVML's count: CUDA is not initialised by it
    jobs_per_gpu = cfg.sweep.jobs_per_gpu
    if gpus == 0 or (jobs_per_gpu is None and gpus == 1):
        return contextlib.nullcontext(None)
    return DeviceSlots(Path(job.sweep_dir), gpus, jobs_per_gpu or 1).slot()  # type: ignore[arg-type]


def resume_command(overrides: list[str], run_dir: Path) -> str:
    ranks = launched()
    launcher = ["torchrun", f"--nproc_per_node={ranks.world_size}"] if ranks else ["python"]
    return shlex.join([*launcher, "train.py", *overrides, f"hydra.run.dir={run_dir}"])


def kept_checkpoints(cfg: DictConfig, job: HydraJob) -> str:
    """trainer.keep_checkpoints; a sweep job keeps its best.pt all the same, for the export of the sweep's best job
    at the sweep's end (sweeplab.sweeps.hydra_callbacks discards it then)."""
    keep = cfg.trainer.keep_checkpoints
    return KEEP_BEST if keep == KEEP_NONE and job.multirun else keep


def finish(recorder: Recorder | Inline, run_dir: str, result: JobResult, job: HydraJob,
           keep: str) -> list[BaseException]:
    """The result, after the run's record; waited for unless the next job of a sequential sweep can go on.
    A finished job then keeps the checkpoints `keep` says.

    Returns the errors of the record's last calls (ending the MLflow run, writing the result), which
    a single run raises; a sweep job's are logged with their traceback, and the sweep goes on.
    """
    recorder.submit(Remote.WRITE_RESULT, run_dir, result)
    if result.status in ENDED and keep != KEEP_ALL:
        recorder.submit(Remote.DISCARD_CHECKPOINTS, run_dir, keep)
    if job.in_launching_process and result.status != KILLED and recorder.lost is None:
        return []
    late = recorder.wait(raise_errors=False, timeout=STOP_SECONDS if result.status == KILLED else None)
    if recorder.lost is not None:  # what it did not do is done here, or kept for the run's resume
        late = [error for error in late if not isinstance(error, RecorderGone)]
        late += keep_undelivered(recorder, lambda run: f"`{resume_command(job.overrides, Path(run))}`")
    if job.multirun or sys.exc_info()[1] is not None:  # in a sweep, or another error is on its way out
        for error in late:
            log.error(f"recording {run_dir} failed: {typed_line(error)}", exc_info=error)
        return []
    return late


def is_out_of_memory(error: Exception) -> bool:
    """CUDA's, the CPU's, and MPS's (a RuntimeError by message) out-of-memory errors."""
    return isinstance(error, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(error, RuntimeError) and "MPS backend out of memory" in str(error)
    )


def failure_reason(error: Exception) -> str:
    """One line for the run's record: user mistakes and divergence as they are, memory with the fix."""
    if is_out_of_memory(error):
        return f"out of memory ({first_line(error)[:200]}): lower dataset.batch_size or use a smaller model"
    if isinstance(error, UserError):  # a DivergedError too
        return first_line(error)
    return typed_line(error)


def report_failure(job: int | None, error: Exception, reason: str) -> None:
    """Expected failures as one line; anything else is a bug and keeps its traceback (in the job's log too)."""
    if isinstance(error, UserError) or is_out_of_memory(error):
        log.error(f"job {job} failed: {reason}")
    else:
        log.exception(f"job {job} failed: {reason}")


def release_memory() -> None:
    """A failed job's tensors (held by its traceback's frames) must not starve the next job in this process."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
