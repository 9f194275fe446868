"""Structured configs: the schema every composed config is checked against before any compute.

Each group option in `conf/<group>/<option>.yaml` extends one of the schemas stored here, so a
wrong type or an unknown key fails at composition time with Hydra's message naming the key.
Range checks that types cannot express (lr > 0, batch_size >= 1) live in sweeplab.config.checks.
This package must stay light: `train.py --help` imports it, and it must not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from sweeplab.config.optimizers import (
    AdamConfig,
    AdamWConfig,
    CosineSchedulerConfig,
    OneCycleSchedulerConfig,
    RMSpropConfig,
    SchedulerConfig,
    SGDConfig,
    StepSchedulerConfig,
)
from sweeplab.core.vocabulary import CACHE_DIR, VAL_ACC


@dataclass
class AugmentConfig:
    """Training-time augmentation, on whole batches on the device; every switch off by default."""

    random_crop_padding: int = 0
    hflip: bool = False
    vflip: bool = False
    # none, randaugment, trivialaugment or autoaugment (torchvision's policies, each image its own draw).
    policy: str = "none"
    random_erasing: float = 0.0  # the probability an image gets a random rectangle erased
    # Batch mixing as timm's train.py: alpha 0 turns one off; with both on, CutMix is picked with switch_prob.
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0  # the probability a batch is mixed at all
    switch_prob: float = 0.5


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
    # Validation is carved from train with source.split_seed: this fraction of it (after any test carve).
    val_fraction: float = 0.2
    # digits and image folders without test/: the fraction of train held out as the test split (0: no test score).
    test_fraction: float = 0.0
    # train: validate on data carved from train (the test split stays unseen until the end); test: validate on
    # the test split, as the course notes do (optimistic: every choice is made on it), and get no test score.
    val_split: str = "train"
    # Image folders are decoded at this size (resize shorter side, then center crop).
    image_size: int | None = None
    crop_size: int | None = None
    # Image folders: keep each image decoded (its fixed-size uint8 form) in a file under paths.cache_dir, read at
    # memory speed by later epochs, jobs and runs. auto: when it fits the free disk twice over; true; false.
    cache: Any = "auto"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    mean: list[float] = MISSING
    std: list[float] = MISSING


@dataclass
class ModelConfig:
    """What every model has; `_target_` names the function that builds its network (sweeplab.models)."""

    _target_: str = MISSING
    name: str = MISSING
    # A state_dict file (.pt/.pth) to start from; torchvision and timm models also take a weight name: DEFAULT,
    # torchvision's (IMAGENET1K_V1, ...) or a timm tag (a1_in1k, ...). timm's named weights set the input.
    weights: str | None = None
    freeze_backbone: bool = False  # train only the classification head
    # Inputs smaller than this (per side) are upsampled on the fly; 0 keeps the data's size.
    min_size: int = 0
    # mlp and cnn: every hidden layer's width and the CNN's channels times this (an architecture search's knob);
    # the other models keep their own widths.
    width: float = 1.0


@dataclass
class MLPConfig(ModelConfig):
    _target_: str = "sweeplab.models.course.mlp"
    name: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [512, 512])


@dataclass
class CNNConfig(ModelConfig):
    _target_: str = "sweeplab.models.course.cnn"
    name: str = "cnn"
    hidden: list[int] = field(default_factory=lambda: [64])


@dataclass
class TorchvisionConfig(ModelConfig):
    """Any torchvision classification model by name (vgg16, resnet18, efficientnet_b0, ...)."""

    _target_: str = "sweeplab.models.vision.torchvision_classifier"
    min_size: int = 32


@dataclass
class TimmConfig(ModelConfig):
    """Any timm model by name (convnext_atto, efficientnet_b0, vit_tiny_patch16_224, ...); the extra `timm`."""

    _target_: str = "sweeplab.models.timm_models.timm_classifier"
    min_size: int = 32


@dataclass
class DeviceConfig:
    # auto tries cuda, then mps, then cpu; naming an absent one is an error, never a fall-back.
    type: str = "auto"


@dataclass
class TrainerConfig:
    epochs: int = 10
    # auto, 32, bf16 or fp16 (autocast). auto: bf16 on a CPU that computes it natively (AVX512-BF16, AMX:
    # 1.3-1.9x faster there, accuracy kept), full precision on other CPUs and on GPUs (choose bf16 there).
    precision: str = "auto"
    # Images and weights in channels_last (NHWC); null: for convolutional networks, not ViTs (1.4x faster on a CPU).
    channels_last: bool | None = None
    compile: bool = False
    grad_clip: float | None = None
    # Each batch in this many micro-batches, their gradients summed: the same step in less memory.
    accumulate_grad_batches: int = 1
    label_smoothing: float = 0.0
    # Stop after this many epochs without improving `optimized_metric`; null never stops early.
    early_stopping_patience: int | None = None
    log_every_n_steps: int = 50
    progress: bool = True
    # true: deterministic algorithms, no cuDNN benchmark, no TF32 (a seed reproduces a run on a GPU too).
    deterministic: bool = False
    # An exponential moving average of the weights (and buffers), updated every step: val_ema/* each epoch.
    ema_decay: float | None = None
    ema_for_best: bool = False  # the EMA weights pick the best checkpoint and are the ones exported
    # Debugging (conf/debug/): batches an epoch as a count (int) or a fraction (float); the same first
    # N training batches every epoch, and for validation (an overfit check); steps to profile.
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    overfit_batches: int = 0
    profile_steps: int = 0
    # Measure model/latency_ms after training (batch 1, eager, one CPU thread) even when optimized_metric does not
    # name it.
    latency: bool = False
    # Also write last.pt every N optimizer steps (0: at epoch ends only): a preempted job loses minutes, not an epoch.
    checkpoint_every_n_steps: int = 0
    # What a finished run keeps: all (last.pt and best.pt), best (best.pt: no resume), none (export and the
    # MLflow copy of best.pt only: no resume, no re-export from the run dir).
    keep_checkpoints: str = "all"


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
    # MLflow's system metrics (system/*: CPU, memory, disk, network, the run's own GPU), sampled by the
    # recorder every 10 s ($MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL); needs psutil (and nvidia-ml-py for GPUs).
    system_metrics: bool = False


@dataclass
class ExportConfig:
    onnx: bool = True
    # Largest allowed |logits(PyTorch) - logits(onnxruntime)| on validation images.
    tolerance: float = 1e-4
    num_images: int = 64


@dataclass
class ConfirmConfig:
    """More seeds for a finished sweep's best configurations (what `sweeplab confirm` sets), run into its sweep dir."""

    # The configurations to confirm: the best by their mean over finished seeds; 0: the sweep runs as asked.
    top: int = 0
    # Seeds each of them has finished once confirmed (those it has count; new seeds are the smallest it never ran).
    seeds: int = 5


@dataclass
class SweepConfig:
    """What a sweep (-m) may spend and whether it runs at all; a single run ignores it."""

    # Wall seconds: no job of a grid, no trial of a search starts after them (those running finish). A search
    # counts the seconds its study spent before; a grid counts from the command's start.
    timeout: float | None = None
    # Print what the sweep would run (a grid's jobs, a search's space and trials to go) and exit: nothing runs.
    plan: bool = False
    # Jobs of a parallel sweep (hydra/launcher=joblib) on each GPU at once, each holding a slot of it; null: one job
    # per GPU on a machine with several, any number on a single GPU.
    jobs_per_gpu: int | None = None
    confirm: ConfirmConfig = field(default_factory=ConfirmConfig)


@dataclass
class PathsConfig:
    data_dir: str = "data"
    # Image folders' decoded images and header checks (`sweeplab cache` lists them); where this cannot be
    # written, the user's cache dir (~/.cache/sweeplab).
    cache_dir: str = f"${{paths.data_dir}}/{CACHE_DIR}"
    output_dir: str = "${hydra:runtime.output_dir}"


@dataclass
class TrainConfig:
    dataset: DatasetConfig = MISSING
    model: Any = MISSING  # one of the model schemas: each model family has its own keys
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    device: DeviceConfig = MISSING
    trainer: TrainerConfig = MISSING
    tracking: TrackingConfig = MISSING
    export: ExportConfig = field(default_factory=ExportConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    seed: int = 0
    # What sweeps optimize, early stopping watches and the best checkpoint is picked by: one metric, or a list
    # weighing it against costs ([val/acc,model/latency_ms]); each in its direction (accuracies up; losses and
    # costs down); the first metric measured every epoch picks the best checkpoint.
    optimized_metric: Any = VAL_ACC


def config_dir() -> str:
    """conf/ at the repository root (editable install), else the copy packaged with sweeplab."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package.parents[1] / "conf", package / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"sweeplab's conf/ folder is missing (looked beside {package})")


def register_configs() -> None:
    """Store the schemas at the root of Hydra's config store (`<group>_<kind>_schema`), where YAML options
    extend them (`- /model_mlp_schema@_here_`) and `--help` does not list them as options of the group."""
    schemas = {
        "dataset": {"dataset": DatasetConfig},
        "model": {"mlp": MLPConfig, "cnn": CNNConfig, "torchvision": TorchvisionConfig, "timm": TimmConfig},
        "optimizer": {"sgd": SGDConfig, "adam": AdamConfig, "adamw": AdamWConfig, "rmsprop": RMSpropConfig},
        "scheduler": {
            "none": SchedulerConfig,
            "step": StepSchedulerConfig,
            "cosine": CosineSchedulerConfig,
            "onecycle": OneCycleSchedulerConfig,
        },
        "device": {"device": DeviceConfig},
        "trainer": {"trainer": TrainerConfig},
        "tracking": {"tracking": TrackingConfig},
    }
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    for group, nodes in schemas.items():
        for kind, node in nodes.items():
            store.store(name=f"{group}_{kind}_schema", node=node)
