"""Structured configs: the schema every composed config is checked against before any compute.

Each group option in `conf/<group>/<option>.yaml` extends one of the schemas stored here, so a
wrong type or an unknown key fails at composition time with Hydra's message naming the key.
Range checks that types cannot express (lr > 0, batch_size >= 1) live in `check_ranges`.
This module must stay light: `train.py --help` imports it, and it must not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from sweeplab.errors import UserError


@dataclass
class AugmentConfig:
    random_crop_padding: int = 0
    hflip: bool = False
    vflip: bool = False


@dataclass
class DatasetConfig:
    name: str = MISSING
    # A callable (Hydra `_target_`) returning the raw splits; see sweeplab.data.sources.
    source: Any = MISSING
    # Root of an image folder (imagefolder, hymenoptera); unused by the built-in data sets.
    path: str | None = None
    batch_size: int = 64
    eval_batch_size: int | None = None
    num_workers: int = 2
    # Fraction of train held out for validation when the data set has no split of its own.
    val_fraction: float = 0.2
    # Image folders are decoded at this size (resize shorter side, then center crop).
    image_size: int | None = None
    crop_size: int | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    mean: list[float] = MISSING
    std: list[float] = MISSING


@dataclass
class ModelConfig:
    # mlp, cnn, or any torchvision classification model name (vgg16, resnet18, ...).
    name: str = MISSING
    hidden: list[int] = field(default_factory=lambda: [512, 512])
    # torchvision weight name (DEFAULT, IMAGENET1K_V1) or a path to a state_dict file.
    weights: str | None = None
    freeze_backbone: bool = False
    # Inputs smaller than this (per side) are upsampled on the fly; 0 keeps the data's size.
    min_size: int = 0


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
    # A factory in sweeplab.optim taking (optimizer, total_steps, steps_per_epoch).
    _target_: str = "sweeplab.optim.constant"
    _partial_: bool = True
    # Linear warm-up from lr/steps to lr over this many epochs, before the schedule itself.
    warmup_epochs: float = 0.0


@dataclass
class StepSchedulerConfig(SchedulerConfig):
    _target_: str = "sweeplab.optim.step"
    step_epochs: int = 10
    gamma: float = 0.1


@dataclass
class CosineSchedulerConfig(SchedulerConfig):
    _target_: str = "sweeplab.optim.cosine"
    min_lr: float = 0.0


@dataclass
class OneCycleSchedulerConfig(SchedulerConfig):
    _target_: str = "sweeplab.optim.onecycle"
    pct_start: float = 0.3


@dataclass
class DeviceConfig:
    # auto tries cuda, then mps, then cpu; naming an absent one is an error, never a fall-back.
    type: str = "auto"


@dataclass
class TrainerConfig:
    epochs: int = 10
    precision: str = "32"  # 32, bf16 or fp16
    channels_last: bool = False
    compile: bool = False
    grad_clip: float | None = None
    label_smoothing: float = 0.0
    # Stop after this many epochs without improving `optimized_metric`; null never stops early.
    early_stopping_patience: int | None = None
    log_every_n_steps: int = 50
    progress: bool = True


@dataclass
class TrackingConfig:
    enabled: bool = True
    # null: $MLFLOW_TRACKING_URI if set, else sqlite:///<dir train.py runs from>/mlflow.db (made absolute).
    # train/step_loss is logged every trainer.log_every_n_steps steps.
    uri: str | None = None
    # null: sweeplab-<dataset name>
    experiment: str | None = None
    # null: MLflow's generated name; sweep jobs are named by their overrides.
    run_name: str | None = None
    # Metrics are buffered and sent (asynchronously) at most this often; live curves lag by that much.
    flush_seconds: float = 5.0
    # Log the best model with mlflow.pytorch.log_model (pt2 format).
    log_model: bool = True
    # Register the logged model under this name in the MLflow model registry.
    register_model: str | None = None
    tensorboard: bool = False


@dataclass
class ExportConfig:
    onnx: bool = True
    # Largest allowed |logits(PyTorch) - logits(onnxruntime)| on validation images.
    tolerance: float = 1e-4
    num_images: int = 64


@dataclass
class PathsConfig:
    data_dir: str = "data"
    output_dir: str = "${hydra:runtime.output_dir}"


@dataclass
class TrainConfig:
    dataset: DatasetConfig = MISSING
    model: ModelConfig = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    device: DeviceConfig = MISSING
    trainer: TrainerConfig = MISSING
    tracking: TrackingConfig = MISSING
    export: ExportConfig = field(default_factory=ExportConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 0
    # The metric returned to Hydra sweepers and used for early stopping and the best checkpoint.
    optimized_metric: str = "val/acc"


PRECISIONS = ("32", "bf16", "fp16")
# What a config's `_target_` may name (Hydra 1.4 refuses unlisted ones): our loaders and factories, torch's optimizers.
TRUSTED_TARGETS = ("sweeplab.*", "torch.optim.*")
DEVICE_TYPES = ("auto", "cpu", "cuda", "mps")
METRICS = ("val/acc", "val/loss", "train/acc", "train/loss")


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig, replace=True)
    schemas = {
        "dataset": {"base_dataset": DatasetConfig},
        "model": {"base_model": ModelConfig},
        "optimizer": {
            "base_sgd": SGDConfig,
            "base_adam": AdamConfig,
            "base_adamw": AdamWConfig,
            "base_rmsprop": RMSpropConfig,
        },
        "scheduler": {
            "base_none": SchedulerConfig,
            "base_step": StepSchedulerConfig,
            "base_cosine": CosineSchedulerConfig,
            "base_onecycle": OneCycleSchedulerConfig,
        },
        "device": {"base_device": DeviceConfig},
        "trainer": {"base_trainer": TrainerConfig},
        "tracking": {"base_tracking": TrackingConfig},
    }
    for group, nodes in schemas.items():
        for name, node in nodes.items():
            cs.store(group=group, name=name, node=node, replace=True)


def metric_mode(metric: str) -> str:
    """Losses are minimised, everything else (accuracies) maximised."""
    return "min" if metric.endswith("loss") else "max"


def check_ranges(cfg: DictConfig) -> None:
    """Fail before any compute on required keys left unset and well-typed but meaningless values."""
    # paths holds Hydra's run-time interpolations, which resolve only inside a Hydra run.
    groups = [key for key in cfg if key != "paths" and OmegaConf.is_config(cfg[key])]
    missing = sorted(key for group in groups for key in OmegaConf.missing_keys(cfg[group]))
    if missing:
        raise UserError(f"{missing[0]} is required but not set: pass it, e.g. `{missing[0]}=...`")
    rules = [
        ("optimizer.lr", cfg.optimizer.lr > 0, "must be > 0"),
        ("dataset.batch_size", cfg.dataset.batch_size >= 1, "must be >= 1"),
        ("dataset.num_workers", cfg.dataset.num_workers >= 0, "must be >= 0"),
        ("dataset.val_fraction", 0 < cfg.dataset.val_fraction < 1, "must be between 0 and 1"),
        ("trainer.epochs", cfg.trainer.epochs >= 1, "must be >= 1"),
        ("trainer.label_smoothing", 0 <= cfg.trainer.label_smoothing < 1, "must be in [0, 1)"),
        ("trainer.precision", cfg.trainer.precision in PRECISIONS, f"must be one of {PRECISIONS}"),
        ("device.type", cfg.device.type in DEVICE_TYPES, f"must be one of {DEVICE_TYPES}"),
        ("optimized_metric", cfg.optimized_metric in METRICS, f"must be one of {METRICS}"),
        ("trainer.log_every_n_steps", cfg.trainer.log_every_n_steps >= 1, "must be >= 1"),
        ("export.tolerance", cfg.export.tolerance > 0, "must be > 0"),
        ("export.num_images", cfg.export.num_images >= 1, "must be >= 1"),
    ]
    if cfg.dataset.eval_batch_size is not None:
        rules.append(("dataset.eval_batch_size", cfg.dataset.eval_batch_size >= 1, "must be >= 1"))
    if cfg.trainer.early_stopping_patience is not None:
        rules.append(("trainer.early_stopping_patience", cfg.trainer.early_stopping_patience >= 1, "must be >= 1"))
    if cfg.trainer.grad_clip is not None:
        rules.append(("trainer.grad_clip", cfg.trainer.grad_clip > 0, "must be > 0 (or null)"))
    for key, ok, requirement in rules:
        if not ok:
            value = OmegaConf.select(cfg, key)
            raise UserError(f"{key}={value} is invalid: it {requirement}; override it, e.g. `{key}=...`")
