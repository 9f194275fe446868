"""An Optuna trial seen from inside its job: its optimized metric reported after every epoch, and training
stopped when the study's pruner says so.

The job finds its trial through the stored study, by its number (= the job's number), so nothing of
the trial enters the job's overrides, its resume check or its tags. It never tells the study how the
trial ended: the sweeper does (sweeplab.sweeps.optuna_search), reading PRUNED from the job's result.json.
"""

from __future__ import annotations

import logging

import optuna
from optuna.storages import BaseStorage

from sweeplab.config.targets import SEARCH_TARGETS, trusted_instantiate
from sweeplab.core.hydra_job import HydraJob
from sweeplab.core.vocabulary import CONFIRM_SEED, PRUNED_AT
from sweeplab.sweeps.optuna_search import NO_PRUNING, open_storage
from sweeplab.training.engine import Callback, EpochMetrics, Trainer

log = logging.getLogger(__name__)


class TrialPruning(Callback):
    def __init__(self, study: optuna.Study, storage: BaseStorage, trial_id: int, metric: str):
        self.trial = optuna.trial.Trial(study, trial_id)
        self.storage, self.trial_id = storage, trial_id
        self.metric = metric
        self.pruned_at: int | None = None  # the last epoch trained, once pruned
        self.reported: set[int] = set()  # epochs the study has

    def on_fit_start(self, trainer: Trainer) -> None:
        """A resumed trial: report its restored epochs (the last may have been checkpointed, then cut off
        before it was reported), and know whether it was pruned then (its checkpoint says it stopped)."""
        stored = self.storage.get_trial(self.trial_id)
        self.reported, self.pruned_at = set(stored.intermediate_values), stored.user_attrs.get(PRUNED_AT)
        for metrics in trainer.state.history:
            self.report(metrics)

    def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> bool:
        self.report(metrics)
        if metrics.epoch >= trainer.epochs or not self.trial.should_prune():  # the last epoch: complete, not pruned
            return False
        self.pruned_at = metrics.epoch
        # Told to the study now, not through result.json: a sequential sweep's recorder writes that later.
        self.storage.set_trial_user_attr(self.trial_id, PRUNED_AT, metrics.epoch)
        log.info(f"trial {self.trial.number} pruned after epoch {metrics.epoch} of {trainer.epochs}: its "
                 f"{self.metric} is not promising by the study's {type(self.trial.study.pruner).__name__}")
        return True

    def report(self, metrics: EpochMetrics) -> None:
        if metrics.epoch not in self.reported:  # never twice
            self.trial.report(metrics.as_dict()[self.metric], metrics.epoch)
            self.reported.add(metrics.epoch)


def trial_pruning(job: HydraJob, metric: str) -> TrialPruning | None:
    """The job's trial, when it is one of a search whose pruner can stop it."""
    if job.pruner is None or job.pruner["_target_"] == NO_PRUNING:
        return None
    storage = open_storage(job.storage)
    pruner = trusted_instantiate(job.pruner, trusted=SEARCH_TARGETS)
    study = optuna.load_study(study_name=job.study, storage=storage, pruner=pruner)
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(job.study), job.num)
    stored = storage.get_trial(trial_id)
    if stored.state.is_finished() or CONFIRM_SEED in stored.user_attrs:  # a record being completed, or a confirming
        return None  # trial (sweeplab.sweeps.confirm), which trains to its end
    return TrialPruning(study, storage, trial_id, metric)
