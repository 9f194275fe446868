"""The Hydra callback that guards a sweep: its config checked once before launching, and at the end a
table of every job, with an exit code that says whether any failed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sweeplab.errors import exit_on_user_error
from sweeplab.sweeps.preflight import check_sweep
from sweeplab.sweeps.results import FINISHED, sweep_results
from sweeplab.sweeps.table import print_sweep_table


class SweepGuard(Callback):
    def __init__(self) -> None:
        self.launched = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # exit_on_user_error ends in SystemExit, which Hydra's callback runner lets through: nothing launches.
        exit_on_user_error(check_sweep)(config)
        self.launched = True

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.launched:
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        results = sweep_results(sweep_dir)
        if results:
            print_sweep_table(results, sweep_dir)
        unfinished = [r for r in results if r.status != FINISHED]
        if unfinished:
            print(
                f"error: {len(unfinished)} of {len(results)} jobs did not finish (reasons in the table): re-run "
                f"the same command with hydra.sweep.dir={sweep_dir} to retry only those",
                file=sys.stderr,
            )
            sys.exit(1)
