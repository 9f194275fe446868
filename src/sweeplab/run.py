"""One training run, top to bottom: config -> data, model, optimizer, device -> fit -> summary."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from sweeplab.callbacks import BestTracker, Checkpointer, EarlyStopping
from sweeplab.config import check_ranges, metric_mode
from sweeplab.console import ProgressBar, print_summary
from sweeplab.data import build_data
from sweeplab.device import resolve_device
from sweeplab.engine import Callback, Trainer
from sweeplab.models import build_model
from sweeplab.optim import build_optimizer, build_scheduler


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(cfg: DictConfig, extra_callbacks: list[Callback] | None = None) -> float:
    """Train as configured; return the best value of `optimized_metric` (what sweepers optimize)."""
    check_ranges(cfg)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device.type)
    data = build_data(cfg.dataset, device, cfg.seed, cfg.trainer.channels_last)
    model = build_model(cfg.model, data.image_shape, len(data.classes)).to(device)
    if cfg.trainer.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg.optimizer, model)
    scheduler = build_scheduler(cfg.scheduler, optimizer, len(data.train), cfg.trainer.epochs)

    run_dir = Path(cfg.paths.output_dir)
    tracker = BestTracker(cfg.optimized_metric, metric_mode(cfg.optimized_metric))
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
    callbacks += extra_callbacks or []

    trainer = Trainer(
        model=torch.compile(model) if cfg.trainer.compile else model,
        optimizer=optimizer,
        scheduler=scheduler,
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
    history = trainer.fit()
    print_summary(history, tracker.best_epoch, cfg.optimized_metric, run_dir)
    return tracker.best
