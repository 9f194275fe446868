"""A job's outcome, written in its run dir as it goes: what resume and the end-of-sweep table read.

`result.json` says RUNNING while a job trains, then FINISHED (with the best value of the optimized
metric), FAILED (with the reason) or KILLED. A job killed outright (SIGKILL, a lost node) stays
RUNNING on disk, which is how a re-run of the sweep knows to continue it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

RESULT_FILE = "result.json"
FINISHED, FAILED, KILLED, RUNNING = "FINISHED", "FAILED", "KILLED", "RUNNING"


@dataclass
class JobResult:
    status: str
    overrides: list[str]
    metric: str
    value: float | None = None  # best value of `metric` over the epochs
    reason: str | None = None  # why it failed
    job: int | None = None  # the Hydra job number (the Optuna trial number in an Optuna search)
    seconds: float | None = None  # wall time of this attempt

    @property
    def objective(self) -> float:
        """What the job returns to the sweeper: NaN marks a failed trial (Optuna records it as FAIL)."""
        return self.value if self.status == FINISHED and self.value is not None else math.nan


def write_result(run_dir: Path, result: JobResult) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    temporary = run_dir / f".{RESULT_FILE}.tmp"
    temporary.write_text(json.dumps(asdict(result), indent=1))
    os.replace(temporary, run_dir / RESULT_FILE)


def read_result(run_dir: Path) -> JobResult | None:
    path = run_dir / RESULT_FILE
    return JobResult(**json.loads(path.read_text())) if path.is_file() else None


def check_same_job(previous: JobResult, overrides: list[str], run_dir: Path) -> None:
    """A run dir is resumed only by the job that started it."""
    from sweeplab.errors import UserError

    if sorted(previous.overrides) != sorted(overrides):
        raise UserError(
            f"{run_dir} already holds a different job ({' '.join(previous.overrides) or 'no overrides'}): "
            "to resume a sweep re-run its exact command; otherwise leave hydra.sweep.dir/hydra.run.dir at default"
        )


def sweep_results(sweep_dir: Path) -> list[JobResult]:
    """Every job under a sweep dir, in job order."""
    results = [read_result(path.parent) for path in sweep_dir.glob(f"*/{RESULT_FILE}")]
    return sorted((r for r in results if r), key=lambda r: (r.job is None, r.job))


def overrides_dict(overrides: list[str]) -> dict[str, str]:
    """`["optimizer.lr=0.01", "+x=1"]` -> `{"optimizer.lr": "0.01", "x": "1"}`."""
    pairs = (item.split("=", 1) for item in overrides)
    return {key.lstrip("+~"): value for key, value in (pair for pair in pairs if len(pair) == 2)}


def varying_keys(jobs: list[dict[str, str]]) -> list[str]:
    """The keys whose value differs between jobs: what a sweep swept."""
    return sorted({key for job in jobs for key in job if len({other.get(key) for other in jobs}) > 1})


def best_result(results: list[JobResult]) -> JobResult | None:
    from sweeplab.config import metric_mode

    done = [r for r in results if r.status == FINISHED and r.value is not None]
    if not done:
        return None
    pick = max if metric_mode(done[0].metric) == "max" else min
    return pick(done, key=lambda r: r.value)
