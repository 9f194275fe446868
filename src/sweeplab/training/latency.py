"""What a model costs to run: its batch-1 latency, as someone serving it one picture at a time would see it.

Eager inference in `inference_mode` on the run's device, one thread on a CPU (a share of a machine, not all of it),
after warm-up calls; the median of the timed calls in milliseconds, and their spread (the interquartile range).
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

WARM_UP_CALLS, TIMED_CALLS = 5, 30


@torch.inference_mode()
def latency_ms(model: nn.Module, image: torch.Tensor) -> tuple[float, float]:
    """(median, interquartile range) in milliseconds of `model(image)`, image a batch of one on the model's device."""
    model.eval()
    threads = torch.get_num_threads()
    if image.device.type == "cpu":
        torch.set_num_threads(1)
    try:
        for _ in range(WARM_UP_CALLS):
            model(image)
        timings = [timed_call(model, image) for _ in range(TIMED_CALLS)]
    finally:
        torch.set_num_threads(threads)
    quartiles = statistics.quantiles(timings, n=4)
    return statistics.median(timings), quartiles[2] - quartiles[0]


def timed_call(model: nn.Module, image: torch.Tensor) -> float:
    synchronize(image.device)
    started = time.perf_counter()
    model(image)
    synchronize(image.device)
    return (time.perf_counter() - started) * 1000


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work: an accelerator's calls return before they finish."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
