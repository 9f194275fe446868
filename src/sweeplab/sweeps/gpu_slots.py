"""GPUs for the running jobs of a local parallel sweep: slots handed out as jobs start and given back as they end.

A slot is one job's share of a GPU: one job per GPU by default, `sweep.jobs_per_gpu` jobs on each when it is set
(small models leave a GPU mostly idle alone). Slots take the GPUs in turn, so jobs spread over every GPU before
any GPU takes a second one.

joblib reuses its worker processes, so a job cannot be given a GPU through CUDA_VISIBLE_DEVICES (CUDA reads
it once, when it starts in a process): it gets `cuda:<its slot's GPU>` instead. A slot is an exclusive lock on a file
in the sweep dir, which the operating system releases when the job's process ends, SIGKILLed or not, so no
slot is ever lost; a job that finds every slot taken waits for one. Slots are named by host, so jobs on two
nodes that share the sweep dir (a cluster's shared file system) never wait for each other's GPUs.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)
SLOTS_DIR = ".gpu_slots"


class DeviceSlots:
    def __init__(self, sweep_dir: Path, gpus: int, jobs_per_gpu: int = 1, poll_seconds: float = 0.5):
        self.folder = sweep_dir / SLOTS_DIR
        self.gpus = gpus
        self.count = gpus * jobs_per_gpu
        self.poll_seconds = poll_seconds

    @contextlib.contextmanager
    def slot(self) -> Iterator[int]:
        """The GPU of a free slot, held until the block ends."""
        index, lock = self.acquire()
        try:
            yield self.gpu_of(index)
        finally:
            lock.close()  # closing the file releases its lock

    def gpu_of(self, slot: int) -> int:
        """acquire takes the lowest free slot: numbered in turn over the GPUs, the first jobs get a GPU each."""
        return slot % self.gpus

    def acquire(self) -> tuple[int, IO]:
        self.folder.mkdir(parents=True, exist_ok=True)
        waiting = False
        host = socket.gethostname()
        while True:
            for index in range(self.count):
                lock = (self.folder / f"{host}-{index}.lock").open("a")
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return index, lock
                except BlockingIOError:
                    lock.close()
            if not waiting:
                log.info(f"all {self.count} GPU slots are taken by this sweep's other jobs: waiting for one")
                waiting = True
            time.sleep(self.poll_seconds)
