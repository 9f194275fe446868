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
    """Queues metrics on MLflow's asynchronous logger; training never waits for the server.

    The loop calls on_step_end every trainer.log_every_n_steps steps (train/step_loss, throughput)
    and on_epoch_end once an epoch. Each queued batch is kept with its operation handle, so
    `undelivered()` can name exactly what a server outage swallowed.
    """

    def __init__(self, client: MlflowClient, run_id: str):
        self.client = client
        self.run_id = run_id
        self.sent: list[tuple[RunOperations, list[Metric]]] = []

    def on_step_end(self, trainer: Trainer, loss: float, images_per_second: float) -> None:
        self.log({"train/step_loss": loss, "train/step_images_per_second": images_per_second}, trainer.step)

    def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> None:
        self.log(epoch_metric_values(metrics), metrics.epoch)

    def log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in values.items()]
        self.sent.append((self.client.log_batch(self.run_id, metrics=batch, synchronous=False), batch))

    def undelivered(self) -> list[Metric]:
        """Wait for every queued batch; return the metrics of those that failed."""
        from sweeplab.tracking.store import delivery_errors

        lost: list[Metric] = []
        for operation, batch in self.sent:
            try:
                operation.wait()
            except delivery_errors():
                lost += batch
        self.sent.clear()
        return lost
