"""sweeplab's Optuna search as a Hydra sweeper (`hydra/sweeper=sweeplab_optuna`); the search is
sweeplab.sweeps.optuna_search.

It lives in `hydra_plugins` because Hydra only instantiates sweepers it discovered there. Hydra
imports this module at every start, so Optuna is imported (with sweeplab.sweeps.optuna_search) only when a
search runs.
"""

from __future__ import annotations

from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from sweeplab.sweeps.trial_configs import TrialConfigs


class SweeplabOptunaSweeper(Sweeper):
    def __init__(self, **options: Any) -> None:
        """The options are read from the config in setup (conf/hydra/sweeper/sweeplab_optuna.yaml)."""

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        context = HydraContext(config_loader=TrialConfigs(hydra_context.config_loader),
                               callbacks=hydra_context.callbacks)
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=context,
                                                                task_function=task_function)

    def sweep(self, arguments: list[str]) -> None:
        from sweeplab.sweeps.optuna_search import Search

        Search(self.config, self.launcher).run(arguments)
