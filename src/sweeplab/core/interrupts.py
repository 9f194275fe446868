"""Stops from outside: Ctrl-C (SIGINT) and SIGTERM (kill, `docker stop`, scancel, a Slurm time limit,
torchrun passing on its own) end a run the same way: KILLED in MLflow, resumable from its checkpoint.

Python's default SIGTERM kills the process where it stands, its MLflow run left RUNNING; sweeplab's own
processes raise Terminated instead, a KeyboardInterrupt, so every path that ends a Ctrl-C'd run ends it too.
"""

from __future__ import annotations

import signal
from types import FrameType

INTERRUPTS = {signal.SIGINT, signal.SIGTERM}


class Terminated(KeyboardInterrupt):
    """A SIGTERM, ended as a Ctrl-C is; only the words and the exit code differ."""


def end_on_sigterm() -> None:
    """From now on, the first SIGTERM raises Terminated; later ones are ignored while it ends the run."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


def how_interrupted(error: KeyboardInterrupt) -> str:
    return "terminated (SIGTERM)" if isinstance(error, Terminated) else "interrupted (Ctrl-C)"


def exit_code(error: KeyboardInterrupt) -> int:
    """A shell's code for a process a signal ended: 128 + the signal's number."""
    return 128 + (signal.SIGTERM if isinstance(error, Terminated) else signal.SIGINT)
