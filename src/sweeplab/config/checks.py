"""Range checks that types cannot express (lr > 0, batch_size >= 1): one line naming the key, before any compute."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from sweeplab.core.errors import UserError
from sweeplab.core.ranks import Ranks
from sweeplab.core.vocabulary import KEPT_CHECKPOINTS, OPTIMIZABLE, RUN_COSTS, objectives, selected_metric

PRECISIONS = ("auto", "32", "bf16", "fp16")
POLICIES = ("none", "randaugment", "trivialaugment", "autoaugment")
DEVICE_TYPES = ("auto", "cpu", "cuda", "mps")
VAL_SPLITS = ("train", "test")

# Values torch takes with a traceback, or takes and then diverges or divides by zero on, by key: (within range,
# the requirement). Checked only where the chosen optimizer or scheduler has the key.
OPTIMIZER_RANGES = {
    "weight_decay": (lambda value: value >= 0, "must be >= 0 (0 turns it off)"),
    "momentum": (lambda value: 0 <= value < 1, "must be in [0, 1) (0 turns it off)"),
    "alpha": (lambda value: 0 <= value < 1, "must be in [0, 1) (RMSprop's smoothing of squared gradients)"),
    "betas": (lambda value: len(value) == 2 and all(0 <= beta < 1 for beta in value),
              "must be two values in [0, 1), e.g. [0.9,0.999]"),
}
SCHEDULER_RANGES = {
    "warmup_epochs": (lambda value: value >= 0, "must be >= 0 (0: no warm-up)"),
    "step_epochs": (lambda value: value >= 1, "must be >= 1 (the epochs between two decays)"),
    "gamma": (lambda value: 0 < value <= 1, "must be in (0, 1] (what each decay multiplies the learning rate by)"),
    "min_lr": (lambda value: value >= 0, "must be >= 0"),
    "pct_start": (lambda value: 0 < value < 1, "must be in (0, 1) (the share of the run spent warming up)"),
}


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
        ("dataset.test_fraction", 0 <= cfg.dataset.test_fraction < 1, "must be in [0, 1) (0: no test split)"),
        ("dataset.val_split", cfg.dataset.val_split in VAL_SPLITS, f"must be one of {VAL_SPLITS}"),
        ("dataset.cache", cfg.dataset.cache in ("auto", True, False), "must be auto, true or false"),
        ("trainer.epochs", cfg.trainer.epochs >= 1, "must be >= 1"),
        ("trainer.label_smoothing", 0 <= cfg.trainer.label_smoothing < 1, "must be in [0, 1)"),
        ("trainer.precision", cfg.trainer.precision in PRECISIONS, f"must be one of {PRECISIONS}"),
        ("device.type", cfg.device.type in DEVICE_TYPES, f"must be one of {DEVICE_TYPES}"),
        ("optimized_metric", objectives_ok(cfg.optimized_metric),
         f"must be one of {OPTIMIZABLE}, or a list of them and of {RUN_COSTS}, with one of the first"),
        ("trainer.log_every_n_steps", cfg.trainer.log_every_n_steps >= 1, "must be >= 1"),
        ("model.width", cfg.model.get("width", 1.0) > 0, "must be > 0 (a multiplier of the layers' widths)"),
        ("model.hidden", all(width >= 1 for width in cfg.model.get("hidden") or []),
         "must list widths >= 1 (a layer of 0 units passes nothing on: the network could not learn)"),
        ("dataset.std", all(std > 0 for std in cfg.dataset.std),
         "must be > 0 for every channel (images are divided by it)"),
        ("trainer.accumulate_grad_batches", cfg.trainer.accumulate_grad_batches <= cfg.dataset.batch_size,
         f"must be at most dataset.batch_size={cfg.dataset.batch_size} (each micro-batch needs an image)"),
        ("export.tolerance", cfg.export.tolerance > 0, "must be > 0"),
        ("export.num_images", cfg.export.num_images >= 1, "must be >= 1"),
    ]
    rules += augment_rules(cfg.dataset.augment) + trainer_rules(cfg.trainer)
    rules += present_rules("optimizer", cfg.optimizer, OPTIMIZER_RANGES)
    rules += present_rules("scheduler", cfg.scheduler, SCHEDULER_RANGES)
    if cfg.optimizer.get("nesterov"):
        rules.append(("optimizer.momentum", cfg.optimizer.momentum > 0, "must be > 0 with optimizer.nesterov=true"))
    if "min_lr" in cfg.scheduler:
        rules.append(("scheduler.min_lr", cfg.scheduler.min_lr <= cfg.optimizer.lr,
                      f"must be at most optimizer.lr={cfg.optimizer.lr} (the schedule decays to it)"))
    if cfg.dataset.eval_batch_size is not None:
        rules.append(("dataset.eval_batch_size", cfg.dataset.eval_batch_size >= 1, "must be >= 1"))
    if (jobs_per_gpu := cfg.sweep.jobs_per_gpu) is not None:
        rules.append(("sweep.jobs_per_gpu", jobs_per_gpu >= 1, "must be >= 1 (null: one job per GPU where there are "
                                                                 "several, any number on a single GPU)"))
    if cfg.trainer.ema_for_best and selected_metric(cfg.optimized_metric, False).startswith("train/"):
        rules.append(("optimized_metric", False, "must be a val/ metric with trainer.ema_for_best (the EMA is not "
                                                  "trained on)"))
    for key, ok, requirement in rules:
        if not ok:
            value = OmegaConf.select(cfg, key)
            raise UserError(f"{key}={value} is invalid: it {requirement}; override it, e.g. `{key}=...`")


def objectives_ok(optimized_metric: Any) -> bool:
    """One epoch metric, or a list of distinct metrics and costs naming at least one epoch metric."""
    if not isinstance(optimized_metric, str) and not OmegaConf.is_list(optimized_metric):
        return False
    names = objectives(optimized_metric)
    return (len(set(names)) == len(names) and set(names) <= set(OPTIMIZABLE + RUN_COSTS)
            and any(name in OPTIMIZABLE for name in names))


def present_rules(group: str, node: DictConfig, ranges: dict) -> list[tuple[str, bool, str]]:
    return [(f"{group}.{key}", within(node[key]), requirement)
            for key, (within, requirement) in ranges.items() if key in node]


def augment_rules(augment: DictConfig) -> list[tuple[str, bool, str]]:
    key = "dataset.augment."
    return [
        (key + "policy", augment.policy in POLICIES, f"must be one of {POLICIES}"),
        (key + "random_erasing", 0 <= augment.random_erasing <= 1, "must be a probability, in [0, 1]"),
        (key + "mixup_alpha", augment.mixup_alpha >= 0, "must be >= 0 (0 turns mixup off)"),
        (key + "cutmix_alpha", augment.cutmix_alpha >= 0, "must be >= 0 (0 turns cutmix off)"),
        (key + "mix_prob", 0 <= augment.mix_prob <= 1, "must be a probability, in [0, 1]"),
        (key + "switch_prob", 0 <= augment.switch_prob <= 1, "must be a probability, in [0, 1]"),
    ]


def trainer_rules(trainer: DictConfig) -> list[tuple[str, bool, str]]:
    rules = [
        ("trainer.overfit_batches", trainer.overfit_batches >= 0, "must be >= 0 (0 turns it off)"),
        ("trainer.profile_steps", trainer.profile_steps >= 0, "must be >= 0 (0 turns it off)"),
        ("trainer.checkpoint_every_n_steps", trainer.checkpoint_every_n_steps >= 0,
         "must be >= 0 (0: epoch ends only)"),
        ("trainer.keep_checkpoints", trainer.keep_checkpoints in KEPT_CHECKPOINTS,
         f"must be one of {', '.join(KEPT_CHECKPOINTS)}"),
        ("trainer.accumulate_grad_batches", trainer.accumulate_grad_batches >= 1,
         "must be >= 1 (1: every batch in one pass)"),
        ("trainer.log_every_n_steps", not trainer.profile_steps or trainer.log_every_n_steps == 1,
         "must be 1 with trainer.profile_steps (the profiler steps at logging steps; debug=profile sets it)"),
        ("trainer.ema_for_best", not trainer.ema_for_best or trainer.ema_decay is not None,
         "needs trainer.ema_decay (e.g. 0.999)"),
    ]
    if trainer.ema_decay is not None:
        rules.append(("trainer.ema_decay", 0 < trainer.ema_decay < 1, "must be in (0, 1), e.g. 0.999"))
    if trainer.early_stopping_patience is not None:
        rules.append(("trainer.early_stopping_patience", trainer.early_stopping_patience >= 1, "must be >= 1"))
    if trainer.grad_clip is not None:
        rules.append(("trainer.grad_clip", trainer.grad_clip > 0, "must be > 0 (or null)"))
    for key in ("limit_train_batches", "limit_val_batches"):
        rules.append((f"trainer.{key}", batch_limit_ok(trainer[key]),
                      "must be a count of batches (an int >= 1), a fraction (a float in (0, 1]) or null"))
    return rules


def check_world_size(cfg: DictConfig, ranks: Ranks) -> None:
    """Under torchrun: batches that split evenly over the processes, on a device torch.distributed has."""
    sizes = {"dataset.batch_size": cfg.dataset.batch_size, "dataset.eval_batch_size": cfg.dataset.eval_batch_size}
    for key, size in sizes.items():
        if size and size % ranks.world_size:
            raise UserError(f"{key}={size} is the global batch, split over torchrun's {ranks.world_size} processes: "
                            f"use a multiple of {ranks.world_size}")
    if cfg.device.type == "mps":
        raise UserError("device=mps cannot train under torchrun (torch.distributed has no MPS backend): use "
                        "python train.py on a Mac, or device=cpu")


def batch_limit_ok(value) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    return value >= 1 if isinstance(value, int) else isinstance(value, float) and 0 < value <= 1
