"""A run dir (or sweep dir) that can be written and is the command's to write, checked before Hydra creates it and
writes `.hydra/` there.

Hydra does that before any of sweeplab's code runs, so its OSError (a file in the way, no permission) would end
the command in a traceback, and a command refused later (a run dir holding another job, a sweep's dir given as a
run's) would already have overwritten the recorded config; `RunDirGuard`, a Hydra callback, says it in one line
first, and nothing on disk changes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from sweeplab.config.checks import check_ranges
from sweeplab.core.errors import UserError, exit_on_user_error
from sweeplab.core.vocabulary import HYDRA_DIR, MULTIRUN_RECORD, RESULT_FILE
from sweeplab.runs.results import check_same_job, read_result


def check_writable(folder: Path, key: str) -> None:
    """`folder`, or the nearest of its parents that exists, must be a folder this user can write in.

    Nothing is created here: a config error found after this check leaves no empty dir behind.
    """
    # os.path's checks, not Path's: a parent this user cannot search must not end in a PermissionError traceback.
    existing = next(path for path in (folder, *folder.parents) if os.path.exists(path))
    if not os.path.isdir(existing):
        raise UserError(f"{key}={folder} cannot be written: {existing} is a file, not a folder; set {key} to "
                        "another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{key}={folder} cannot be written: this user has no write permission in {existing}; set "
                        f"{key} to a folder you can write, or change its permissions")


def check_run_dir(run_dir: Path, overrides: list[str]) -> None:
    """A run dir holds one run: not a sweep's dir, not another job (whose recorded config Hydra would overwrite)."""
    if (run_dir / MULTIRUN_RECORD).is_file() or any(run_dir.glob(f"*/{RESULT_FILE}")):
        raise UserError(f"hydra.run.dir={run_dir} is a sweep's dir (its jobs' run dirs are inside): pass a "
                        "job's run dir to resume it, or another hydra.run.dir")
    previous = read_result(run_dir)
    if previous is not None:
        check_same_job(previous, overrides, run_dir, multirun=False)


def check_sweep_dir(sweep_dir: Path) -> None:
    """A sweep dir holds jobs' run dirs, not a run of its own."""
    if (sweep_dir / RESULT_FILE).is_file() or (sweep_dir / HYDRA_DIR).is_dir():
        raise UserError(f"hydra.sweep.dir={sweep_dir} is a single run's dir, not a sweep's: pass another "
                        "hydra.sweep.dir")


class RunDirGuard(Callback):
    """Hydra's hooks before it creates a run's or a sweep's dir and writes `.hydra/` into it: a command refused here
    changes nothing on disk. exit_on_user_error ends in SystemExit, which Hydra's callback runner lets through (a
    UserError it would turn into a warning and go on)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        # A value out of range too: said in half a second, before torch loads or any dir or MLflow run exists.
        exit_on_user_error(check_ranges)(OmegaConf.masked_copy(config, [key for key in config if key != "hydra"]))
        run_dir = Path(config.hydra.run.dir)
        exit_on_user_error(check_writable)(run_dir, "hydra.run.dir")
        exit_on_user_error(check_run_dir)(run_dir, list(config.hydra.overrides.task))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        exit_on_user_error(check_writable)(Path(config.hydra.sweep.dir), "hydra.sweep.dir")
        exit_on_user_error(check_sweep_dir)(Path(config.hydra.sweep.dir))
