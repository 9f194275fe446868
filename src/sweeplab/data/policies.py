"""Augmentation that torchvision.transforms.v2 does best: its policies (RandAugment, TrivialAugment, AutoAugment),
random erasing, and MixUp/CutMix, applied to a batch on the device.

Policies and erasing draw for each image of a batch on its own (a transform applied to a whole
tensor would give every image of the batch the same operations); mixing works on whole batches
and returns soft targets. All draw from torch's global generator, which the run's seed sets.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision.transforms import v2

from sweeplab.config.schema import AugmentConfig
from sweeplab.data.augment import Batch, Policies

POLICIES = {"randaugment": v2.RandAugment, "trivialaugment": v2.TrivialAugmentWide, "autoaugment": v2.AutoAugment}

def build_policies(augment: AugmentConfig, num_classes: int, on_batches: bool = True) -> Policies:
    """`on_batches=False`: the policy is applied where the images are decoded (image folders' workers)."""
    return Policies(
        image=each_image(policy_transform(augment.policy)) if augment.policy != "none" and on_batches else None,
        erase=each_image(v2.RandomErasing(p=augment.random_erasing)) if augment.random_erasing else None,
        mix=BatchMixing(augment, num_classes) if augment.mixup_alpha or augment.cutmix_alpha else None,
    )


def policy_transform(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    return POLICIES[name]()


def each_image(transform: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
    return lambda batch: torch.stack([transform(image) for image in batch])


class BatchMixing:
    """timm's switches: mix a batch with probability `mix_prob`, by MixUp or CutMix (CutMix with `switch_prob`
    when both are on); the targets become the mixed one-hot labels."""

    def __init__(self, augment: AugmentConfig, num_classes: int):
        choices = [v2.MixUp(alpha=augment.mixup_alpha, num_classes=num_classes)] if augment.mixup_alpha else []
        if augment.cutmix_alpha:
            choices.append(v2.CutMix(alpha=augment.cutmix_alpha, num_classes=num_classes))
        both = len(choices) == 2
        self.mix = v2.RandomChoice(choices, p=[1 - augment.switch_prob, augment.switch_prob]) if both else choices[0]
        self.mix_prob = augment.mix_prob

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if torch.rand(()).item() >= self.mix_prob:
            return images, labels
        return self.mix(images, labels)
