"""A run dir (or sweep dir) that can be written, checked before Hydra creates it and writes `.hydra/` there.

Hydra does that before any of sweeplab's code runs, so its OSError (a file in the way, no permission)
would end the command in a traceback; `RunDirGuard`, a Hydra callback, says it in one line instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sweeplab.core.errors import UserError, exit_on_user_error


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


class RunDirGuard(Callback):
    """Hydra's hooks before it creates a run's or a sweep's dir. exit_on_user_error ends in SystemExit, which Hydra's
    callback runner lets through (a UserError it would turn into a warning and go on)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        exit_on_user_error(check_writable)(Path(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        exit_on_user_error(check_writable)(Path(config.hydra.sweep.dir), "hydra.sweep.dir")
