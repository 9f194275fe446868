"""Range checks that types cannot express (lr > 0, batch_size >= 1): one line naming the key, before any compute."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sweeplab.core.errors import UserError
from sweeplab.core.ranks import Ranks
from sweeplab.core.vocabulary import KEPT_CHECKPOINTS, OPTIMIZABLE, RUN_COSTS, objectives, selected_metric

PRECISIONS = ("auto", "32", "bf16", "fp16")
POLICIES = ("none", "randaugment", "trivialaugment", "autoaugment")
DEVICE_TYPES = ("auto", "cpu", "cuda", "mps")
VAL_SPLITS = ("train", "test")

Range = tuple[Callable[[Any], bool], str]  # (the value is valid, what a valid value is)


def at_least(bound: float, why: str = "") -> Range:
    return (lambda value: value >= bound, f"must be >= {bound}{why}")


def above(bound: float, why: str = "") -> Range:
    return (lambda value: value > bound, f"must be > {bound}{why}")


def within(low: float, high: float, text: str, why: str = "") -> Range:
    """`text` names the interval as written ([0, 1), (0, 1] ...); its brackets decide which ends are in it."""
    low_in, high_in = text.startswith("["), text.endswith("]")
    return (lambda value: (low <= value if low_in else low < value) and (value <= high if high_in else value < high),
            f"must be in {text}{why}")


def each(check: Range, what: str) -> Range:
    return (lambda values: len(values) > 0 and all(check[0](value) for value in values), f"must list {what}")


PROBABILITY = within(0, 1, "[0, 1]", " (a probability)")
# Every numeric key's valid values, by its dotted name: torch would take the others with a traceback, or take them
# and diverge, divide by zero or loop forever. Checked wherever the composed config has the key (a model's,
# optimizer's or scheduler's own keys only with that option); null, where a key allows it, turns the key off. The
# config reference shows them; tests/test_config.py fails on a numeric key without one.
RANGES: dict[str, Range] = {
    "seed": within(0, 2**32, "[0, 2**32)", " (numpy's seeds; torchrun's ranks add their rank, modulo 2**32)"),
    "dataset.batch_size": at_least(1),
    "dataset.eval_batch_size": at_least(1),
    "dataset.num_workers": at_least(0, " (0: images are read in the training process)"),
    "dataset.val_fraction": within(0, 1, "(0, 1)"),
    "dataset.test_fraction": within(0, 1, "[0, 1)", " (0: no test split)"),
    "dataset.image_size": at_least(1),
    "dataset.crop_size": at_least(1),
    "dataset.augment.random_crop_padding": at_least(0, " (0: no random crop)"),
    "dataset.augment.random_erasing": PROBABILITY,
    "dataset.augment.mixup_alpha": at_least(0, " (0 turns mixup off)"),
    "dataset.augment.cutmix_alpha": at_least(0, " (0 turns cutmix off)"),
    "dataset.augment.mix_prob": PROBABILITY,
    "dataset.augment.switch_prob": PROBABILITY,
    "dataset.mean": each(within(0, 1, "[0, 1]"), "one value in [0, 1] per channel (images are scaled to [0, 1])"),
    "dataset.std": each(above(0), "one value > 0 per channel (images are divided by it)"),
    "model.min_size": at_least(0, " (0 keeps the data's size)"),
    "model.width": above(0, " (a multiplier of the layers' widths)"),
    "model.hidden": (lambda widths: all(width >= 1 for width in widths),
                     "must list widths >= 1 (a layer of 0 units passes nothing on: the network could not learn)"),
    "optimizer.lr": above(0),
    "optimizer.weight_decay": at_least(0, " (0 turns it off)"),
    "optimizer.momentum": within(0, 1, "[0, 1)", " (0 turns it off)"),
    "optimizer.alpha": within(0, 1, "[0, 1)", " (RMSprop's smoothing of squared gradients)"),
    "optimizer.betas": (lambda betas: len(betas) == 2 and all(0 <= beta < 1 for beta in betas),
                        "must be two values in [0, 1), e.g. [0.9,0.999]"),
    "scheduler.warmup_epochs": at_least(0, " (0: no warm-up)"),
    "scheduler.step_epochs": at_least(1, " (the epochs between two decays)"),
    "scheduler.gamma": within(0, 1, "(0, 1]", " (what each decay multiplies the learning rate by)"),
    "scheduler.min_lr": at_least(0),
    "scheduler.pct_start": within(0, 1, "(0, 1)", " (the share of the run spent warming up)"),
    "trainer.epochs": at_least(1),
    "trainer.grad_clip": above(0, " (or null)"),
    "trainer.accumulate_grad_batches": at_least(1, " (1: every batch in one pass)"),
    "trainer.label_smoothing": within(0, 1, "[0, 1)"),
    "trainer.early_stopping_patience": at_least(1),
    "trainer.log_every_n_steps": at_least(1),
    "trainer.ema_decay": within(0, 1, "(0, 1)", ", e.g. 0.999"),
    "trainer.overfit_batches": at_least(0, " (0 turns it off)"),
    "trainer.profile_steps": at_least(0, " (0 turns it off)"),
    "trainer.checkpoint_every_n_steps": at_least(0, " (0: epoch ends only)"),
    "tracking.flush_seconds": at_least(0, " (0: sent as they come)"),
    "export.tolerance": above(0),
    "export.num_images": at_least(1),
    "sweep.timeout": at_least(0, " (wall seconds; 0: no job starts)"),
    "sweep.confirm.top": at_least(0, " (0: no confirmation)"),
    "sweep.confirm.seeds": at_least(1),
    "sweep.jobs_per_gpu": at_least(1, " (null: one job per GPU where there are several, any number on one GPU)"),
}


def check_ranges(cfg: DictConfig) -> None:
    """Fail before any compute on required keys left unset and well-typed but meaningless values."""
    # paths holds Hydra's run-time interpolations, which resolve only inside a Hydra run.
    groups = [key for key in cfg if key != "paths" and OmegaConf.is_config(cfg[key])]
    missing = sorted(key for group in groups for key in OmegaConf.missing_keys(cfg[group]))
    if missing:
        raise UserError(f"{missing[0]} is required but not set: pass it, e.g. `{missing[0]}=...`")
    rules = [
        (key, valid(value), requirement) for key, (valid, requirement) in RANGES.items()
        if (value := OmegaConf.select(cfg, key, default=None)) is not None
    ]
    rules += [
        ("dataset.val_split", cfg.dataset.val_split in VAL_SPLITS, f"must be one of {VAL_SPLITS}"),
        ("dataset.cache", cfg.dataset.cache in ("auto", True, False), "must be auto, true or false"),
        ("trainer.precision", cfg.trainer.precision in PRECISIONS, f"must be one of {PRECISIONS}"),
        ("device.type", cfg.device.type in DEVICE_TYPES, f"must be one of {DEVICE_TYPES}"),
        ("optimized_metric", objectives_ok(cfg.optimized_metric),
         f"must be one of {OPTIMIZABLE}, or a list of them and of {RUN_COSTS}, with one of the first"),
        ("trainer.accumulate_grad_batches", cfg.trainer.accumulate_grad_batches <= cfg.dataset.batch_size,
         f"must be at most dataset.batch_size={cfg.dataset.batch_size} (each micro-batch needs an image)"),
    ]
    rules += categorical_rules(cfg.dataset.augment, cfg.trainer)
    if cfg.optimizer.get("nesterov"):
        rules.append(("optimizer.momentum", cfg.optimizer.momentum > 0, "must be > 0 with optimizer.nesterov=true"))
    if "min_lr" in cfg.scheduler:
        rules.append(("scheduler.min_lr", cfg.scheduler.min_lr <= cfg.optimizer.lr,
                      f"must be at most optimizer.lr={cfg.optimizer.lr} (the schedule decays to it)"))
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


def categorical_rules(augment: DictConfig, trainer: DictConfig) -> list[tuple[str, bool, str]]:
    """The keys whose values are names, or whose range depends on another key."""
    return [
        ("dataset.augment.policy", augment.policy in POLICIES, f"must be one of {POLICIES}"),
        ("trainer.keep_checkpoints", trainer.keep_checkpoints in KEPT_CHECKPOINTS,
         f"must be one of {', '.join(KEPT_CHECKPOINTS)}"),
        ("trainer.log_every_n_steps", not trainer.profile_steps or trainer.log_every_n_steps == 1,
         "must be 1 with trainer.profile_steps (the profiler steps at logging steps; debug=profile sets it)"),
        ("trainer.ema_for_best", not trainer.ema_for_best or trainer.ema_decay is not None,
         "needs trainer.ema_decay (e.g. 0.999)"),
        *((f"trainer.{key}", batch_limit_ok(trainer[key]),
           "must be a count of batches (an int >= 1), a fraction (a float in (0, 1]) or null")
          for key in ("limit_train_batches", "limit_val_batches")),
    ]


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
