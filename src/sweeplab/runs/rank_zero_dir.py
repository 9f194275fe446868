"""One run dir for the processes of one run, torchrun's or a submitit job's tasks: rank 0's. The others write nothing.

Every rank composes the config itself, so each would evaluate `${now:...}` in hydra.run.dir at its own
instant and write its own dir, `.hydra/` and train.log (Lightning-Hydra-Template #393). `OneRunDir`, the
first Hydra callback, forms torchrun's process group, gives every rank rank 0's run dir, and makes the
others followers: no `.hydra/`, no log file, no tracking, export, TensorBoard, profile or progress bar
(sweeplab.task.job keeps result.json and the checkpoints to rank 0).

A sweep's job of several submitit tasks (hydra.launcher.tasks_per_node) has one run dir already: the launcher
resolves the sweep dir once. Hydra sets up each task as the job's own, so `follow_rank_0` makes every task
but the first a follower as its training starts (Hydra has written the same `.hydra/` there by then).
"""

from __future__ import annotations

import logging.config
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from sweeplab.core.errors import UserError, exit_on_user_error
from sweeplab.core.ranks import launched

# A follower's log: warnings and errors, in the terminal only (rank 0's train.log is the run's).
FOLLOWER_LOGGING = {
    "version": 1,
    "formatters": {"simple": {"format": "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "simple", "level": "WARNING"}},
    "root": {"level": "WARNING", "handlers": ["console"]},
    "loggers": {"sweeplab.story": {"handlers": [], "propagate": False}},  # the run's story: rank 0's train.log
    "disable_existing_loggers": False,
}
RECORDS_NOTHING = {"tracking.enabled": False, "tracking.tensorboard": False, "export.onnx": False,
                   "trainer.progress": False, "trainer.profile_steps": 0}


class OneRunDir(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        ranks = launched()
        if ranks is None:
            return
        from sweeplab.training.distributed import from_main, join  # torch: for torchrun's processes only

        join()
        with read_write(config), open_dict(config):
            config.hydra.run.dir = from_main(str(config.hydra.run.dir))
            if not ranks.main:
                config.hydra.output_subdir = None
                config.hydra.job_logging = FOLLOWER_LOGGING
                records_nothing(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if launched():
            exit_on_user_error(refuse_torchrun_sweep)()


def records_nothing(config: DictConfig) -> None:
    for key, value in RECORDS_NOTHING.items():
        OmegaConf.update(config, key, value)


def follow_rank_0(cfg: DictConfig) -> DictConfig:
    """A submitit job's task other than rank 0, from here on: logs as a follower, and records nothing."""
    logging.config.dictConfig(FOLLOWER_LOGGING)
    cfg = cfg.copy()
    records_nothing(cfg)
    return cfg


def refuse_torchrun_sweep() -> None:
    raise UserError("torchrun trains one run on several processes, not a sweep (-m): sweep with `python train.py "
                    "-m ...`, and train each job on several processes with Hydra's submitit launcher "
                    "(hydra/launcher=slurm or submitit_local, hydra.launcher.tasks_per_node=N)")
