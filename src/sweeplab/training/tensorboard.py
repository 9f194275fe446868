"""Optional TensorBoard logging (tracking.tensorboard=true): the course notes' SummaryWriter curves,
a batch of training images and the model graph, written in the run dir.

Imported only when asked for (torch.utils.tensorboard imports the tensorboard package, ~1 s)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from sweeplab.core.vocabulary import STEP_LOSS
from sweeplab.training.engine import Callback, EpochMetrics, Trainer


class TensorBoardLogger(Callback):
    def __init__(self, folder: Path, sample_images: torch.Tensor, preprocess):
        self.folder = folder
        self.writer = SummaryWriter(str(folder))
        self.sample_images = sample_images  # uint8 [N, C, H, W] on the training device
        self.preprocess = preprocess

    def on_fit_start(self, trainer: Trainer) -> None:
        self.writer.add_images("train/images", self.sample_images[:16].float().cpu() / 255)
        was_training = trainer.model.training
        trainer.model.eval()
        with warnings.catch_warnings():  # add_graph traces with torch.jit, whose deprecation is not the user's to fix
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace", category=FutureWarning)
            self.writer.add_graph(trainer.model, self.preprocess(self.sample_images[:2], train=False))
        trainer.model.train(was_training)

    def on_step_end(self, trainer: Trainer, loss: float, images_per_second: float) -> None:
        self.writer.add_scalar(STEP_LOSS, loss, trainer.state.step)

    def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> None:
        for key, value in metrics.as_dict().items():
            self.writer.add_scalar(key, value, metrics.epoch)

    def on_fit_end(self, trainer: Trainer) -> None:
        self.writer.close()
