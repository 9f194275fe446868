"""An Optuna search over Hydra jobs (`hydra/sweeper=sweeplab_optuna`): ask for a trial, launch it as a job, tell
the study how it ended, ask for the next. Only this sweeper tells; a job reports its epochs (sweeplab.sweeps.pruning).

- Steady state: as many trials run at once as the launcher runs jobs side by side (sweeplab.sweeps.job_pools),
  and the moment one ends the study hears of it and the next trial starts; the basic launcher runs one at a time.
- Trial number = job number = run dir name: a trial's run dir, its MLflow child and its study entry agree.
- The study is stored and resumable: a re-run of the command continues it (finished trials count towards
  `n_trials`, and the seconds spent count towards `timeout`); trials cut off while RUNNING run again in their own
  run dir, where the job resumes from its checkpoint; a command whose search space or direction differs from the
  stored study's is refused.
- Budgets: no trial starts once `timeout` seconds are spent or a finished trial reaches `target` (trials
  running then finish); the reason is kept with the study and shown by the table and the parent run.
- A job that fails is a FAIL trial and the search goes on, unless more than `max_failure_rate` of the last trials
  (as many as run at once) failed; one its pruner stopped is a PRUNED trial.
- Confirming (`sweep.confirm`, sweeplab.sweeps.confirm): instead of searching, the best configurations' new seeds run
  as trials of the study, enqueued with their configuration's params and marked with their seed (CONFIRM_SEED), so
  the study numbers them and a later trial never takes their number; they are never pruned and do not count
  towards `n_trials`.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from hydra.core.utils import JobReturn
from omegaconf import DictConfig
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)
from optuna.trial import FrozenTrial, TrialState

from sweeplab.config.targets import SEARCH_TARGETS, trusted_instantiate
from sweeplab.core.atomic import write_text_atomically
from sweeplab.core.errors import UserError, first_line
from sweeplab.core.vocabulary import (
    CONFIRM_SEED,
    FINISHED,
    PRUNED,
    RUNNING,
    SEARCH_FILE,
    metric_mode,
    objectives,
)
from sweeplab.runs.results import JobResult, read_result, sweep_results
from sweeplab.sweeps.confirm import confirm_jobs, with_seed
from sweeplab.sweeps.job_pools import Pool, pool_for, trials_in_flight
from sweeplab.tracking.store import sqlite_error

log = logging.getLogger(__name__)
DONE = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
SPACE_ATTR = "sweeplab.search_space"  # the study's search space, as the command that created it gave it
SECONDS_ATTR = "sweeplab.seconds"  # wall seconds the study's searches have spent: what `timeout` counts
STOPPED_ATTR = "sweeplab.stopped"  # why the last search stopped before n_trials (a budget, failures)
SWEEP_DIR_ATTR = "sweeplab.sweep_dir"  # where the study's trials' run dirs are: a larger n_trials continues there
NO_PRUNING = "optuna.pruners.NopPruner"
SQLITE_BUSY_SECONDS = 60  # parallel jobs report to one sqlite study: wait for a lock rather than fail


class Search:
    def __init__(self, config: DictConfig, launcher: Any) -> None:
        self.config = config
        self.options = config.hydra.sweeper
        self.launcher = launcher
        self.sweep_dir = Path(config.hydra.sweep.dir)
        self.metrics = objectives(config.optimized_metric)
        self.directions = ["maximize" if metric_mode(metric) == "max" else "minimize" for metric in self.metrics]
        self.asked: dict[int, optuna.Trial | None] = {}  # running jobs by number: their trial, or None (a record)
        self.outcomes: list[TrialState] = []  # how each trial this command told ended, in order
        self.last_asked: int | None = None

    def run(self, arguments: list[str]) -> None:
        """The search, its options checked already (check_search, from the sweep's preflight)."""
        declared = [f"{key}={value}" for key, value in (self.options.params or {}).items()]
        space, fixed = search_space(declared + arguments)
        pool = pool_for(self.launcher, self.config)
        study = open_study(self.options, self.directions, space, self.sweep_dir)
        confirming = bool(self.config.sweep.confirm.top)
        budget = Budget(study, self.options.get("timeout"), None if confirming else self.options.get("target"),
                        self.directions[0])
        self.relaunch_cut_off_trials(study, fixed, pool, budget)
        if confirming:
            self.confirm(study, space, pool, budget)
        to_go = 0 if confirming else self.trials_to_go(study)
        while to_go or len(pool):
            while to_go and len(pool) < pool.slots and not budget.stopped and not self.failing(pool.slots):
                trial = self.ask(study, space)
                self.asked[trial.number] = trial
                pool.submit(trial.number, trial_overrides(trial.params, fixed))
                to_go -= 1
            if not len(pool):
                break
            self.collect(study, pool, budget)
        failure = self.failure_line(pool.slots) if self.failing(pool.slots) else None
        budget.close(failure, self.sweep_dir)
        if failure:
            raise UserError(failure)
        self.report_best(study)

    def trials_to_go(self, study: optuna.Study) -> int:
        """n_trials less those done before and those cut off and running again now (confirming trials aside)."""
        done = len(searched(study.get_trials(deepcopy=False, states=DONE))) + sum(
            t is not None and CONFIRM_SEED not in t.user_attrs for t in self.asked.values())
        if done:
            log.info(f"Study {study.study_name}: {done} trials done before, "
                     f"{max(0, self.options.n_trials - done)} to go")
            study.sampler.reseed_rng()  # a seeded sampler would suggest again what it suggested before
        return max(0, self.options.n_trials - done)

    def ask(self, study: optuna.Study, space: dict[str, BaseDistribution]) -> optuna.Trial:
        trial = study.ask(space)
        if self.last_asked is not None and trial.number != self.last_asked + 1:
            raise UserError(f"another command is adding trials to study {study.study_name!r} at the same time: "
                            "run one search per study at once (its job numbers are its trial numbers)")
        self.last_asked = trial.number
        return trial

    def confirm(self, study: optuna.Study, space: dict[str, BaseDistribution], pool: Pool, budget: Budget) -> None:
        """The confirming trials (those cut off run again already), as many at once as the pool runs; the loop in
        `run` collects the last."""
        params = {trial.number: trial.params for trial in study.get_trials(deepcopy=False)}
        for job in confirm_jobs(self.config, sweep_results(self.sweep_dir), lambda result: result.job in self.asked):
            if job.number is not None:  # running again already
                continue
            while len(pool) >= pool.slots:
                self.collect(study, pool, budget)
            if budget.stopped or self.failing(pool.slots):
                break
            study.enqueue_trial(params[job.example.job], user_attrs={CONFIRM_SEED: job.seed})
            trial = self.ask(study, space)
            self.asked[trial.number] = trial
            pool.submit(trial.number, job.overrides)

    def collect(self, study: optuna.Study, pool: Pool, budget: Budget) -> None:
        """The next job to end: its trial told (a job that only completed a record has nothing to tell)."""
        number, job = pool.next_done()
        trial = self.asked.pop(number)
        if trial is not None:
            state, values = self.tell(study, trial, job)
            self.outcomes.append(state)
            budget.told(number, state, values)

    def tell(self, study: optuna.Study, trial: optuna.Trial, job: JobReturn) -> tuple[TrialState, list[float]]:
        """How the job ended, for the study: PRUNED (its pruner stopped it), COMPLETE with its value, or FAIL."""
        try:
            result: JobResult = job.return_value
        except Exception as error:  # the job raised: Hydra re-raises it here
            log.warning(f"Trial {trial.number} failed: {first_line(error)}")
            study.tell(trial, state=TrialState.FAIL)
            return TrialState.FAIL, []
        if result.status == PRUNED:
            study.tell(trial, state=TrialState.PRUNED)
            return TrialState.PRUNED, []
        values = [result.objective] if len(self.metrics) == 1 else [
            (result.objectives or {}).get(metric, math.nan) if result.status == FINISHED else math.nan
            for metric in self.metrics]
        state = TrialState.COMPLETE if all(math.isfinite(value) for value in values) else TrialState.FAIL
        study.tell(trial, values if state == TrialState.COMPLETE else None, state=state)
        return state, values if state == TrialState.COMPLETE else []

    def failing(self, window: int) -> bool:
        """More than max_failure_rate of the last `window` trials (those run at once) failed."""
        last = self.outcomes[-window:]
        return bool(last) and last.count(TrialState.FAIL) / len(last) > self.options.max_failure_rate

    def failure_line(self, window: int) -> str:
        last = self.outcomes[-window:]
        return (f"{last.count(TrialState.FAIL)} of the last {len(last)} trials failed, more than "
                f"hydra.sweeper.max_failure_rate={self.options.max_failure_rate}: the search stops (each trial's "
                "reason is in its run dir's result.json)")

    def relaunch_cut_off_trials(self, study: optuna.Study, fixed: list[str], pool: Pool, budget: Budget) -> None:
        """Trials still RUNNING from an interrupted search run again in their own run dirs (their jobs resume, and
        are told as they end); those the study has an outcome for but whose record was cut off (result.json not
        final) complete it."""
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
            previous = read_result(self.sweep_dir / str(trial.number))
            if previous is not None and previous.status == RUNNING:
                log.info(f"Trial {trial.number}'s record was cut off: completing it")
                self.launch_again(study, trial.number, None, job_overrides(trial, fixed), pool, budget)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            log.info(f"Trial {trial.number} was cut off: running it again")
            running = optuna.trial.Trial(study, trial._trial_id)  # the live trial, to tell (Optuna's own handle)
            self.launch_again(study, trial.number, running, job_overrides(trial, fixed), pool, budget)

    def launch_again(self, study: optuna.Study, number: int, trial: optuna.Trial | None, overrides: list[str],
                     pool: Pool, budget: Budget) -> None:
        if len(pool) >= pool.slots:
            self.collect(study, pool, budget)
        self.asked[number] = trial
        pool.submit(number, overrides)

    def report_best(self, study: optuna.Study) -> None:
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not finished:
            log.error("No trial completed")
            return
        if len(self.metrics) > 1:
            front = sorted(trial.number for trial in study.best_trials)
            log.info(f"Pareto front of {', '.join(self.metrics)}: trials {', '.join(map(str, front))}")
        else:
            log.info(f"Best trial {study.best_trial.number}: {study.best_value:.4g} with {study.best_params}")


class Budget:
    """What a search may still spend: `timeout` wall seconds (counting the study's earlier searches) and `target`,
    a value that, once a finished trial reaches it, ends the asking. Kept with the study as trials end."""

    def __init__(self, study: optuna.Study, timeout: float | None, target: float | None, direction: str) -> None:
        self.study, self.timeout, self.target, self.direction = study, timeout, target, direction
        self.spent_before = float(study.user_attrs.get(SECONDS_ATTR, 0.0))
        self.started = time.monotonic()
        self.reason: str | None = None
        study.set_user_attr(STOPPED_ATTR, None)

    @property
    def seconds(self) -> float:
        return self.spent_before + time.monotonic() - self.started

    @property
    def stopped(self) -> bool:
        if self.reason is None and self.timeout is not None and self.seconds >= self.timeout:
            self.reason = f"hydra.sweeper.timeout={self.timeout:g} s spent ({self.seconds:.0f} s)"
        return self.reason is not None

    def told(self, number: int, state: TrialState, values: list[float]) -> None:
        self.study.set_user_attr(SECONDS_ATTR, self.seconds)
        if self.target is not None and state == TrialState.COMPLETE and self.reason is None and reaches(
                values[0], self.target, self.direction):
            self.reason = f"hydra.sweeper.target={self.target:g} reached by trial {number} ({values[0]:.4g})"

    def close(self, failure: str | None, sweep_dir: Path) -> None:
        """The seconds spent, and why the search stopped early (if it did), kept with the study and in the sweep
        dir's search.json, which the table and the parent run read."""
        self.study.set_user_attr(SECONDS_ATTR, self.seconds)
        reason = self.reason or failure
        if reason:
            self.study.set_user_attr(STOPPED_ATTR, reason)
            log.info(f"The search stopped: {reason}")
        summary = {"study": self.study.study_name, "trials": len(self.study.get_trials(deepcopy=False)),
                   "seconds": round(self.seconds, 1), "stopped": reason}
        if sweep_dir.is_dir():
            write_text_atomically(sweep_dir / SEARCH_FILE, json.dumps(summary, indent=1))


def reaches(value: float, target: float, direction: str) -> bool:
    return value >= target if direction == "maximize" else value <= target


def search_space(arguments: list[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """Hydra's override grammar as Optuna distributions (choice, interval, tag(log, interval), range); the
    arguments that are not sweeps stay overrides every trial gets, and win over a declared search dimension."""
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(arguments):
        key = override.get_key_element()
        if override.is_sweep_override():
            space[key] = checked_distribution(override)
            fixed.pop(key, None)
        else:
            space.pop(key, None)
            fixed[key] = override.input_line or f"{key}={override.get_value_element_as_str()}"
    return space, list(fixed.values())


def checked_distribution(override: Override) -> BaseDistribution:
    """The override's distribution; bounds Optuna refuses (reversed, log from 0 or below) are one line naming it."""
    try:
        return distribution(override)
    except ValueError as error:
        raise UserError(f"{override.input_line}: {first_line(error).rstrip('.')}: give interval(low, high) with low "
                        "below high (and above 0 under tag(log, ...))") from None


def distribution(override: Override) -> BaseDistribution:
    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if override.is_interval_sweep():
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(int(value.start), int(value.end), log=log_scale)
        return FloatDistribution(float(value.start), float(value.end), log=log_scale)
    if override.is_range_sweep():
        values = list(override.sweep_iterator(transformer=Transformer.encode))
        if all(isinstance(v, int) for v in values) and len(values) > 1 and value.step > 0:
            return IntDistribution(min(values), max(values), step=int(value.step))
        return CategoricalDistribution(values)
    raise UserError(f"{override.input_line}: an Optuna search takes choice(...), interval(...), "
                    "tag(log, interval(...)) or range(...) there")


def trial_overrides(params: dict[str, Any], fixed: Sequence[str]) -> list[str]:
    return [f"{name}={value}" for name, value in params.items()] + list(fixed)


def job_overrides(trial: FrozenTrial, fixed: Sequence[str]) -> list[str]:
    """A stored trial's job: its params, the fixed overrides, and a confirming trial's seed."""
    overrides = trial_overrides(trial.params, fixed)
    return overrides if CONFIRM_SEED not in trial.user_attrs else with_seed(overrides, trial.user_attrs[CONFIRM_SEED])


def searched(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials the search asked for: those that confirm a configuration aside."""
    return [trial for trial in trials if CONFIRM_SEED not in trial.user_attrs]


def check_multi_objective(options: DictConfig) -> None:
    """Several objectives: Optuna's multi-objective TPE; its pruners and CMA-ES take one objective only."""
    if options.pruner._target_ != NO_PRUNING:
        raise UserError("pruning needs one objective (Optuna's pruners compare one value an epoch): with several in "
                        "optimized_metric, use hydra/sweeper/pruner=none")
    if options.sampler._target_ == "optuna.samplers.CmaEsSampler":
        raise UserError("CMA-ES optimizes one objective: with several in optimized_metric, use "
                        "hydra/sweeper/sampler=tpe (Optuna's multi-objective TPE) or random")


def open_study(options: DictConfig, directions: list[str], space: dict[str, BaseDistribution],
               sweep_dir: Path) -> optuna.Study:
    """The stored study (created on first use, in `sweep_dir`) with the configured sampler and pruner; refused when
    the command's search space or direction is not the one the study was made with."""
    study = optuna.create_study(
        study_name=options.study_name, storage=open_storage(options.storage), directions=directions,
        sampler=trusted_instantiate(options.sampler, trusted=SEARCH_TARGETS),
        pruner=trusted_instantiate(options.pruner, trusted=SEARCH_TARGETS), load_if_exists=True,
    )
    if not check_stored(study, options, directions, space):
        study.set_user_attr(SPACE_ATTR, as_json(space))
        study.set_user_attr(SWEEP_DIR_ATTR, str(sweep_dir.resolve()))
    return study


def check_stored(study: optuna.Study, options: DictConfig, directions: list[str],
                 space: dict[str, BaseDistribution]) -> bool:
    """Whether the study holds a search already, refused unless it is this command's (space and directions)."""
    wanted = as_json(space)
    trials = study.get_trials(deepcopy=False)
    stored = study.user_attrs.get(SPACE_ATTR, as_json(trials[0].distributions) if trials else None)
    if stored is not None and (stored != wanted or [d.name.lower() for d in study.directions] != directions):
        changed = sorted(k for k in stored.keys() | wanted.keys() if stored.get(k) != wanted.get(k)) or ["direction"]
        raise UserError(f"study {options.study_name!r} in {options.storage} was made with another search space "
                        f"({', '.join(changed)} differ): name a new study with hydra.sweeper.study_name=..., or "
                        "run the command that made it")
    return stored is not None


def check_search(config: DictConfig) -> None:
    """What a search can be refused for, found before anything starts (no sweep dir, no parent run): its trials,
    space, objectives and launcher, and the stored study it would continue (its space, its sweep dir). A study with
    nothing left to do says so, and the command ends there (exit 0)."""
    options = config.hydra.sweeper
    if options.n_trials < 1:
        raise UserError(f"hydra.sweeper.n_trials={options.n_trials} is invalid: a search runs at least 1 trial")
    if not options.storage:
        raise UserError("an Optuna search needs hydra.sweeper.storage (its jobs report to the stored study, "
                        "e.g. sqlite:///optuna.db)")
    declared = [f"{key}={value}" for key, value in (options.params or {}).items()]
    space, _ = search_space(declared + list(config.hydra.overrides.task))
    metrics = objectives(config.optimized_metric)
    if len(metrics) > 1:
        check_multi_objective(options)
    trials_in_flight(config.hydra.launcher._target_, config)
    study = stored_study(options)
    if study is not None:
        check_continued(study, options, config, space)


def check_continued(study: optuna.Study, options: DictConfig, config: DictConfig,
                    space: dict[str, BaseDistribution]) -> None:
    directions = ["maximize" if metric_mode(m) == "max" else "minimize" for m in objectives(config.optimized_metric)]
    check_stored(study, options, directions, space)
    made_in, sweep_dir = study.user_attrs.get(SWEEP_DIR_ATTR), str(Path(config.hydra.sweep.dir).resolve())
    if made_in and made_in != sweep_dir:
        raise UserError(f"study {options.study_name!r} was made in {made_in}: continue it there, with "
                        f"hydra.sweep.dir={made_in} (its trials' run dirs and MLflow parent run are there), or name "
                        "a new study with hydra.sweeper.study_name=...")
    done = len(searched(study.get_trials(deepcopy=False, states=DONE)))
    if done >= options.n_trials and not config.sweep.confirm.top:
        print(f"study {options.study_name!r} has {done} trials done, hydra.sweeper.n_trials={options.n_trials}: "
              "nothing to run (raise n_trials to run more)")
        sys.exit(0)


def stored_study(options: DictConfig) -> optuna.Study | None:
    """The study as stored, read without writing anything; None where there is none yet."""
    path = sqlite_file(options.storage)
    if path is not None and not path.is_file():
        return None
    if path is not None and (problem := sqlite_error(path)):
        raise UserError(f"hydra.sweeper.storage={options.storage}: {problem}")
    try:
        return optuna.load_study(study_name=options.study_name, storage=open_storage(options.storage))
    except KeyError:
        return None


def stored_progress(options: DictConfig) -> list[str]:
    """The stored study's state, read without writing anything (a plan): trials by state, the best, what is left."""
    study = stored_study(options)
    if study is None:
        return [f"the study is new: {options.n_trials} trials to run"]
    trials = study.get_trials(deepcopy=False)
    states = ", ".join(f"{sum(t.state == state for t in trials)} {state.name.lower()}" for state in TrialState
                       if any(t.state == state for t in trials))
    done = sum(t.state in DONE for t in searched(trials))
    lines = [f"stored: {len(trials)} trials ({states}); {max(0, options.n_trials - done)} to go"]
    if any(t.state == TrialState.COMPLETE for t in trials):
        best = [trial.number for trial in study.best_trials]  # the Pareto front where there are several objectives
        lines.append(f"best so far: trial{'s' * (len(best) > 1)} {', '.join(map(str, best))}"
                     + (f" ({study.best_value:.4g})" if len(study.directions) == 1 else " (the Pareto front)"))
    spent = study.user_attrs.get(SECONDS_ATTR)
    budget = f" of hydra.sweeper.timeout={options.timeout:g}" if options.timeout is not None else ""
    return lines + ([f"seconds spent: {spent:.0f}{budget}"] if spent is not None else [])


def sqlite_file(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def as_json(space: dict[str, BaseDistribution]) -> dict[str, Any]:
    return {name: json.loads(distribution_to_json(d)) for name, d in space.items()}


@functools.cache
def open_storage(url: str) -> optuna.storages.BaseStorage:
    """sqlite with a busy timeout: the jobs of a parallel search write their epochs to it at once. One per process:
    a sequential search's jobs and its sweeper share it (opening one costs a tenth of a second)."""
    if url.startswith("sqlite"):
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": SQLITE_BUSY_SECONDS}})
    return optuna.storages.get_storage(url)

