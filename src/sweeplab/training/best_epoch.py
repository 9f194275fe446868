"""Callbacks that follow `optimized_metric`: the best epoch, its checkpoint, early stopping."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sweeplab.core.vocabulary import BEST_CHECKPOINT, LAST_CHECKPOINT
from sweeplab.training.checkpoint import copy_checkpoint, save_checkpoint
from sweeplab.training.engine import Callback, EpochMetrics, Trainer

log = logging.getLogger(__name__)


class BestTracker(Callback):
    """The best value of one metric so far, in its direction (min for losses, max otherwise).

    Put it before the callbacks that read it, so they see this epoch's verdict.
    """

    def __init__(self, metric: str, mode: str):
        self.metric = metric
        self.sign = 1 if mode == "max" else -1
        self.best: float | None = None
        self.best_epoch = 0
        self.best_metrics: dict[str, float] = {}  # every metric of the best epoch

    def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> None:
        values = metrics.as_dict()
        if self.best is None or self.sign * (values[self.metric] - self.best) > 0:
            self.best, self.best_epoch, self.best_metrics = values[self.metric], metrics.epoch, values


class Checkpointer(Callback):
    """Writes last.pt every epoch (and every `every_n_steps` steps inside one, if set) and best.pt whenever the
    optimized metric improves.

    Under torchrun every rank has one, since a checkpoint gathers every rank's random states; only rank 0's
    `writes`.
    """

    def __init__(self, folder: Path, tracker: BestTracker, metadata: dict[str, Any], every_n_steps: int = 0,
                 writes: bool = True):
        self.folder = folder
        self.tracker = tracker
        self.metadata = metadata  # config, classes, input description, threads: what later tools need
        self.every_n_steps = every_n_steps
        self.writes = writes

    def on_train_batch_end(self, trainer: Trainer) -> None:
        inside_epoch = trainer.state.current is not None and trainer.state.current.batches < trainer.steps_per_epoch
        if self.every_n_steps and trainer.state.step % self.every_n_steps == 0 and inside_epoch:
            self.save_last(trainer)

    def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> None:
        self.save_last(trainer, metrics)
        if self.tracker.best_epoch == metrics.epoch and self.writes:
            copy_checkpoint(self.folder / LAST_CHECKPOINT, self.folder / BEST_CHECKPOINT)

    def on_fit_end(self, trainer: Trainer) -> None:
        if trainer.state.stopped:  # decided after this epoch's checkpoint: a resume must know, or it trains on
            self.save_last(trainer)

    def save_last(self, trainer: Trainer, metrics: EpochMetrics | None = None) -> None:
        """`metrics`: the epoch's, by default the last completed one's."""
        metrics = metrics or (trainer.state.history[-1] if trainer.state.history else None)
        payload = {**trainer.state_dict(), **self.metadata, "metrics": metrics.as_dict() if metrics else {}}
        if self.writes:
            save_checkpoint(payload, self.folder / LAST_CHECKPOINT)


class EarlyStopping(Callback):
    """Stops when the optimized metric has not improved for `patience` epochs, and says so (terminal, train.log)."""

    def __init__(self, tracker: BestTracker, patience: int):
        self.tracker = tracker
        self.patience = patience

    def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> bool:
        stop = metrics.epoch - self.tracker.best_epoch >= self.patience
        if stop and metrics.epoch < trainer.epochs:
            log.info(f"early stop after epoch {metrics.epoch} of {trainer.epochs}: {self.tracker.metric} no better "
                     f"than {self.tracker.best:.4g} (epoch {self.tracker.best_epoch}) for {self.patience} epochs "
                     f"(trainer.early_stopping_patience={self.patience})")
        return stop
