"""Replicates folded into configurations: one row per configuration, its runs' metrics as mean ± std.

A sweep over `seed=0,1,2` asks whether a learning rate is better or only luckier; the answer is the
spread over seeds. The parent run's summary (aggregate.csv), the end-of-sweep table and `sweeplab
compare --aggregate` all fold their rows here, so the three agree on every number. Pure and light:
the recorder and a sweep's launching process use it without torch.
"""

from __future__ import annotations

import shlex
import statistics
from typing import Any

from sweeplab.core.overrides import varying_keys
from sweeplab.core.rows import best_first
from sweeplab.core.vocabulary import FAILED, FINISHED

SEED = "seed"  # the key a sweep's replicates differ in


def seeds_vary(rows: list[dict[str, Any]], keys: list[str]) -> bool:
    """Whether the rows are replicates: `seed` among the keys whose value differs between them."""
    return SEED in varying_keys([{key: str(row.get(key)) for key in keys} for row in rows])


def aggregate(rows: list[dict[str, Any]], keys: list[str], metrics: list[str],
              left_out: str = SEED) -> list[dict[str, Any]]:
    """One row per configuration of `keys` without `left_out`: its values, `n` (finished runs), `failed`, and
    `<metric>_mean`, `<metric>_std` of each metric over the finished runs; best first by metrics[0]'s mean.

    Failed runs are counted, never averaged: a diverged seed's partial metrics would flatter or sink its
    configuration. Runs still running (or killed, to be resumed) count in neither.
    """
    kept = [key for key in keys if key != left_out]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(key) for key in kept), []).append(row)
    configurations = [configuration_row(dict(zip(kept, values, strict=True)), members, metrics)
                      for values, members in groups.items()]
    return best_first(configurations, mean_column(metrics[0]), metrics[0])


def configuration_row(values: dict[str, Any], members: list[dict[str, Any]], metrics: list[str]) -> dict[str, Any]:
    finished = [row for row in members if row["status"] == FINISHED]
    row = {**values, "n": len(finished), "failed": sum(member["status"] == FAILED for member in members)}
    for metric in metrics:
        mean, std = mean_and_std([run[metric] for run in finished if run.get(metric) is not None])
        row[mean_column(metric)], row[std_column(metric)] = mean, std
    return row


def mean_and_std(values: list[float]) -> tuple[float | None, float | None]:
    """The mean and the sample standard deviation (ddof=1); no std for fewer than two values, no mean for none."""
    mean = statistics.mean(values) if values else None
    return mean, statistics.stdev(values) if len(values) >= 2 else None


def mean_column(metric: str) -> str:
    return f"{metric}_mean"


def std_column(metric: str) -> str:
    return f"{metric}_std"


def spread(row: dict[str, Any], metric: str) -> str:
    """A table cell: `0.9500 ± 0.0071`; the mean alone from a single run; nothing without a finished run."""
    mean, std = row[mean_column(metric)], row[std_column(metric)]
    if mean is None:
        return ""
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"


def best_config(configurations: list[dict[str, Any]], keys: list[str], metric: str,
                left_out: str = SEED) -> str | None:
    """The best configuration's overrides, shell-quoted, in the order of `keys`: what to run again (with new
    seeds); None while no configuration has a finished run."""
    best = configurations[0] if configurations else None
    if best is None or best[mean_column(metric)] is None:
        return None
    return shlex.join(f"{key}={best[key]}" for key in keys if key != left_out)
