"""sweeplab: train PyTorch image classifiers from composable Hydra configs, sweep them, track every run in MLflow.

Each package is one layer (docs/architecture.md): core, config and recorder below; training, data and models
(the loop); tracking (records); runs and export; sweeps; task (the main path); cli (the commands).

Modules that moved when the packages became the layers still import under their old names: a user's config
may name one in a `_target_` (a Hydra callback, a logging filter), and that config keeps working.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

MOVED = {
    "sweeplab.vocabulary": "sweeplab.core.vocabulary",
    "sweeplab.errors": "sweeplab.core.errors",
    "sweeplab.masking": "sweeplab.core.masking",
    "sweeplab.interrupts": "sweeplab.core.interrupts",
    "sweeplab.atomic": "sweeplab.core.atomic",
    "sweeplab.hydra_job": "sweeplab.core.hydra_job",
    "sweeplab.ranks": "sweeplab.core.ranks",
    "sweeplab.overrides": "sweeplab.core.overrides",
    "sweeplab.ranking": "sweeplab.core.rows",
    "sweeplab.aggregate": "sweeplab.core.aggregate",
    "sweeplab.engine": "sweeplab.training.engine",
    "sweeplab.callbacks": "sweeplab.training.best_epoch",
    "sweeplab.checkpoint": "sweeplab.training.checkpoint",
    "sweeplab.optim": "sweeplab.training.optim",
    "sweeplab.device": "sweeplab.training.device",
    "sweeplab.rng": "sweeplab.training.rng",
    "sweeplab.distributed": "sweeplab.training.distributed",
    "sweeplab.console": "sweeplab.training.console",
    "sweeplab.run_log": "sweeplab.training.run_log",
    "sweeplab.tensorboard": "sweeplab.training.tensorboard",
    "sweeplab.profiling": "sweeplab.training.profiling",
    "sweeplab.train": "sweeplab.task.train",
    "sweeplab.sweeps.job": "sweeplab.task.job",
    "sweeplab.compare": "sweeplab.runs.run_table",
    "sweeplab.predict": "sweeplab.runs.classify",
    "sweeplab.runs.run_dir": "sweeplab.runs.dir_guard",
    "sweeplab.runs.one_run_dir": "sweeplab.runs.rank_zero_dir",
    "sweeplab.export.after_the_fact": "sweeplab.export.from_checkpoint",
    "sweeplab.export.verify": "sweeplab.export.onnx_check",
    "sweeplab.export.parity": "sweeplab.export.verdict",
    "sweeplab.sweeps.disk": "sweeplab.sweeps.retention",
    "sweeplab.sweeps.ending": "sweeplab.sweeps.open_sweeps",
    "sweeplab.sweeps.search": "sweeplab.sweeps.optuna_search",
    "sweeplab.sweeps.callbacks": "sweeplab.sweeps.hydra_callbacks",
    "sweeplab.sweeps.table": "sweeplab.sweeps.sweep_table",
    "sweeplab.tracking.search": "sweeplab.tracking.study_report",
    "sweeplab.sweeps.results": "sweeplab.runs.results",
}


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module name as the module it became (the same module object, not a copy)."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        sys.modules[module.__name__] = importlib.import_module(MOVED[module.__name__])


sys.meta_path.append(MovedModules())
