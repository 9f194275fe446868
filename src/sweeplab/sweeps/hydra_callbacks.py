"""The Hydra callbacks of a sweep (conf/train.yaml, hydra.callbacks), in the launching process.

SweepGuard checks the sweep's config once before launching, and at the end prints a table of every
job with an exit code that says whether any failed. SweepRecord keeps the sweep's MLflow parent run
(its MLflow work is the recorder's: sweeplab.tracking.sweep) and, at the end, exports the best job
and gives an Optuna search's parent its history and parameter importances (sweeplab.tracking.study_report).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from sweeplab.core.errors import UserError, exit_on_user_error, typed_line
from sweeplab.core.hydra_job import BASIC_LAUNCHER, current_hydra_job, usable_cores
from sweeplab.core.masking import masked_text
from sweeplab.core.overrides import typed_hydra_overrides
from sweeplab.core.ranks import follower
from sweeplab.core.vocabulary import (
    EXPORT_DIR,
    EXPORTED_JOB_TAG,
    HYDRA_OVERRIDES_TAG,
    KEEP_NONE,
    NOT_STARTED,
    OBJECTIVES_TAG,
    OPTIMIZED_TAG,
    OPTUNA_SWEEPER,
    OVERRIDES_TAG,
    PARENT_RUN_ENV,
    SEARCH_FILE,
    SWEEP_DIR_TAG,
    SWEEP_STARTED_ENV,
    SWEEP_STOPPED_TAG,
    SWEPT_TAG,
    objectives,
    selected_metric,
)
from sweeplab.export.verdict import verified
from sweeplab.recorder import Call, Recorder, this_process
from sweeplab.recorder.calls import RecorderGone
from sweeplab.recorder.process import SHARED_ENV
from sweeplab.recorder.remote import EXPORT_WARM_UP, Remote
from sweeplab.runs.results import ENDED, JobResult, best_result, checkpoint_in, sweep_results
from sweeplab.sweeps.front import front, retime_front
from sweeplab.sweeps.job_pools import JOBLIB, RAY, SUBMITIT
from sweeplab.sweeps.kept_records import keep_undelivered
from sweeplab.sweeps.open_sweeps import ended, started
from sweeplab.sweeps.plan import print_plan
from sweeplab.sweeps.preflight import check_sweep, planned_jobs, sweep_overrides
from sweeplab.sweeps.retention import discard_sweep_checkpoints
from sweeplab.sweeps.sweep_table import print_sweep_table
from sweeplab.tracking.handle import SweepSpec
from sweeplab.tracking.store import check_reachable, experiment_name, resolve_uri

log = logging.getLogger(__name__)


class SweepGuard(Callback):
    def __init__(self) -> None:
        self.launched = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # exit_on_user_error and sys.exit end in SystemExit, which Hydra's callback runner lets through: nothing
        # launches.
        if config.sweep.plan:
            exit_on_user_error(check_sweep)(config)
            exit_on_user_error(print_plan)(config)
            sys.exit(0)
        this_process.for_job(config, current_hydra_job())  # the recorder imports MLflow & co. while this checks
        exit_on_user_error(check_sweep)(config)
        if config.hydra.launcher._target_ == RAY:
            plain_ray_output()
        self.launched = True
        started(self, config)
        os.environ[SWEEP_STARTED_ENV] = str(time.time())  # what a grid's jobs measure sweep.timeout from
        if config.export.onnx and config.hydra.launcher._target_ != BASIC_LAUNCHER:
            prepare_export()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        ended(self)
        if not self.launched:
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        results = sweep_results(sweep_dir)
        if not results:  # no job started (a check at the start failed): nothing to tell
            return
        results += never_started(config, results)
        print_sweep_table(results, sweep_dir, stopped_early(sweep_dir, results), config.seed)
        unfinished = [r for r in results if r.status not in ENDED]
        if unfinished:
            again = ("run the same sweeplab confirm again" if config.sweep.confirm.top else
                     f"re-run the same command with hydra.sweep.dir={sweep_dir}")
            print(unfinished_line(unfinished, len(results), again, unstarted_trials(config, results)), file=sys.stderr)
            sys.exit(1)


def stopped_early(sweep_dir: Path, results: list[JobResult]) -> str | None:
    """Why the sweep stopped before running everything it was asked to: a search's budget or failures (its
    search.json), a grid's sweep.timeout (its jobs' records)."""
    search = sweep_dir / SEARCH_FILE
    if search.is_file():
        return json.loads(search.read_text()).get("stopped")
    timed_out = [str(r.job) for r in results if r.status == NOT_STARTED and r.reason]
    if not timed_out:
        return None
    return f"sweep.timeout passed before job{'s' * (len(timed_out) > 1)} {', '.join(timed_out)} started"


def never_started(config: DictConfig, results: list[JobResult]) -> list[JobResult]:
    """A grid's jobs that left no result.json: those an interrupted sweep never reached, for the table to name."""
    ran = {result.job for result in results}
    metric = selected_metric(config.optimized_metric, config.trainer.ema_for_best)
    return [JobResult(NOT_STARTED, overrides, metric, job=number)
            for number, overrides in enumerate(planned_jobs(config) or []) if number not in ran]


def unstarted_trials(config: DictConfig, results: list[JobResult]) -> int:
    """A search's trials that never started: its n_trials less those with a run dir (a grid names its own)."""
    if config.hydra.sweeper._target_ != OPTUNA_SWEEPER:
        return 0
    return max(0, config.hydra.sweeper.n_trials - len(results))


def unfinished_line(unfinished: list[JobResult], jobs: int, again: str, unstarted_trials: int = 0) -> str:
    """`3 of 4 jobs did not finish: 1 stopped (...) and 2 never started (jobs 2, 3)`, and how to run them."""
    missing = [str(result.job) for result in unfinished if result.status == NOT_STARTED]
    stopped = len(unfinished) - len(missing)
    parts = [f"{stopped} stopped (reasons in the table)"] if stopped else []
    parts += [f"{len(missing)} never started (job{'s' * (len(missing) > 1)} {', '.join(missing)})"] if missing else []
    parts += [f"{unstarted_trials} trial{'s' * (unstarted_trials > 1)} never started"] if unstarted_trials else []
    return (f"error: {len(unfinished) + unstarted_trials} of {jobs + unstarted_trials} jobs did not finish: "
            f"{' and '.join(parts)}; {again} to run only those")


def plain_ray_output() -> None:
    """Ray prefixes its tasks' lines with colour codes and folds lines that repeat across tasks ('[repeated 3x across
    cluster]'), which cuts rows out of a job's table: plain and whole instead, unless the user's environment says
    otherwise (Ray reads these when the launcher imports it, after this)."""
    os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")


# Launchers whose jobs run on this machine: they join this process's recorder, which knows the parent run by its
# sweep dir, so they start before it is created (its MLflow imports take seconds).
ON_THIS_MACHINE = (JOBLIB, SUBMITIT[0])


class SweepRecord(Callback):
    """One MLflow parent run per multirun, each job its child; at the end a summary and the best job's export.

    The parent is asked for before any job starts (many processes creating a fresh sqlite file at once race).
    Jobs share this process's recorder, which knows it by its sweep dir: a sequential sweep's in this process,
    a joblib or submitit_local sweep's from their workers (sweeplab.recorder.process). Jobs on other machines
    (Slurm, Ray) start recorders of their own and learn its id through the environment, so it is waited for.
    """

    def __init__(self) -> None:
        self.uri: str | None = None
        self.parent_id: str | None = None
        self.starting: Call | None = None  # the recorder's answer to start_sweep, not yet read

    def __getstate__(self) -> dict[str, Any]:
        """What joblib sends its workers: the parent's id (read before launching), not the recorder's call."""
        return {**self.__dict__, "starting": None}

    def parent(self) -> str | None:
        if self.starting is not None:
            self.parent_id, self.starting = self.starting.result(), None
        return self.parent_id

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.tracking.enabled:  # checked before the recorder starts: a wrong server is said in a second
            self.uri = resolve_uri(config.tracking.uri)
            exit_on_user_error(check_reachable)(self.uri)
        recorder = this_process.for_job(config, current_hydra_job())
        if not config.tracking.enabled:
            return
        started(self, config)
        sweep_dir = str(Path(config.hydra.sweep.dir).resolve())
        tags = {
            SWEEP_DIR_TAG: sweep_dir,
            OVERRIDES_TAG: shlex.join(config.hydra.overrides.task),
            HYDRA_OVERRIDES_TAG: shlex.join(typed_hydra_overrides(config.hydra.overrides.hydra)),
            SWEPT_TAG: shlex.join(o.get_key_element() for o in sweep_overrides(config) if o.is_sweep_override()),
            OPTIMIZED_TAG: selected_metric(config.optimized_metric, config.trainer.ema_for_best),
        }
        if len(objectives(config.optimized_metric)) > 1:
            tags[OBJECTIVES_TAG] = ",".join(objectives(config.optimized_metric))
        experiment = experiment_name(config.tracking.experiment, config.dataset.name)
        self.starting = recorder.submit(Remote.START_SWEEP, SweepSpec(self.uri, experiment, sweep_dir, tags))
        launcher = config.hydra.launcher._target_
        if launcher != BASIC_LAUNCHER:  # jobs in other processes: what they need, in the environment they inherit
            os.environ[SHARED_ENV] = recorder.sharing()  # their records go to this recorder, where it can be reached
        if launcher not in (BASIC_LAUNCHER, *ON_THIS_MACHINE):  # jobs elsewhere record themselves: the parent's id
            os.environ[PARENT_RUN_ENV] = self.parent()
            print(f"MLflow sweep run {self.parent()} in {masked_text(self.uri)}", file=sys.stderr)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        """Wherever the job ran (this process, or a joblib/submitit worker), its parent's summary is refreshed."""
        if not (config.tracking.enabled and config.hydra.mode == RunMode.MULTIRUN) or follower():
            return
        this_process.get(True).submit(Remote.REFRESH_SUMMARY, resolve_uri(config.tracking.uri),
                                      str(Path(config.hydra.sweep.dir).resolve()),
                                      os.environ.get(PARENT_RUN_ENV) or self.parent())

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """However the sweep ended (done, a job raised, Ctrl-C: sweeplab.sweeps.open_sweeps)."""
        ended(self)
        if config.export.onnx:
            prepare_export()
        recorder = this_process.get(False)
        for error in recorder.wait(raise_errors=False):  # a sequential sweep's records, done beside its jobs
            if not isinstance(error, RecorderGone):
                log.error(f"recording failed: {masked_text(typed_line(error))}", exc_info=error)
        if recorder.lost:
            sweep = f"the same command with hydra.sweep.dir={Path(config.hydra.sweep.dir).resolve()}"
            for said in keep_undelivered(recorder, lambda run: sweep):
                print(f"warning: {said}", file=sys.stderr)
            recorder = this_process.get(True)  # a new one, for the parent run's end
        parent_id = self.parent()
        tags = {}
        interrupted = isinstance(sys.exc_info()[1], KeyboardInterrupt)  # Ctrl-C or SIGTERM
        results = sweep_results(Path(config.hydra.sweep.dir))
        if not interrupted and config.hydra.launcher._target_ in (BASIC_LAUNCHER, *ON_THIS_MACHINE):
            retime_front(Path(config.hydra.sweep.dir), results)
            results = sweep_results(Path(config.hydra.sweep.dir))
        best = best_result(results)
        if results and (stopped := stopped_early(Path(config.hydra.sweep.dir), results)):
            tags[SWEEP_STOPPED_TAG] = stopped
        if config.export.onnx and best is not None and not interrupted:
            if export_best_job(config, best, parent_id, this_process.get(True, EXPORT_WARM_UP)):
                tags[EXPORTED_JOB_TAG] = str(best.job)
        if config.trainer.keep_checkpoints == KEEP_NONE and not interrupted:
            discard_sweep_checkpoints(Path(config.hydra.sweep.dir))
        if parent_id is not None:
            if config.hydra.sweeper._target_ == OPTUNA_SWEEPER and not interrupted:
                recorder.submit(Remote.LOG_SEARCH_INSIGHT, self.uri, parent_id, config.hydra.sweeper.storage,
                                config.hydra.sweeper.study_name, objectives(config.optimized_metric),
                                [{"job": job.job, "objectives": job.objectives} for job in front(results)])
            recorder.submit(Remote.END_SWEEP, self.uri, parent_id, tags)
            recorder.wait()
            print(f"MLflow sweep run {parent_id} in {masked_text(self.uri)}", file=sys.stderr)
            self.parent_id = None


def prepare_export() -> None:
    """What the best job's export imports (torch; onnx, 0.6 s, which TorchScript's exporter imports when it writes),
    imported while this process waits: for jobs in other processes, or for the recorder to complete the last jobs'
    records."""

    def import_all() -> None:
        for module in ("sweeplab.export.from_checkpoint", "onnx"):
            importlib.import_module(module)

    threading.Thread(target=import_all, daemon=True).start()


def export_best_job(config: DictConfig, best: JobResult, parent_id: str | None, recorder: Recorder) -> bool:
    """The best job's model to ONNX, checked, and logged to its MLflow run: what a sweep defers to its end.

    A failure is one line: the sweep's results stand, and `sweeplab export <run dir>` can try again.
    """
    from sweeplab.export.from_checkpoint import export_checkpoint  # torch, in the launching process only now

    run_dir = Path(config.hydra.sweep.dir) / str(best.job)

    def record(export_record) -> None:
        recorder.submit(Remote.LOG_BEST_EXPORT, resolve_uri(config.tracking.uri), parent_id,
                        str(run_dir.resolve()), export_record)

    try:
        export = export_checkpoint(checkpoint_in(run_dir), run_dir / EXPORT_DIR, config.export.num_images)
        verified(export, config.export.tolerance, usable_cores(), recorder, record if parent_id else None,
                 log_model=config.tracking.log_model, registered_name=config.tracking.register_model)
    except UserError as error:
        print(f"error: exporting the best job ({run_dir}) failed: {error}; retry with `sweeplab export {run_dir}`",
              file=sys.stderr)
        return False
    print(f"Exported the best job, {run_dir}, to {export.files[0]}")
    return True
