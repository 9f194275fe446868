"""`python train.py` / `sweeplab-train`: compose the config with Hydra and run one training job.

The main path: this Hydra main -> `run_job(cfg, job, train, recorder)` (sweeplab.task.job) -> `train`
(sweeplab.task.train) -> the fit loop (sweeplab.training.engine). Only Hydra and the config schema are
imported at start-up; the hop to the task (torch) is deferred to when a job runs, so `--help` and config
errors come back fast and never load torch.
"""

from __future__ import annotations

import os
import sys

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from sweeplab.config.schema import config_dir, register_configs
from sweeplab.core.errors import UserError, config_error_line, exit_on_user_error
from sweeplab.core.hydra_job import current_hydra_job
from sweeplab.core.interrupts import end_on_sigterm, exit_code
from sweeplab.recorder import this_process
from sweeplab.runs.results import JobResult
from sweeplab.sweeps.open_sweeps import end_interrupted_sweeps
from sweeplab.tracking.store import check_reachable, resolve_uri

register_configs()


@hydra.main(config_path=config_dir(), config_name="train", version_base="1.3")
def run(cfg: DictConfig) -> JobResult | None:
    """One job (a single run, or one of a sweep's): `train` in `run_job`, with this process's recorder.

    A single run's user error is one line here, inside the job: Hydra would wrap it in its own report. Its
    tracking server is checked before torch loads, so a wrong one is said in a second, not ten (a sweep's
    is checked before it launches: sweeplab.sweeps.hydra_callbacks).
    """
    job = current_hydra_job()
    if cfg.tracking.enabled and not job.multirun:
        exit_on_user_error(check_reachable)(resolve_uri(cfg.tracking.uri))
    recorder = this_process.for_job(cfg, job)  # it imports mlflow & co. while this process imports torch
    from sweeplab.task.job import run_job  # the deferred hop
    from sweeplab.task.train import train

    return (run_job if job.multirun else exit_on_user_error(run_job))(cfg, job, train, recorder)


@exit_on_user_error
def main() -> None:
    """Run Hydra; user errors, Hydra's config errors (bad option, type or key) included, end as one line.

    HYDRA_FULL_ERROR=1 makes Hydra raise instead of printing its multi-line report; a user who
    sets it themselves gets Hydra's full traceback.
    """
    asked_for_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        run_to_the_end()
    except (HydraException, OmegaConfBaseException) as error:
        if asked_for_traceback:
            raise
        raise UserError(config_error_line(error)) from None
    except ValueError as error:  # Hydra's own check of its flags (`-m` with `--cfg`) raises a bare ValueError
        if not str(error).startswith(FLAGS_ERROR):
            raise
        raise UserError(f"{error}: --cfg shows one run's config: drop -m and give each swept key one value") from None


FLAGS_ERROR = "Only one of --run, --multirun, --cfg"


def run_to_the_end() -> None:
    """Ctrl-C or SIGTERM ends with the line that says how to resume (sweeplab.task.job) and exit code 130 or
    143, no traceback."""
    end_on_sigterm()
    try:
        run()
    except BaseException as error:
        end_interrupted_sweeps()  # Hydra 1.3 ends a sweep's callbacks only when the sweep returns
        if isinstance(error, KeyboardInterrupt):
            sys.exit(exit_code(error))
        raise


if __name__ == "__main__":  # `python -m sweeplab.cli.train`: how `sweeplab confirm` runs a sweep's command again
    main()
