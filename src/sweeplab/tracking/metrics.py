"""Step and epoch metrics, buffered in the training process and sent to the recorder in few batches."""

from __future__ import annotations

import time

from sweeplab.core.vocabulary import MAX_METRICS_PER_BATCH, STEP_IMAGES_PER_SECOND, STEP_LOSS
from sweeplab.tracking.handle import MetricRow, TrackedRun, metric_rows
from sweeplab.training.engine import Callback, EpochMetrics, Trainer


class MetricLogger(Callback):
    """Buffers metrics and hands them to the recorder every `flush_seconds`, and when training ends.

    The loop calls on_step_end every trainer.log_every_n_steps steps (train/step_loss, throughput)
    and on_epoch_end once an epoch: appending to a list is all it costs the loop. Few large
    batches matter on small machines: every batch is a database transaction in the recorder, which
    competes with training for the same cores.
    """

    def __init__(self, run: TrackedRun, flush_seconds: float):
        self.run = run
        self.flush_seconds = flush_seconds
        self.buffer: list[MetricRow] = []
        self.flushed_at = time.monotonic()

    def on_fit_start(self, trainer: Trainer) -> None:
        """A resumed run: the recorder logs the restored epochs that the interrupted attempt never delivered."""
        if trainer.state.history:
            self.run.log_missing_epochs({metrics.epoch: metrics.as_dict() for metrics in trainer.state.history})

    def on_step_end(self, trainer: Trainer, loss: float, images_per_second: float) -> None:
        self.log({STEP_LOSS: loss, STEP_IMAGES_PER_SECOND: images_per_second}, trainer.state.step)

    def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> None:
        self.log(metrics.as_dict(), metrics.epoch)

    def on_fit_end(self, trainer: Trainer) -> None:
        self.flush()

    def log(self, values: dict[str, float], step: int) -> None:
        if len(self.buffer) + len(values) > MAX_METRICS_PER_BATCH:
            self.flush()
        self.buffer += metric_rows(values, step)
        if time.monotonic() - self.flushed_at >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.run.log_metrics(self.buffer)
            self.buffer = []
        self.flushed_at = time.monotonic()
