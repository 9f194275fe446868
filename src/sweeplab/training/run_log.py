"""The run's story in its train.log: what it trains, each epoch, resumes, early stops, warnings, how it ended.

The `sweeplab.story` logger writes to the log file only (conf/train.yaml routes it there): the terminal
has the progress bar and the summary table for the same facts. sweeplab's other loggers (resumes,
early stops, warnings, a sweep job's failure) reach the terminal and the file.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from omegaconf import DictConfig

from sweeplab.training.engine import Callback, EpochMetrics, Trainer

story = logging.getLogger("sweeplab.story")
STANDARD_OUTPUTS = (1, 2)  # the file descriptors of stdout and stderr, which C++ code writes to directly


def log_plan(cfg: DictConfig, overrides: list[str], sizes: dict[str, int], device: str, precision: str,
             threads: int) -> None:
    optimizer = cfg.optimizer._target_.rsplit(".", 1)[-1]
    images = " / ".join(f"{count} {split}" for split, count in sizes.items())
    story.info(f"overrides: {' '.join(overrides) or 'none'}")
    story.info(f"training {cfg.model.name} on {cfg.dataset.name} ({images} images) with {optimizer} "
               f"lr {cfg.optimizer.lr:g}, batch {cfg.dataset.batch_size}, {cfg.trainer.epochs} epochs, "
               f"seed {cfg.seed}, on {device} ({precision}, {threads} threads); optimizing {cfg.optimized_metric}")


class EpochLog(Callback):
    """One line an epoch, every metric the epoch reports."""

    def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> None:
        values = ", ".join(f"{key} {value:.6g}" for key, value in metrics.as_dict().items())
        story.info(f"epoch {metrics.epoch} of {trainer.epochs}: {values}")


def log_outcome(status: str, seconds: float, reason: str | None, metric: str, best: float | None) -> None:
    """How the job ended: its best value, or why it did not finish."""
    detail = reason or (f"best {metric} {best:.6g}" if best is not None else None)
    line = f"{status} after {seconds:.1f} s: {detail}" if detail else f"{status} after {seconds:.1f} s"
    (story.info if reason is None else story.error)(line)


@contextmanager
def printed_to_log(source: str) -> Iterator[None]:
    """What C++ prints to stdout and stderr meanwhile goes to the run's log, not the terminal: the TorchScript
    exporter's whole graph (70 lines for a VGG) when it gives up an op, the profiler's "gpuGetDeviceCount
    failed" on a machine without a GPU."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in STANDARD_OUTPUTS]
    with tempfile.TemporaryFile() as sink:
        try:
            for fd in STANDARD_OUTPUTS:
                os.dup2(sink.fileno(), fd)
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip(STANDARD_OUTPUTS, saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            if printed := sink.read().decode(errors="replace").strip():
                story.info(f"{source} printed:\n{printed}")
