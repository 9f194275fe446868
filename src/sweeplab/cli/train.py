"""`python train.py` / `sweeplab-train`: compose the config with Hydra and run one training job.

Only Hydra and the config schema are imported at start-up; torch is imported when a job runs,
so `--help` and config errors come back fast.
"""

from __future__ import annotations

import os
from pathlib import Path

import hydra
from hydra.errors import HydraException
from hydra.utils import execution_whitelist
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from sweeplab.config import TRUSTED_TARGETS, register_configs
from sweeplab.errors import UserError, config_error_line, exit_on_user_error


def config_dir() -> str:
    """conf/ at the repository root (editable install), else the copy packaged with sweeplab."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package.parents[1] / "conf", package / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"sweeplab's conf/ folder is missing (looked beside {package})")


register_configs()


@hydra.main(config_path=config_dir(), config_name="train")
def run(cfg: DictConfig) -> float:
    """One job. A sweep job's failure is recorded and the sweep goes on (sweeplab.sweeps); a single
    run exits at once, with one line for a user error."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from sweeplab.sweeps.job import run_job

    if HydraConfig.get().mode == RunMode.RUN:
        return exit_on_user_error(run_job)(cfg, contain_failures=False)
    return run_job(cfg, contain_failures=True)


@exit_on_user_error
def main() -> None:
    """Run Hydra; user errors, Hydra's config errors (bad option, type or key) included, end as one line.

    HYDRA_FULL_ERROR=1 makes Hydra raise instead of printing its multi-line report; a user who
    sets it themselves gets Hydra's full traceback. Hydra instantiates our callbacks under the
    same target whitelist as our own code.
    """
    asked_for_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        with execution_whitelist(TRUSTED_TARGETS):
            run()
    except (HydraException, OmegaConfBaseException) as error:
        if asked_for_traceback:
            raise
        raise UserError(config_error_line(error)) from None
