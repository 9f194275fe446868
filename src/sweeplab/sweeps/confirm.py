"""Confirming a finished sweep's best configurations with more seeds (`sweeplab confirm`, which re-runs the sweep's
command with `sweep.confirm.top` and `sweep.confirm.seeds`): which configurations, which seeds, which jobs.

The `top` configurations by their mean over finished seeds (a configuration = a job's overrides less its seed)
each get seeds until `seeds` of them have finished: new seeds are the smallest the configuration never ran, set in
place of the seed its overrides name; a configuration's jobs that did not finish run again in their own run dirs
where the sweeper can (a grid's). Light: read in the launching process, before anything launches.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from sweeplab.core.aggregate import SEED
from sweeplab.core.errors import UserError
from sweeplab.core.overrides import override_key, overrides_dict
from sweeplab.core.vocabulary import OPTUNA_SWEEPER, SWEEPLAB_GRID, objectives
from sweeplab.runs.results import JobResult, configuration_of, ranked_configurations, sweep_results

CONFIRMING_SWEEPERS = (SWEEPLAB_GRID, OPTUNA_SWEEPER)


@dataclass
class Confirmation:
    """One of the configurations to confirm: a finished job of it (whose overrides the new seeds take), its finished
    jobs, and those that did not finish."""

    example: JobResult
    finished: list[JobResult]
    unfinished: list[JobResult] = field(default_factory=list)


def confirmations(results: list[JobResult], top: int) -> list[Confirmation]:
    """The `top` configurations by their mean over finished jobs, best first, with their jobs that did not finish."""
    chosen = {configuration_of(jobs[0].overrides): Confirmation(jobs[0], jobs)
              for jobs in ranked_configurations(results)[:top]}
    for result in results:
        confirmation = chosen.get(configuration_of(result.overrides))
        if confirmation is not None and result not in confirmation.finished:
            confirmation.unfinished.append(result)
    return list(chosen.values())


def seed_of(result: JobResult, default_seed: int) -> int:
    return int(overrides_dict(result.overrides).get(SEED, default_seed))


def new_seeds(confirmation: Confirmation, count: int, default_seed: int) -> list[int]:
    """The `count` smallest seeds none of the configuration's jobs ran."""
    used = {seed_of(r, default_seed) for r in confirmation.finished + confirmation.unfinished}
    seeds: list[int] = []
    candidate = 0
    while len(seeds) < count:
        if candidate not in used:
            seeds.append(candidate)
        candidate += 1
    return seeds


def with_seed(overrides: list[str], seed: int) -> list[str]:
    """The overrides with `seed=<seed>` in place of the seed they name (or added where they name none)."""
    keys = [override_key(override) for override in overrides]
    at = keys.index(SEED) if SEED in keys else len(overrides)
    kept = [override for override, key in zip(overrides, keys, strict=True) if key != SEED]
    return [*kept[:at], f"{SEED}={seed}", *kept[at:]]


@dataclass
class ConfirmJob:
    overrides: list[str]
    seed: int
    example: JobResult  # the finished job of the configuration it repeats
    number: int | None = None  # an unfinished job's, run again in its own run dir; None: a new job


def confirm_jobs(config: DictConfig, results: list[JobResult],
                 runs_again: Callable[[JobResult], bool]) -> list[ConfirmJob]:
    """The jobs `sweep.confirm` runs: for each chosen configuration, as many as it lacks finished seeds, first its
    unfinished jobs the sweeper runs again (`runs_again`), then new seeds."""
    jobs: list[ConfirmJob] = []
    for confirmation in chosen_configurations(config, results):
        needed = max(0, config.sweep.confirm.seeds - len(confirmation.finished))
        again = [result for result in confirmation.unfinished if runs_again(result)][:needed]
        jobs += [ConfirmJob(result.overrides, seed_of(result, config.seed), confirmation.example, result.job)
                 for result in again]
        jobs += [ConfirmJob(with_seed(confirmation.example.overrides, seed), seed, confirmation.example)
                 for seed in new_seeds(confirmation, needed - len(again), config.seed)]
    return jobs


def numbered(jobs: list[ConfirmJob], results: list[JobResult], planned: int) -> list[tuple[int, ConfirmJob]]:
    """A grid's confirming jobs by number: an unfinished job's own, new ones after every job the sweep dir holds and
    every one of the `planned` its grid would run (so resuming the grid never meets them)."""
    following = max([planned - 1, *(result.job for result in results if result.job is not None)]) + 1
    news = iter(range(following, following + len(jobs)))
    return [(job.number if job.number is not None else next(news), job) for job in jobs]


def check_confirm(config: DictConfig) -> None:
    """sweep.confirm refused in one line where it cannot run, before anything launches; a sweep whose chosen
    configurations have their seeds already ends here (exit 0)."""
    if config.hydra.sweeper._target_ not in CONFIRMING_SWEEPERS:
        raise UserError(f"sweep.confirm needs sweeplab's grid or Optuna search, not {config.hydra.sweeper._target_}: "
                        "drop hydra/sweeper=... from the command")
    sweep_dir = Path(config.hydra.sweep.dir)
    if not confirm_jobs(config, sweep_results(sweep_dir), runs_again=lambda result: True):
        top, seeds = config.sweep.confirm.top, config.sweep.confirm.seeds
        chosen = "best configuration has" if top == 1 else f"best {top} configurations have"
        each = "" if top == 1 else " each"
        print(f"the {chosen} {seeds} finished seed{'s' * (seeds > 1)}{each} in {sweep_dir}: nothing to run (raise "
              "--top or --seeds to run more)")
        sys.exit(0)


def chosen_configurations(config: DictConfig, results: list[JobResult]) -> list[Confirmation]:
    """The configurations `sweep.confirm` confirms, refused in one line where it cannot."""
    if len(objectives(config.optimized_metric)) > 1:
        raise UserError("confirm ranks configurations by one metric, and this sweep's optimized_metric names several: "
                        "confirm members of its Pareto set by running them again with other seeds yourself")
    chosen = confirmations(results, config.sweep.confirm.top)
    if not chosen:
        raise UserError(f"no job in {config.hydra.sweep.dir} has finished: there is nothing to confirm yet (run or "
                        "resume the sweep first)")
    return chosen
