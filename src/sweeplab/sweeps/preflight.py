"""Check a sweep's config once, before any job starts: a bad option, type or value fails here, in one
line, instead of in every job.

The sweep is composed with each swept value in turn (the other keys at their fixed values), which
covers grids, `choice()`s and Optuna's intervals (both ends) without running the sweeper.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

from hydra import compose
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob, IntervalSweep, Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sweeplab.config.checks import check_ranges
from sweeplab.core.errors import UserError, config_error_line
from sweeplab.core.vocabulary import OPTUNA_SWEEPER, SWEEPLAB_GRID
from sweeplab.runs.results import check_same_job, read_result
from sweeplab.sweeps.confirm import check_confirm

# Grids: Hydra's own, and sweeplab's (the default: hydra_plugins/sweeplab_grid_sweeper).
GRID_SWEEPERS = ("hydra._internal.core_plugins.basic_sweeper.BasicSweeper", SWEEPLAB_GRID)


SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


def check_sweep(config: DictConfig) -> None:
    check_launcher(config)
    check_resumed_jobs(config)
    if config.sweep.confirm.top:
        check_confirm(config)
    if config.hydra.sweeper._target_ == OPTUNA_SWEEPER:
        from sweeplab.sweeps.optuna_search import check_search  # Optuna: only when a search is checked

        check_search(config)
    overrides = {o.get_key_element(): o for o in sweep_overrides(config)}  # the command line wins over presets
    fixed = [o.input_line for o in overrides.values() if not o.is_sweep_override()]
    base = composed(fixed, "")
    check_ranges(base)
    groups = set(config.hydra.runtime.choices)
    for key, override in overrides.items():
        if not override.is_sweep_override():
            continue
        plain = key not in groups and not (override.is_add() or override.is_force_add() or override.is_delete())
        for value in swept_values(override):
            changed = with_value(base, key, value) if plain else None
            check_ranges(changed if changed is not None else composed(fixed, f"{key}={value}"))


def check_launcher(config: DictConfig) -> None:
    """Slurm's launcher submits with sbatch and waits with srun: off a Slurm cluster, say so before anything runs."""
    if config.hydra.launcher.get("_target_") == SLURM_LAUNCHER and not shutil.which("srun"):
        raise UserError("hydra/launcher=slurm needs a Slurm cluster (no `srun` on PATH here): run the sweep on "
                        "the cluster's login node, or use hydra/launcher=joblib or submitit_local on this machine")


def composed(fixed: list[str], variant: str) -> DictConfig:
    try:
        return compose(config_name="train", overrides=fixed + ([variant] if variant else []))
    except (HydraException, OmegaConfBaseException) as error:
        raise UserError(f"the sweep cannot run {variant}: {config_error_line(error)}") from None


def with_value(base: DictConfig, key: str, value: str) -> DictConfig | None:
    """`base` with one plain key changed, type-checked by its schema (a compose costs a tenth of a second a
    value); None where that fails, so that composing says what is wrong, in Hydra's words."""
    config = copy.deepcopy(base)
    try:
        OmegaConf.update(config, key, value, merge=True)
    except OmegaConfBaseException:
        return None
    return config


def check_resumed_jobs(config: DictConfig) -> None:
    """A grid re-run in an existing sweep dir must be the same grid: job N goes to the dir of job N."""
    sweep_dir = Path(config.hydra.sweep.dir)
    jobs = planned_jobs(config)
    if jobs is None or not sweep_dir.is_dir():
        return
    for number, overrides in enumerate(jobs):
        previous = read_result(sweep_dir / str(number))
        if previous:
            check_same_job(previous, overrides, sweep_dir / str(number), multirun=True)


def planned_jobs(config: DictConfig) -> list[list[str]] | None:
    """Each job's overrides, by job number, for a grid (Hydra's basic sweeper); None for a sweeper that picks
    its jobs as it goes (an Optuna search)."""
    if config.hydra.sweeper._target_ not in GRID_SWEEPERS:
        return None
    (jobs,) = BasicSweeper.split_arguments(sweep_overrides(config), max_batch_size=None)
    return jobs


def sweep_overrides(config: DictConfig) -> list[Override]:
    """The preset's `hydra.sweeper.params`, then the command line's overrides."""
    params = config.hydra.sweeper.get("params") or {}
    lines = [f"{key}={value}" for key, value in params.items()] + list(config.hydra.overrides.task)
    return OverridesParser.create().parse_overrides(lines)


def swept_values(override: Override) -> list[str]:
    value = override.value()
    if isinstance(value, IntervalSweep):
        return [str(value.start), str(value.end)]
    if isinstance(value, Glob):
        return []  # matched against the config repository by the sweeper itself
    return list(override.sweep_string_iterator())
