"""Hydra overrides as a job records them (`optimizer.lr=0.01`), read back: what a sweep swept, what a job ran."""

from __future__ import annotations


def override_key(override: str) -> str:
    """`+optimizer.lr=0.01` -> `optimizer.lr`: the key an override sets, adds or deletes."""
    return override.split("=", 1)[0].lstrip("+~")


def overrides_dict(overrides: list[str]) -> dict[str, str]:
    """`["optimizer.lr=0.01", "+x=1"]` -> `{"optimizer.lr": "0.01", "x": "1"}`."""
    pairs = (item.split("=", 1) for item in overrides)
    return {key.lstrip("+~"): value for key, value in (pair for pair in pairs if len(pair) == 2)}


def varying_keys(jobs: list[dict[str, str]]) -> list[str]:
    """The keys whose value differs between jobs: what a sweep swept."""
    return sorted({key for job in jobs for key in job if len({other.get(key) for other in jobs}) > 1})


# Hydra's own entries among its overrides, and the output dirs: a reproduced sweep runs as new, in a dir of its own.
NOT_REPRODUCED = ("hydra.mode", "hydra.run.dir", "hydra.sweep.dir")


def typed_hydra_overrides(overrides: list[str]) -> list[str]:
    """A sweep's hydra.* overrides as the user typed them (launcher, sweeper, study), without the output dirs."""
    return [override for override in overrides if override.split("=", 1)[0] not in NOT_REPRODUCED]
