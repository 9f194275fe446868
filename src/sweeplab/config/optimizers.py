"""The optimizer and scheduler options' schemas: torch's optimizers and our schedule factories, by `_target_`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SGDConfig:
    _target_: str = "torch.optim.SGD"
    _partial_: bool = True
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0


@dataclass
class AdamConfig:
    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0


@dataclass
class AdamWConfig(AdamConfig):
    _target_: str = "torch.optim.AdamW"
    weight_decay: float = 0.01


@dataclass
class RMSpropConfig:
    _target_: str = "torch.optim.RMSprop"
    _partial_: bool = True
    lr: float = 1e-3
    alpha: float = 0.99
    momentum: float = 0.0
    weight_decay: float = 0.0


@dataclass
class SchedulerConfig:
    # A factory in sweeplab.training.optim taking (optimizer, total_steps, steps_per_epoch).
    _target_: str = "sweeplab.training.optim.constant"
    _partial_: bool = True
    # Linear warm-up from lr/steps to lr over this many epochs, before the schedule itself.
    warmup_epochs: float = 0.0


@dataclass
class StepSchedulerConfig(SchedulerConfig):
    _target_: str = "sweeplab.training.optim.step"
    step_epochs: int = 10
    gamma: float = 0.1


@dataclass
class CosineSchedulerConfig(SchedulerConfig):
    _target_: str = "sweeplab.training.optim.cosine"
    min_lr: float = 0.0


@dataclass
class OneCycleSchedulerConfig(SchedulerConfig):
    _target_: str = "sweeplab.training.optim.onecycle"
    pct_start: float = 0.3
