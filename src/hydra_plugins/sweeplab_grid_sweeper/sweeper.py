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
from sweeplab.sweeps.confirm import confirm_jobs, numbered
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
        """The confirming jobs (sweeplab.sweeps.confirm), as many at once as the launcher runs side by side."""
        results = sweep_results(Path(self.config.hydra.sweep.dir))
        jobs = confirm_jobs(self.config, results, runs_again=lambda result: True)
        pool = pool_for(self.launcher, self.config)
        for number, job in numbered(jobs, results, len(planned_jobs(self.config) or [])):
            if len(pool) >= pool.slots:
                _ = pool.next_done()[1].return_value  # a job that raised raises here, as in Hydra's basic sweeper
            pool.submit(number, job.overrides)
        while len(pool):
            _ = pool.next_done()[1].return_value
