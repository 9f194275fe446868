"""The study side of the resumable Optuna sweeper (see sweeper.py), imported only when a search runs."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import optuna
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import DictConfig
from optuna.trial import TrialState

from sweeplab.sweeps.results import read_result
from sweeplab.vocabulary import RUNNING, metric_mode

log = logging.getLogger(__name__)
DONE = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


class ResumableStudy(OptunaSweeperImpl):
    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.direction = "maximize" if metric_mode(config.optimized_metric) == "max" else "minimize"

    def sweep(self, arguments: list[str]) -> None:
        if self.storage:
            study = optuna.create_study(study_name=self.study_name, storage=self.storage, sampler=self.sampler,
                                        direction=self.direction, load_if_exists=True)
            self._finish_cut_off_trials(study, arguments)
            done = len(study.get_trials(deepcopy=False, states=DONE))
            if done:
                log.info(f"Study {self.study_name}: {done} trials done before, {max(0, self.n_trials - done)} to go")
                self.sampler.reseed_rng()  # a seeded sampler would replay the trials it suggested before
            self.n_trials = max(0, self.n_trials - done)
        try:
            super().sweep(arguments)
        except ValueError as error:  # Optuna's best_trial when no trial completed; the jobs' table says why
            if "No trials are completed yet" not in str(error):
                raise
            log.error("No trial completed")

    def _configure_trials(self, trials: list[optuna.Trial], *args: Any) -> Any:
        self.job_idx = trials[0].number  # a batch asks consecutive trials; launch() numbers jobs from here
        return super()._configure_trials(trials, *args)

    def _finish_cut_off_trials(self, study: optuna.Study, arguments: list[str]) -> None:
        """Run trials still RUNNING from an interrupted search again, in their own job dirs; and trials the
        study has a value for but whose record was cut off (result.json not final): they resume to record."""
        _, _, fixed_overrides = create_params_from_overrides(self._parse_sweeper_params_config() + arguments)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
            previous = read_result(Path(self.config.hydra.sweep.dir) / str(trial.number))
            if previous is not None and previous.status == RUNNING:
                log.info(f"Trial {trial.number}'s record was cut off: completing it")
                self._relaunch(trial, fixed_overrides)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            log.info(f"Trial {trial.number} was cut off: running it again")
            result = self._relaunch(trial, fixed_overrides)
            try:
                value = float(result.return_value)
            except Exception as error:  # the job raised: Hydra re-raises it here
                log.warning(f"Trial {trial.number} failed: {error}")
                value = math.nan
            state = TrialState.COMPLETE if math.isfinite(value) else TrialState.FAIL
            study.tell(trial.number, value if state == TrialState.COMPLETE else None, state=state)

    def _relaunch(self, trial: optuna.trial.FrozenTrial, fixed_overrides: list[str]) -> Any:
        params = {**trial.params, **trial.user_attrs}
        overrides = tuple(f"{name}={value}" for name, value in params.items()) + tuple(fixed_overrides)
        (result,) = self.launcher.launch([overrides], initial_job_idx=trial.number)
        return result
