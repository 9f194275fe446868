"""Range checks that types cannot express (lr > 0, batch_size >= 1): one line naming the key, before any compute."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from sweeplab.errors import UserError
from sweeplab.vocabulary import OPTIMIZABLE

PRECISIONS = ("auto", "32", "bf16", "fp16")
DEVICE_TYPES = ("auto", "cpu", "cuda", "mps")


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
        ("optimized_metric", cfg.optimized_metric in OPTIMIZABLE, f"must be one of {OPTIMIZABLE}"),
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
