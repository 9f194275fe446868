"""Hydra's Optuna sweeper, made to resume its study and to number jobs by trial.

Three changes, nothing else (sampling, search-space grammar and storage are Hydra's plugin as is):
- job number = Optuna trial number, so a trial's run dir, MLflow tag and study entry agree;
- a re-run of the same search continues its stored study: finished trials count towards
  `n_trials`, and trials cut off mid-run (still RUNNING in the study) run again in their own run
  dir, where the job resumes them from their last checkpoint;
- the direction follows `optimized_metric` (maximize accuracies, minimize losses).

It lives in `hydra_plugins` because Hydra only instantiates sweepers it discovered there. Hydra
imports this module at every start, so Optuna itself is imported (from _study.py) only when a
search runs.
"""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper


class ResumableOptunaSweeper(OptunaSweeper):
    def __init__(self, sampler: Any, direction: Any, storage: Any, study_name: str | None, n_trials: int,
                 n_jobs: int, max_failure_rate: float, custom_search_space: str | None, params: Any) -> None:
        from ._study import ResumableStudy

        sampler = instantiate(
            sampler, _execution_whitelist_=("hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*")
        )
        self.sweeper = ResumableStudy(sampler, direction, storage, study_name, n_trials, n_jobs, max_failure_rate,
                                      custom_search_space, params)
