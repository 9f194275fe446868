"""A job's outcome, written in its run dir as it goes: what resume and the end-of-sweep table read.

`result.json` says RUNNING while a job trains, then FINISHED (with the best value of the optimized
metric), FAILED (with the reason) or KILLED. A job killed outright (SIGKILL, a lost node) stays
RUNNING on disk, which is how a re-run of the sweep knows to continue it. The final status is
written by the recorder after the run's MLflow record is complete (sweeplab.task.job), so a job
that says FINISHED is never missing its record.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from sweeplab.config.differences import free_to_change
from sweeplab.core.aggregate import SEED
from sweeplab.core.atomic import write_text_atomically
from sweeplab.core.errors import UserError, first_line
from sweeplab.core.overrides import override_key, overrides_dict, varying_keys
from sweeplab.core.rows import best_first
from sweeplab.core.vocabulary import BEST_CHECKPOINT, CHECKPOINTS_DIR, FINISHED, PRUNED, RESULT_FILE

ENDED = (FINISHED, PRUNED)  # a job that needs nothing more: a re-run of its sweep skips it


@dataclass
class Scores:
    """What a training run returns: the best value of its optimized metric, and its test score if it has one."""

    best: float
    test_acc: float | None = None
    pruned_at: int | None = None  # the last epoch an Optuna search's pruner let the trial train
    objectives: dict[str, float] | None = None  # each of optimized_metric's, where it names several


@dataclass
class JobResult:
    status: str
    overrides: list[str]
    metric: str
    value: float | None = None  # best value of `metric` over the epochs
    test_acc: float | None = None  # the best checkpoint's, on the test split (none: no test split)
    reason: str | None = None  # why it failed
    job: int | None = None  # the Hydra job number (the Optuna trial number in an Optuna search)
    seconds: float | None = None  # wall time of this attempt
    objectives: dict[str, float] | None = None  # each of optimized_metric's, where it names several

    @property
    def objective(self) -> float:
        """What an Optuna search tells its study: NaN for a job that did not finish (its trial FAILs)."""
        return self.value if self.status == FINISHED and self.value is not None else math.nan


def write_result(run_dir: str, result: JobResult) -> None:
    write_text_atomically(Path(run_dir) / RESULT_FILE, json.dumps(asdict(result), indent=1))


def read_result(run_dir: Path) -> JobResult | None:
    """The job's recorded outcome; a damaged file is refused rather than guessed at: resuming it could train
    the wrong job in this dir, starting over would overwrite its checkpoints."""
    path = run_dir / RESULT_FILE
    if not path.exists():
        return None
    if not path.is_file():
        raise UserError(f"{path} is a folder (or another kind of file), not the run's record: remove it to run this "
                        "job again from the start (which overwrites its checkpoints), or pass another run dir")
    try:
        return JobResult(**json.loads(path.read_text()))
    except OSError as error:
        raise UserError(f"{path} cannot be read ({error.strerror}): fix its permissions") from None
    except (ValueError, TypeError) as error:  # not JSON (or not UTF-8), or not a result's fields
        raise UserError(f"{path} is damaged ({first_line(error)}): restore it, or delete it to run this job again "
                        "from the start (which overwrites its checkpoints)") from None


def check_same_job(previous: JobResult, overrides: list[str], run_dir: Path, multirun: bool) -> None:
    """A run dir is resumed only by the job that started it (what the sweep may spend is not the job's)."""
    if identity(previous.overrides) != identity(overrides):
        differ = varying_keys([overrides_dict(previous.overrides), overrides_dict(overrides)])
        said = f"{', '.join(differ) or 'the overrides'} differ; it ran {' '.join(previous.overrides) or 'no overrides'}"
        if multirun:
            raise UserError(f"{run_dir} already holds a different job ({said}): to resume a sweep re-run its exact "
                            "command; otherwise leave hydra.sweep.dir at default")
        raise UserError(f"{run_dir} already holds a different run ({said}): resume it with the overrides it started "
                        "with (tracking, export and the progress bar may change), or leave hydra.run.dir at default "
                        "to start a new run")


def identity(overrides: list[str]) -> list[str]:
    """The overrides that make a job what it is: all but those free to change on resume (tracking, export, the
    progress bar, what the sweep may spend, ...)."""
    return sorted(override for override in overrides if not free_to_change(override_key(override)))


def sweep_results(sweep_dir: Path) -> list[JobResult]:
    """Every job under a sweep dir, in job order."""
    results = [read_result(path.parent) for path in sweep_dir.glob(f"*/{RESULT_FILE}")]
    return sorted((r for r in results if r), key=lambda r: (r.job is None, r.job))


def best_result(results: list[JobResult]) -> JobResult | None:
    """The sweep's best job (what it marks and exports): the best finished one, and where configurations ran several
    seeds, the best seed of the configuration best on average over its seeds (what sweep.best_config names)."""
    configurations = ranked_configurations(results)
    if not configurations:
        return None
    done = [job for jobs in configurations for job in jobs]
    if len(configurations) < len(done):  # seeds were swept: a lucky seed does not pick the configuration
        done = configurations[0]
    return best_first([{"result": r, "value": r.value} for r in done], "value", done[0].metric)[0]["result"]


def ranked_configurations(results: list[JobResult]) -> list[list[JobResult]]:
    """The finished jobs grouped by configuration (in job order), the configuration best on average first."""
    configurations: dict[tuple[str, ...], list[JobResult]] = {}
    for result in results:
        if result.status == FINISHED and result.value is not None:
            configurations.setdefault(configuration_of(result.overrides), []).append(result)
    means = [{"jobs": jobs, "value": statistics.fmean(job.value for job in jobs)}  # type: ignore[misc]
             for jobs in configurations.values()]
    return [row["jobs"] for row in best_first(means, "value", means[0]["jobs"][0].metric)] if means else []


def configuration_of(overrides: list[str]) -> tuple[str, ...]:
    """A job's overrides without its seed and those free to change on resume: what its seed replicates share."""
    return tuple(sorted(f"{key}={value}" for key, value in overrides_dict(overrides).items()
                        if key != SEED and not free_to_change(key)))


def checkpoint_in(run_dir: Path) -> Path:
    """A run dir's best checkpoint (or a folder that holds a best.pt itself)."""
    for candidate in (run_dir / CHECKPOINTS_DIR / BEST_CHECKPOINT, run_dir / BEST_CHECKPOINT):
        if candidate.is_file():
            return candidate
    expected = run_dir / CHECKPOINTS_DIR / BEST_CHECKPOINT
    raise UserError(f"no checkpoint in {run_dir}: expected {expected} (a run writes it after its first epoch)")
