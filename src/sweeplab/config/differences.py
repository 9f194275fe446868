"""What changed between two resolved configs: a run resumes only with the config it started with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Where a run's record goes, how it is shown, what is measured after training and what a sweep may spend may
# change on resume; what it trains on may not.
FREE_TO_CHANGE = ("tracking", "export", "paths", "sweep", "trainer.progress", "trainer.checkpoint_every_n_steps",
                  "trainer.keep_checkpoints", "trainer.latency")


def changed_keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (before, after) for values that differ, among keys both have (a newer sweeplab's new keys
    are not changes), leaving out FREE_TO_CHANGE."""
    old, new = flattened(before), flattened(after)
    return {key: (old[key], new[key]) for key in sorted(old.keys() & new.keys())
            if old[key] != new[key] and not free_to_change(key)}


def free_to_change(key: str) -> bool:
    return any(key == free or key.startswith(f"{free}.") for free in FREE_TO_CHANGE)


def flattened(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    items: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            items |= flattened(value, f"{prefix}{key}.")
        else:
            items[f"{prefix}{key}"] = value
    return items
