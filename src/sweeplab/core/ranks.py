"""Where this process stands among torchrun's, from the environment torchrun sets (no torch needed to know).

None in a plain `python train.py`, and under torchrun with a single process, which trains as a plain run.
Talking to the other ranks is sweeplab.training.distributed's job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Ranks:
    rank: int
    world_size: int
    local_rank: int  # this machine's GPU for it, on CUDA

    @property
    def main(self) -> bool:
        """Rank 0: the one that reads and writes the run dir, the MLflow run and the export."""
        return self.rank == 0


def launched() -> Ranks | None:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size < 2 or "RANK" not in os.environ:
        return None
    return Ranks(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def follower() -> bool:
    """A rank other than 0: its run dir, record and messages are rank 0's."""
    ranks = launched()
    return ranks is not None and not ranks.main


def torchrun_arguments(ranks: Ranks) -> str:
    """The torchrun arguments that start `ranks.world_size` processes again, as many on each node."""
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", ranks.world_size))
    nodes = ranks.world_size // per_node
    return f"--nproc_per_node={per_node}" + (f" --nnodes={nodes}" if nodes > 1 else "")
