"""An Optuna search over Hydra jobs (`hydra/sweeper=sweeplab_optuna`): ask a batch of trials, launch them as
jobs, tell the study how each ended. Only this sweeper tells; a job reports its epochs (sweeplab.sweeps.pruning).

- Trial number = job number = run dir name: a trial's run dir, its MLflow child and its study entry agree.
- The study is stored and resumable: a re-run of the command continues it (finished trials count towards
  `n_trials`); trials cut off while RUNNING run again in their own run dir, where the job resumes from its
  checkpoint; a command whose search space or direction differs from the stored study's is refused.
- The direction follows `optimized_metric` (accuracies maximised, losses minimised).
- A job that fails is a FAIL trial and the search goes on; one its pruner stopped says so on its trial
  (sweeplab.sweeps.pruning), and is a PRUNED trial.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from omegaconf import DictConfig
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)
from optuna.trial import TrialState

from sweeplab.config.targets import SEARCH_TARGETS, trusted_instantiate
from sweeplab.core.errors import UserError, first_line
from sweeplab.core.vocabulary import PRUNED_AT, RUNNING, metric_mode
from sweeplab.sweeps.results import read_result

log = logging.getLogger(__name__)
DONE = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
SPACE_ATTR = "sweeplab.search_space"  # the study's search space, as the command that created it gave it
SQLITE_BUSY_SECONDS = 60  # parallel jobs report to one sqlite study: wait for a lock rather than fail


class Search:
    def __init__(self, config: DictConfig, launcher: Any) -> None:
        self.options = config.hydra.sweeper
        self.launcher = launcher
        self.sweep_dir = Path(config.hydra.sweep.dir)
        self.direction = "maximize" if metric_mode(config.optimized_metric) == "max" else "minimize"

    def run(self, arguments: list[str]) -> None:
        if not self.options.storage or self.options.n_jobs < 1:
            raise UserError("an Optuna search needs hydra.sweeper.storage (its jobs report to the stored study, "
                            "e.g. sqlite:///optuna.db) and hydra.sweeper.n_jobs >= 1")
        declared = [f"{key}={value}" for key, value in (self.options.params or {}).items()]
        space, fixed = search_space(declared + arguments)
        study = open_study(self.options, self.direction, space)
        self.finish_cut_off_trials(study, fixed)
        done = len(study.get_trials(deepcopy=False, states=DONE))
        if done:
            log.info(f"Study {study.study_name}: {done} trials done before, "
                     f"{max(0, self.options.n_trials - done)} to go")
            study.sampler.reseed_rng()  # a seeded sampler would suggest again what it suggested before
        to_go = max(0, self.options.n_trials - done)
        while to_go > 0:
            trials = [study.ask(space) for _ in range(min(self.options.n_jobs, to_go))]
            if [t.number for t in trials] != list(range(trials[0].number, trials[0].number + len(trials))):
                raise UserError(f"another command is adding trials to study {study.study_name!r} at the same time: "
                                "run one search per study at once (its job numbers are its trial numbers)")
            returns = self.launcher.launch([trial_overrides(t.params, fixed) for t in trials],
                                           initial_job_idx=trials[0].number)
            states = [self.tell(study, trial.number, job) for trial, job in zip(trials, returns, strict=True)]
            self.check_failures(states)
            to_go -= len(trials)
        self.report_best(study)

    def tell(self, study: optuna.Study, number: int, job: Any) -> TrialState:
        """How the job ended, for the study: PRUNED (the job said so on its trial), COMPLETE with its value, or
        FAIL."""
        if PRUNED_AT in study.get_trials(deepcopy=False)[number].user_attrs:
            study.tell(number, state=TrialState.PRUNED)
            return TrialState.PRUNED
        try:
            value = float(job.return_value)
        except Exception as error:  # the job raised: Hydra re-raises it here
            log.warning(f"Trial {number} failed: {first_line(error)}")
            value = math.nan
        state = TrialState.COMPLETE if math.isfinite(value) else TrialState.FAIL
        study.tell(number, value if state == TrialState.COMPLETE else None, state=state)
        return state

    def check_failures(self, states: list[TrialState]) -> None:
        failed = states.count(TrialState.FAIL)
        if failed / len(states) > self.options.max_failure_rate:
            raise UserError(f"{failed} of {len(states)} trials failed, more than "
                            f"hydra.sweeper.max_failure_rate={self.options.max_failure_rate}: the search stops "
                            "(each trial's reason is in its run dir's result.json)")

    def finish_cut_off_trials(self, study: optuna.Study, fixed: list[str]) -> None:
        """Trials still RUNNING from an interrupted search run again in their own run dirs (their jobs resume);
        those the study has an outcome for but whose record was cut off (result.json not final) complete it."""
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
            previous = read_result(self.sweep_dir / str(trial.number))
            if previous is not None and previous.status == RUNNING:
                log.info(f"Trial {trial.number}'s record was cut off: completing it")
                self.launcher.launch([trial_overrides(trial.params, fixed)], initial_job_idx=trial.number)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            log.info(f"Trial {trial.number} was cut off: running it again")
            (job,) = self.launcher.launch([trial_overrides(trial.params, fixed)], initial_job_idx=trial.number)
            self.tell(study, trial.number, job)

    def report_best(self, study: optuna.Study) -> None:
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not finished:
            log.error("No trial completed")
            return
        log.info(f"Best trial {study.best_trial.number}: {study.best_value:.4g} with {study.best_params}")


def search_space(arguments: list[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """Hydra's override grammar as Optuna distributions (choice, interval, tag(log, interval), range); the
    arguments that are not sweeps stay overrides every trial gets, and win over a declared search dimension."""
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(arguments):
        key = override.get_key_element()
        if override.is_sweep_override():
            space[key] = distribution(override)
            fixed.pop(key, None)
        else:
            space.pop(key, None)
            fixed[key] = override.input_line or f"{key}={override.get_value_element_as_str()}"
    return space, list(fixed.values())


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


def open_study(options: DictConfig, direction: str, space: dict[str, BaseDistribution]) -> optuna.Study:
    """The stored study (created on first use) with the configured sampler and pruner; refused when the
    command's search space or direction is not the one the study was made with."""
    study = optuna.create_study(
        study_name=options.study_name, storage=open_storage(options.storage), direction=direction,
        sampler=trusted_instantiate(options.sampler, trusted=SEARCH_TARGETS),
        pruner=trusted_instantiate(options.pruner, trusted=SEARCH_TARGETS), load_if_exists=True,
    )
    wanted = as_json(space)
    trials = study.get_trials(deepcopy=False)
    stored = study.user_attrs.get(SPACE_ATTR, as_json(trials[0].distributions) if trials else None)
    if stored is None:
        study.set_user_attr(SPACE_ATTR, wanted)
    elif stored != wanted or study.direction.name.lower() != direction:
        changed = sorted(k for k in stored.keys() | wanted.keys() if stored.get(k) != wanted.get(k)) or ["direction"]
        raise UserError(f"study {options.study_name!r} in {options.storage} was made with another search space "
                        f"({', '.join(changed)} differ): name a new study with hydra.sweeper.study_name=..., or "
                        "run the command that made it")
    return study


def as_json(space: dict[str, BaseDistribution]) -> dict[str, Any]:
    return {name: json.loads(distribution_to_json(d)) for name, d in space.items()}


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """sqlite with a busy timeout: the jobs of a parallel search write their epochs to it at once."""
    if url.startswith("sqlite"):
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": SQLITE_BUSY_SECONDS}})
    return optuna.storages.get_storage(url)

