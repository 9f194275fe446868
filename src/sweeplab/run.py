"""One training run, top to bottom: config -> data, model, optimizer, device -> fit -> record -> export.

The MLflow run starts before any compute (an unreachable server fails in seconds, not after
training) and always ends with a status: FINISHED, FAILED with the reason, or KILLED on Ctrl-C.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from sweeplab.callbacks import BestTracker, Checkpointer, EarlyStopping
from sweeplab.checkpoint import BEST, LAST, load_checkpoint, load_state_file
from sweeplab.config import ExportConfig, check_ranges, metric_mode
from sweeplab.console import ProgressBar, print_summary, print_tracking_location
from sweeplab.data import Data, build_data
from sweeplab.device import resolve_device
from sweeplab.engine import Callback, EpochMetrics, Trainer
from sweeplab.models import build_model
from sweeplab.optim import build_optimizer, build_scheduler
from sweeplab.tracking.session import TrackedRun, tracked_run

GRID_IMAGES = 9  # the 3x3 sample grid
MODEL_EXAMPLE_BATCH = 8  # > 1 keeps the logged pt2 model's batch dimension dynamic


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(cfg: DictConfig, extra_callbacks: list[Callback] | None = None, resume: bool = False) -> float:
    """Train as configured; return the best value of `optimized_metric` (what sweepers optimize).

    `resume` continues an interrupted run in its run dir: from its last checkpoint if it wrote one,
    in the MLflow run it had started.
    """
    check_ranges(cfg)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device.type)
    run_dir = Path(cfg.paths.output_dir)
    with tracked_run(cfg, str(device), resume) as tracking:
        data = build_data(cfg.dataset, device, cfg.seed, cfg.trainer.channels_last)
        model = build_model(cfg.model, data.image_shape, len(data.classes)).to(device)
        if cfg.trainer.channels_last:
            model = model.to(memory_format=torch.channels_last)
        tracker = BestTracker(cfg.optimized_metric, metric_mode(cfg.optimized_metric))
        callbacks = build_callbacks(cfg, data, tracker, run_dir, tracking) + (extra_callbacks or [])
        trainer = build_trainer(cfg, model, data, device, callbacks)
        if resume:
            restore(trainer, tracker, run_dir / "checkpoints" / LAST)
        history = trainer.fit()
        print_summary(history, tracker.best_epoch, cfg.optimized_metric, run_dir)
        if tracking:
            record_results(cfg, tracking, model, data, history, tracker, run_dir)
            print_tracking_location(tracking.run_id, tracking.client.tracking_uri)
        if cfg.export.onnx:
            export_best(cfg.export, run_dir, tracking)
    return tracker.best


def restore(trainer: Trainer, tracker: BestTracker, checkpoint: Path) -> None:
    """Weights, optimizer, schedule, epoch and the best epoch so far; a run cut off before its first
    checkpoint starts over."""
    if not checkpoint.is_file():
        return
    trainer.load_state_dict(load_state_file(checkpoint))
    for metrics in trainer.history:
        tracker.on_epoch_end(trainer, metrics)
    print(f"Resuming {checkpoint.parents[1]} after epoch {trainer.epoch} of {trainer.epochs}")


def build_callbacks(
    cfg: DictConfig, data: Data, tracker: BestTracker, run_dir: Path, tracking: TrackedRun | None
) -> list[Callback]:
    metadata = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "classes": data.classes,
        "input": {"shape": list(data.image_shape), "mean": list(cfg.dataset.mean), "std": list(cfg.dataset.std)},
    }
    callbacks: list[Callback] = [tracker, Checkpointer(run_dir / "checkpoints", tracker, metadata)]
    if cfg.trainer.early_stopping_patience:
        callbacks.append(EarlyStopping(tracker, cfg.trainer.early_stopping_patience))
    if cfg.trainer.progress:
        callbacks.append(ProgressBar())
    if tracking:
        callbacks.append(tracking.metrics)
    if cfg.tracking.tensorboard:
        from sweeplab.tracking.tensorboard import TensorBoardLogger

        callbacks.append(TensorBoardLogger(run_dir / "tensorboard", next(iter(data.val))[0], data.preprocess))
    return callbacks


def build_trainer(cfg: DictConfig, model: nn.Module, data: Data, device: torch.device, callbacks: list[Callback]):
    optimizer = build_optimizer(cfg.optimizer, model)
    return Trainer(
        model=torch.compile(model) if cfg.trainer.compile else model,
        optimizer=optimizer,
        scheduler=build_scheduler(cfg.scheduler, optimizer, len(data.train), cfg.trainer.epochs),
        train_batches=data.train,
        val_batches=data.val,
        preprocess=data.preprocess,
        device=device,
        epochs=cfg.trainer.epochs,
        precision=cfg.trainer.precision,
        grad_clip=cfg.trainer.grad_clip,
        label_smoothing=cfg.trainer.label_smoothing,
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        callbacks=callbacks,
    )


def record_results(
    cfg: DictConfig, tracking: TrackedRun, model: nn.Module, data: Data,
    history: list[EpochMetrics], tracker: BestTracker, run_dir: Path,
) -> None:
    """The best epoch's model, checkpoint and figures, in the MLflow run."""
    from sweeplab.tracking import figures
    from sweeplab.tracking.sweep import best_metric_key

    tracking.metrics.log({best_metric_key(cfg.optimized_metric): tracker.best}, tracker.best_epoch)
    tracking.check_online()
    checkpoint = run_dir / "checkpoints" / BEST
    model.load_state_dict(load_checkpoint(checkpoint)["model"])
    images, labels, predictions = validation_predictions(model, data)
    folder = run_dir / "figures"
    figures.learning_curves(history, folder / "learning_curves.png")
    figures.confusion_matrix(labels, predictions, data.classes, folder / "confusion_matrix.png")
    figures.sample_grid(images, labels[:GRID_IMAGES], predictions[:GRID_IMAGES], data.classes,
                        folder / "validation_samples.png")
    tracking.log_artifact(folder, "figures")
    tracking.log_artifact(checkpoint, "checkpoints")
    if cfg.tracking.tensorboard:
        tracking.log_artifact(run_dir / "tensorboard", "tensorboard")
    if cfg.tracking.log_model:
        example = data.preprocess(next(iter(data.val))[0][:MODEL_EXAMPLE_BATCH], train=False)
        tracking.log_model(model.cpu().eval(), example.cpu().contiguous(), cfg.tracking.register_model)


@torch.no_grad()
def validation_predictions(model: nn.Module, data: Data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first validation images (uint8), and every validation label and prediction."""
    model.eval()
    labels, predictions, images = [], [], None
    for batch, batch_labels in data.val:
        predictions.append(model(data.preprocess(batch, train=False)).argmax(dim=1).cpu())
        labels.append(batch_labels.cpu())
        images = batch[:GRID_IMAGES].cpu() if images is None else images
    return images.numpy(), torch.cat(labels).numpy(), torch.cat(predictions).numpy()


def export_best(cfg: ExportConfig, run_dir: Path, tracking: TrackedRun | None) -> None:
    """ONNX export with parity check; its metrics and files reach MLflow even when parity fails."""
    from sweeplab.export import ExportParityError, ExportReport, export_onnx

    def record(report: ExportReport) -> None:
        if tracking:
            tracking.metrics.log(report.metrics, 0)
            for file in report.files:
                tracking.log_artifact(file, "onnx")

    try:
        report = export_onnx(run_dir / "checkpoints" / BEST, run_dir / "export", cfg.tolerance, cfg.num_images)
    except ExportParityError as error:
        record(error.report)
        raise
    record(report)
