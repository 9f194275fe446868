"""torchrun's processes as one run: the process group, and the few exchanges a run needs between ranks.

`join()` forms the group once per process: gloo for CPU tensors, nccl for CUDA ones, one GPU per local
rank. The exchanges are plain calls on it: a tensor summed over ranks, every rank's copy of a value,
rank 0's value on every rank. Where a process stands (rank, world size) is sweeplab.core.ranks's.
"""

from __future__ import annotations

import atexit
import time
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from sweeplab.core.ranks import Ranks, launched

T = TypeVar("T")
WORKERS_SETTLE_SECONDS = 0.2  # at exit: what a loaded worker thread needs to drop its last collective


def join() -> Ranks | None:
    """This torchrun job's ranks with their process group formed, or None outside torchrun."""
    ranks = launched()
    if ranks and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(ranks.local_rank)
        dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
        atexit.register(leave)
    return ranks


def join_job_tasks() -> Ranks | None:
    """A submitit job of several tasks (hydra.launcher.tasks_per_node, nodes): torchrun's environment from
    submitit's (rank 0's host and a port of the job's), then the group. Each task keeps every GPU in sight and
    takes its local rank's, as under torchrun."""
    from submitit.helpers import TorchDistributedEnvironment  # only in a submitit job's tasks

    TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    return join()


def leave() -> None:
    """At exit: the group destroyed, then a moment for its worker threads while the interpreter still runs them.

    A gloo worker thread drops a finished collective's tensors after the collective has returned: if the
    process is finalizing by then (a loaded machine delays the thread), dropping a tensor that Python made
    needs the GIL, the thread is ended without it, and the process aborts with "terminate called without an
    active exception" (a core dump showed it on rank 1, which exits while rank 0 still records). The group's
    threads outlive destroy_process_group (DistributedDataParallel keeps it), so the moment is a wait.
    """
    if dist.is_initialized():
        dist.destroy_process_group()
        time.sleep(WORKERS_SETTLE_SECONDS)


def total(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed over every rank, in place."""
    dist.all_reduce(tensor)
    return tensor


def everyone(value: T) -> list[T]:
    """Every rank's `value`, in rank order, on every rank."""
    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def from_main(value: T) -> T:
    """Rank 0's `value` on every rank (the others pass anything)."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def read_by_main(read: Callable[..., T], *args: Any) -> T:
    """`read(*args)` by rank 0, its value on every rank: the run dir is rank 0's (another machine's ranks may not
    see it). A plain call outside torchrun."""
    ranks = launched()
    if ranks is None:
        return read(*args)
    return from_main(read(*args) if ranks.main else None)
