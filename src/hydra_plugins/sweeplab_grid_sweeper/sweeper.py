"""sweeplab's grid (`hydra/sweeper=sweeplab_grid`, what `-m` uses unless told): Hydra's basic sweeper, whose jobs'
configs are composed once per structure and given their values (sweeplab.sweeps.trial_configs), not composed anew
for every job. It lives in `hydra_plugins` because Hydra only instantiates sweepers it discovered there."""

from __future__ import annotations

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from sweeplab.sweeps.trial_configs import TrialConfigs


class SweeplabGridSweeper(BasicSweeper):
    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        context = HydraContext(config_loader=TrialConfigs(hydra_context.config_loader),
                               callbacks=hydra_context.callbacks)
        super().setup(hydra_context=context, task_function=task_function, config=config)
