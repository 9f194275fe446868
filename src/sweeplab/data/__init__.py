"""Data: config -> splits (sources) -> device batches (batches) -> float tensors (augment)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from omegaconf import OmegaConf

from sweeplab.config.schema import AugmentConfig, DatasetConfig, TrainerConfig
from sweeplab.config.targets import trusted_instantiate
from sweeplab.core.errors import UserError
from sweeplab.core.ranks import Ranks
from sweeplab.data.augment import BatchPreprocess, Policies
from sweeplab.data.batches import FirstBatches, SameBatches, make_batches
from sweeplab.data.sources import Splits


@dataclass
class Data:
    train: object  # iterable of (uint8 images, labels) batches on the device, with len()
    val: object
    test: object | None  # scored once, with the best checkpoint; None: the run has no test score
    preprocess: BatchPreprocess
    classes: list[str]
    image_shape: tuple[int, int, int]
    splits: Splits  # the data sets behind the batches (their digests, for the run's record)
    mix: Callable | None = None  # MixUp/CutMix of training batches, if asked for (sweeplab.data.policies)
    limits: str | None = None  # under a debugging limit (trainer.limit_*, overfit_batches): what the scores cover

    @property
    def sizes(self) -> dict[str, int]:
        """Images per split (train, val, test), as the data sets hold them (before any debugging limit)."""
        return {name: len(split) if split is not None else 0 for name, split in self.splits.named()}  # type: ignore[arg-type]


def load_splits(cfg: DatasetConfig) -> Splits:
    """The configured splits; a sequential sweep's jobs share one decoded copy instead of decoding it each time."""
    return load_source(OmegaConf.to_yaml(cfg.source, resolve=True))


@functools.lru_cache(maxsize=2)  # the data sets of the last jobs: a sweep over two data sets still hits
def load_source(source: str) -> Splits:
    """Call the configured loader ourselves: Hydra's instantiate would bury a UserError in its own message."""
    config = OmegaConf.create(source)
    return trusted_instantiate(config, _partial_=True, _convert_="all")()


def build_data(cfg: DatasetConfig, device: torch.device, seed: int) -> Data:
    splits = load_splits(cfg)
    channels = splits.image_shape[0]
    if len(cfg.mean) != channels or len(cfg.std) != channels:
        raise UserError(
            f"dataset.mean/std have {len(cfg.mean)}/{len(cfg.std)} values but the images have {channels} channels: "
            "give one value per channel"
        )
    eval_batch_size = cfg.eval_batch_size or cfg.batch_size
    test = splits.test
    policies = augmentation_policies(cfg.augment, len(splits.classes), on_batches=not splits.policy_applied)
    return Data(
        train=make_batches(splits.train, cfg.batch_size, True, device, seed, cfg.num_workers),
        val=make_batches(splits.val, eval_batch_size, False, device, seed, cfg.num_workers),
        test=make_batches(test, eval_batch_size, False, device, seed, cfg.num_workers) if test is not None else None,
        preprocess=BatchPreprocess(list(cfg.mean), list(cfg.std), cfg.augment, device=device,
                                   policy=policies.image, erase=policies.erase),
        classes=splits.classes,
        image_shape=splits.image_shape,
        splits=splits,
        mix=policies.mix,
    )


def augmentation_policies(augment: AugmentConfig, num_classes: int, on_batches: bool = True) -> Policies:
    """torchvision's policies, erasing and mixing, only when asked for: importing torchvision takes 1.4 s."""
    if augment.policy == "none" and not (augment.random_erasing or augment.mixup_alpha or augment.cutmix_alpha):
        return Policies()
    from sweeplab.data.policies import build_policies

    return build_policies(augment, num_classes, on_batches)


def limited(data: Data, trainer: TrainerConfig) -> Data:
    """Data for a debugging run: fewer batches an epoch, or the same few batches every epoch (train and val)."""
    test = FirstBatches.of(data.test, trainer.limit_val_batches)  # scored as validation is, never overfit on
    if trainer.overfit_batches:
        same = SameBatches(data.train, trainer.overfit_batches)
        limited_data = replace(data, train=same, val=same, test=test)
    else:
        limited_data = replace(data, train=FirstBatches.of(data.train, trainer.limit_train_batches),
                               val=FirstBatches.of(data.val, trainer.limit_val_batches), test=test)
    return replace(limited_data, limits=limits_said(data, limited_data))


def limited_batches(full: object, used: object, split: str) -> str | None:
    if used is None or used is full:
        return None
    return f"{len(used)} of {len(full)} {split} batches"  # type: ignore[arg-type]


def limits_said(full: Data, used: Data) -> str | None:
    """`1 of 36 train batches, 1 of 9 val batches, 1 of 12 test batches`: what a limited run's scores cover."""
    parts = [limited_batches(getattr(full, split), getattr(used, split), split) for split in ("train", "val", "test")]
    if isinstance(used.train, SameBatches):
        parts[:2] = [f"the same {len(used.train)} batches for train and val, every epoch"]
    said = [part for part in parts if part]
    return ", ".join(said) if said else None


def sharded(data: Data, ranks: Ranks) -> Data:
    """This rank's slice of every batch, under torchrun: what it trains and evaluates on (the figures and the
    export, rank 0's, take the whole validation set)."""
    return replace(data, train=data.train.sharded(ranks), val=data.val.sharded(ranks),
                   test=data.test.sharded(ranks) if data.test is not None else None)
