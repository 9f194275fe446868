"""`python train.py -m ... sweep.plan=true`: what the sweep would run, printed instead of run (nothing is trained,
tracked or written). A grid's every job, its run dir and whether a re-run in that sweep dir would skip, resume or
start it; a search's space, its study as stored, and the trials it would still run; a confirm's jobs."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from sweeplab.core.errors import UserError
from sweeplab.core.vocabulary import RUNNING
from sweeplab.runs.results import ENDED, configuration_of, identity, read_result, sweep_results
from sweeplab.sweeps.confirm import confirm_jobs, numbered
from sweeplab.sweeps.preflight import planned_jobs


def print_plan(config: DictConfig) -> None:
    sweep_dir = Path(config.hydra.sweep.dir)
    jobs = planned_jobs(config)
    if config.sweep.confirm.top:
        lines = confirm_plan(config, sweep_dir, jobs)
    else:
        lines = grid_plan(jobs, sweep_dir) if jobs is not None else search_plan(config)
    print("\n".join([*lines, "sweep.plan=true: nothing was run; drop it to run the sweep"]))


def grid_plan(jobs: list[list[str]], sweep_dir: Path) -> list[str]:
    lines = [f"{len(jobs)} jobs in {sweep_dir}{' (it exists: a re-run continues it)' if sweep_dir.is_dir() else ''}:"]
    for number, overrides in enumerate(jobs):
        shown = " ".join(override for override in overrides if not override.startswith("sweep.")) or "(no overrides)"
        lines.append(f"  job {number}: {shown} -> {sweep_dir / str(number)} "
                     f"[{job_state(sweep_dir / str(number), overrides)}]")
    return lines


def confirm_plan(config: DictConfig, sweep_dir: Path, grid: list[list[str]] | None) -> list[str]:
    """What `sweep.confirm` would run: a grid's jobs by number, a search's as new trials of its study."""
    results = sweep_results(sweep_dir)
    jobs = confirm_jobs(config, results, runs_again=lambda result: grid is not None or result.status == RUNNING)
    places = ([f"job {number}" + (" again" if job.number is not None else "")
               for number, job in numbered(jobs, results, len(grid))] if grid is not None else
              ["again" if job.number is not None else "a new trial" for job in jobs])
    lines = [f"{len(jobs)} jobs confirm the best {config.sweep.confirm.top} configurations of {sweep_dir} "
             f"(until each has {config.sweep.confirm.seeds} finished seeds):"]
    return lines + [f"  {' '.join(configuration_of(job.overrides))} seed={job.seed} -> {place}"
                    for job, place in zip(jobs, places, strict=True)]


def job_state(run_dir: Path, overrides: list[str]) -> str:
    """What a run of the sweep would do with this job: skip it (ended), resume it, or start it."""
    previous = read_result(run_dir)
    if previous is None:
        return "new"
    if identity(previous.overrides) != identity(overrides):
        raise UserError(f"{run_dir} already holds a different job: this sweep dir holds another sweep; pick another "
                        "hydra.sweep.dir")
    return f"skipped: {previous.status.lower()} before" if previous.status in ENDED else \
        f"resumed: {previous.status.lower()} before"


def search_plan(config: DictConfig) -> list[str]:
    """The space as the search reads it, and the stored study's progress (Optuna: only when a search is planned)."""
    from sweeplab.sweeps.optuna_search import search_space, stored_progress

    options = config.hydra.sweeper
    declared = [f"{key}={value}" for key, value in (options.params or {}).items()]
    space, fixed = search_space(declared + list(config.hydra.overrides.task))
    lines = [f"an Optuna search, study {options.study_name!r} in {options.storage}, n_trials={options.n_trials}:"]
    lines += [f"  {name}: {distribution}" for name, distribution in space.items()]
    fixed = [override for override in fixed if not override.startswith("sweep.")]
    lines += [f"  every trial: {' '.join(fixed)}"] if fixed else []
    return lines + [f"  {line}" for line in stored_progress(options)]
