"""Hydra overrides as a job records them (`optimizer.lr=0.01`), read back: what a sweep swept, what a job ran."""

from __future__ import annotations


def overrides_dict(overrides: list[str]) -> dict[str, str]:
    """`["optimizer.lr=0.01", "+x=1"]` -> `{"optimizer.lr": "0.01", "x": "1"}`."""
    pairs = (item.split("=", 1) for item in overrides)
    return {key.lstrip("+~"): value for key, value in (pair for pair in pairs if len(pair) == 2)}


def varying_keys(jobs: list[dict[str, str]]) -> list[str]:
    """The keys whose value differs between jobs: what a sweep swept."""
    return sorted({key for job in jobs for key in job if len({other.get(key) for other in jobs}) > 1})
