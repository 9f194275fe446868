"""sweeplab's grid (`hydra/sweeper=sweeplab_grid`, what `-m` uses unless told): Hydra's basic sweeper, whose jobs'
configs are composed once per structure and given their values (sweeplab.sweeps.trial_configs), not composed anew
for every job; with `sweep.confirm.top` set, the jobs that confirm its best configurations instead of the grid
(sweeplab.sweeps.confirm). It lives in `hydra_plugins` because Hydra only instantiates sweepers it discovered there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from sweeplab.runs.results import sweep_results
from sweeplab.sweeps.confirm import confirm_jobs
from sweeplab.sweeps.job_pools import pool_for
from sweeplab.sweeps.preflight import planned_jobs
from sweeplab.sweeps.trial_configs import TrialConfigs


class SweeplabGridSweeper(BasicSweeper):
    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        context = HydraContext(config_loader=TrialConfigs(hydra_context.config_loader),
                               callbacks=hydra_context.callbacks)
        super().setup(hydra_context=context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.confirm() if self.config.sweep.confirm.top else super().sweep(arguments)

    def confirm(self) -> None:
        """The confirming jobs, as many at once as the launcher runs side by side: unfinished ones again in their own
        run dirs, new ones numbered after every job of the grid (those it would run on resuming included)."""
        results = sweep_results(Path(self.config.hydra.sweep.dir))
        numbers = [len(planned_jobs(self.config) or []) - 1, *(result.job for result in results)]
        next_number = max(number for number in numbers if number is not None) + 1
        pool = pool_for(self.launcher, self.config)
        for job in confirm_jobs(self.config, results, runs_again=lambda result: True):
            if len(pool) >= pool.slots:
                _ = pool.next_done()[1].return_value  # a job that raised raises here, as in Hydra's basic sweeper
            number = job.number if job.number is not None else next_number
            next_number += job.number is None
            pool.submit(number, job.overrides)
        while len(pool):
            _ = pool.next_done()[1].return_value
