"""Step and epoch metrics to MLflow without blocking the loop, keeping whatever could not be delivered."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sweeplab.engine import Callback, EpochMetrics, Trainer

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    from mlflow.utils.async_logging.run_operations import RunOperations

# EpochMetrics.as_dict() names -> the names runs carry in MLflow (and compare/summary read back).
RENAMES = {"seconds": "epoch_seconds", "images/per_second": "images_per_second"}


def epoch_metric_values(metrics: EpochMetrics) -> dict[str, float]:
    return {RENAMES.get(key, key): value for key, value in metrics.as_dict().items()}


class MetricLogger(Callback):
    """Buffers metrics and hands them to MLflow's asynchronous logger every `flush_seconds`.

    The loop calls on_step_end every trainer.log_every_n_steps steps (train/step_loss, throughput)
    and on_epoch_end once an epoch: appending to a list is all it costs the loop. Each batch is
    kept with its operation handle, so `undelivered()` can name exactly what an outage swallowed.
    Few large batches matter on small machines: every batch is a database transaction in a
    thread that competes with training for the same cores.
    """

    MAX_BATCH = 1000  # MLflow's limit on metrics per log_batch call

    def __init__(self, client: MlflowClient, run_id: str, flush_seconds: float):
        self.client = client
        self.run_id = run_id
        self.flush_seconds = flush_seconds
        self.buffer: list[Metric] = []
        self.flushed_at = time.monotonic()
        self.sent: list[tuple[RunOperations, list[Metric]]] = []

    def on_fit_start(self, trainer: Trainer) -> None:
        """A resumed run: log the restored epochs that the interrupted attempt never delivered."""
        if trainer.history:
            logged = {metric.step for metric in self.client.get_metric_history(self.run_id, "val/acc")}
            for metrics in trainer.history:
                if metrics.epoch not in logged:
                    self.on_epoch_end(trainer, metrics)

    def on_step_end(self, trainer: Trainer, loss: float, images_per_second: float) -> None:
        self.log({"train/step_loss": loss, "train/step_images_per_second": images_per_second}, trainer.step)

    def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> None:
        self.log(epoch_metric_values(metrics), metrics.epoch)

    def on_fit_end(self, trainer: Trainer) -> None:
        self.flush()

    def log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        if len(self.buffer) + len(values) > self.MAX_BATCH:
            self.flush()
        now = int(time.time() * 1000)
        self.buffer += [Metric(key, float(value), now, step) for key, value in values.items()]
        if time.monotonic() - self.flushed_at >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            batch, self.buffer = self.buffer, []
            self.sent.append((self.client.log_batch(self.run_id, metrics=batch, synchronous=False), batch))
        self.flushed_at = time.monotonic()

    def undelivered(self) -> list[Metric]:
        """Send what is buffered, wait for every batch; return the metrics of those that failed."""
        from sweeplab.tracking.store import delivery_errors

        self.flush()
        lost: list[Metric] = []
        for operation, batch in self.sent:
            try:
                operation.wait()
            except delivery_errors():
                lost += batch
        self.sent.clear()
        return lost
