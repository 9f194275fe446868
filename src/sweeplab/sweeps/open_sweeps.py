"""A sweep's ending, however it ends. Hydra 1.3 calls the callbacks' on_multirun_end only when the
sweep returns; when it raises (Ctrl-C, a search's user error) sweeplab.cli.train calls them from here,
so the MLflow parent run is ended, the table printed and the exit code set all the same. Light: the
Hydra main imports it at start-up."""

from __future__ import annotations

from typing import Any

unended: list[tuple[Any, Any]] = []  # (callback, config) of the sweeps this process started and not yet ended


def started(callback: Any, config: Any) -> None:
    unended.append((callback, config))


def ended(callback: Any) -> None:
    unended[:] = [(other, config) for other, config in unended if other is not callback]


def end_interrupted_sweeps() -> None:
    """on_multirun_end for each callback still waiting for it, in Hydra's order (the last started first)."""
    while unended:
        callback, config = unended.pop()
        callback.on_multirun_end(config)
