"""Optimizers and learning-rate schedules, stepped once per batch.

Optimizers are instantiated straight from config (`_target_: torch.optim.SGD`); schedules are
the small factories below, named the same way, each given the number of steps it spans.
"""

from __future__ import annotations

import inspect

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.optim import Optimizer, lr_scheduler
from torch.optim.lr_scheduler import LRScheduler

from sweeplab.config.targets import trusted_instantiate


def build_optimizer(cfg: DictConfig, model: nn.Module, device: torch.device | None = None) -> Optimizer:
    """On a GPU, the fused kernels where the optimizer has them: one launch a step, and fp16's gradient
    scaler checks for overflow on the device instead of syncing with the host every step."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    factory = trusted_instantiate(cfg, _convert_="all")
    fused = device is not None and device.type in ("cuda", "mps")
    if fused and "fused" in inspect.signature(factory.func).parameters:
        return factory(trainable, fused=True)
    return factory(trainable)


def build_scheduler(cfg: DictConfig, optimizer: Optimizer, steps_per_epoch: int, epochs: int) -> LRScheduler:
    """The configured schedule, preceded by a linear warm-up when scheduler.warmup_epochs > 0."""
    total_steps = steps_per_epoch * epochs
    warmup_steps = min(round(cfg.warmup_epochs * steps_per_epoch), total_steps - 1)
    factory_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "warmup_epochs"])
    factory = trusted_instantiate(factory_cfg)
    main = factory(optimizer, total_steps=total_steps - warmup_steps, steps_per_epoch=steps_per_epoch)
    if warmup_steps <= 0:
        return main
    warmup = lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup_steps, total_iters=warmup_steps)
    return lr_scheduler.SequentialLR(optimizer, [warmup, main], milestones=[warmup_steps])


def constant(optimizer: Optimizer, total_steps: int, steps_per_epoch: int) -> LRScheduler:
    return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def step(optimizer: Optimizer, total_steps: int, steps_per_epoch: int, step_epochs: int, gamma: float):
    return lr_scheduler.StepLR(optimizer, step_size=step_epochs * steps_per_epoch, gamma=gamma)


def cosine(optimizer: Optimizer, total_steps: int, steps_per_epoch: int, min_lr: float):
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=min_lr)


def onecycle(optimizer: Optimizer, total_steps: int, steps_per_epoch: int, pct_start: float):
    peaks = [group["lr"] for group in optimizer.param_groups]
    return lr_scheduler.OneCycleLR(optimizer, max_lr=peaks, total_steps=total_steps, pct_start=pct_start)
