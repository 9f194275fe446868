"""Replicates folded into configurations: one row per configuration, its runs' metrics as mean ± std.

A sweep over `seed=0,1,2` asks whether a learning rate is better or only luckier; the answer is the
spread over seeds. The parent run's summary (aggregate.csv), the end-of-sweep table and `sweeplab
compare --aggregate` all fold their rows here, so the three agree on every number, the interval of each
mean and the test against the best included. Light: the recorder and a sweep's launching process use it
without torch, and scipy is imported only where there is something to test (two runs of a configuration, or
two configurations).
"""

from __future__ import annotations

import shlex
import statistics
from typing import Any

from sweeplab.core.overrides import varying_keys
from sweeplab.core.rows import best_first
from sweeplab.core.vocabulary import FAILED, FINISHED

SEED = "seed"  # the key a sweep's replicates differ in
TIED = "tied_with_best"  # not distinguishable from the best configuration (Welch, Holm-corrected, 5%)


def seeds_vary(rows: list[dict[str, Any]], keys: list[str]) -> bool:
    """Whether the rows are replicates: `seed` among the keys whose value differs between them."""
    return SEED in varying_keys([{key: str(row.get(key)) for key in keys} for row in rows])


def aggregate(rows: list[dict[str, Any]], keys: list[str], metrics: list[str],
              left_out: str = SEED) -> list[dict[str, Any]]:
    """One row per configuration of `keys` without `left_out`: its values, `n` (finished runs), `failed`, and for each
    metric over the finished runs `<metric>_mean`, `<metric>_std`, the 95% interval of the mean
    (`<metric>_ci_low`, `<metric>_ci_high`) and Welch's p-value against the best configuration, Holm-corrected
    over the configurations compared (`<metric>_p_holm`); `tied_with_best` says whether metrics[0]'s difference to
    the best is within the noise (None where it cannot be told). Best first by metrics[0]'s mean.

    Failed runs are counted, never averaged: a diverged seed's partial metrics would flatter or sink its
    configuration. Runs still running (or killed, to be resumed) count in neither.
    """
    kept = [key for key in keys if key != left_out]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(key) for key in kept), []).append(row)
    scores = {values: {metric: finished_values(members, metric) for metric in metrics}
              for values, members in groups.items()}
    configurations = [configuration_row(dict(zip(kept, values, strict=True)), members, scores[values])
                      for values, members in groups.items()]
    ranked = best_first(configurations, mean_column(metrics[0]), metrics[0])
    if len(ranked) > 1 and ranked[0][mean_column(metrics[0])] is not None:
        add_tests_against_best(ranked, [scores[tuple(row[key] for key in kept)] for row in ranked], metrics)
    return ranked


def finished_values(members: list[dict[str, Any]], metric: str) -> list[float]:
    return [run[metric] for run in members if run["status"] == FINISHED and run.get(metric) is not None]


def configuration_row(values: dict[str, Any], members: list[dict[str, Any]],
                      scores: dict[str, list[float]]) -> dict[str, Any]:
    row = {**values, "n": sum(member["status"] == FINISHED for member in members),
           "failed": sum(member["status"] == FAILED for member in members)}
    for metric, metric_values in scores.items():
        row[mean_column(metric)], row[std_column(metric)] = mean_and_std(metric_values)
        low, high = interval_columns(metric)
        row[low], row[high] = interval_of(metric_values)
        row[p_column(metric)] = None
    row[TIED] = None
    return row


def interval_of(values: list[float]) -> tuple[float | None, float | None]:
    """The 95% interval of the mean; (None, None) for a single run or none."""
    if len(values) < 2:
        return None, None
    from sweeplab.core.significance import mean_interval  # scipy: here, where it is needed, not in every process

    return mean_interval(values) or (None, None)


def add_tests_against_best(ranked: list[dict[str, Any]], scores: list[dict[str, list[float]]],
                           metrics: list[str]) -> None:
    """Each configuration but the best: Welch's p-value against the best, Holm-corrected over them, per metric."""
    from sweeplab.core.significance import ALPHA, holm, welch_p

    for metric in metrics:
        raw = [welch_p(own[metric], scores[0][metric]) for own in scores[1:]]
        for row, p in zip(ranked[1:], holm(raw), strict=True):
            row[p_column(metric)] = p
    for row in ranked[1:]:
        p = row[p_column(metrics[0])]
        row[TIED] = None if p is None else p >= ALPHA


def mean_and_std(values: list[float]) -> tuple[float | None, float | None]:
    """The mean and the sample standard deviation (ddof=1); no std for fewer than two values, no mean for none."""
    mean = statistics.mean(values) if values else None
    return mean, statistics.stdev(values) if len(values) >= 2 else None


def mean_column(metric: str) -> str:
    return f"{metric}_mean"


def std_column(metric: str) -> str:
    return f"{metric}_std"


def interval_columns(metric: str) -> tuple[str, str]:
    return f"{metric}_ci_low", f"{metric}_ci_high"


def p_column(metric: str) -> str:
    return f"{metric}_p_holm"


def spread(row: dict[str, Any], metric: str) -> str:
    """A table cell: `0.9500 ± 0.0071`; the mean alone from a single run; nothing without a finished run."""
    mean, std = row[mean_column(metric)], row[std_column(metric)]
    if mean is None:
        return ""
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"


def interval_cell(row: dict[str, Any], metric: str) -> str:
    """A table cell: the 95% interval of the mean, `0.9312-0.9688`; nothing where there is none."""
    low, high = (row[column] for column in interval_columns(metric))
    return "" if low is None else f"{low:.4f}-{high:.4f}"


def p_cell(row: dict[str, Any], metric: str) -> str:
    """A table cell for the optimized metric: the Holm-corrected p-value against the best, `=` after it where the two
    are not told apart."""
    p = row[p_column(metric)]
    return "" if p is None else f"{p:.3f}" + ("=" if row[TIED] else "")


STATISTICS_LEGEND = ("CI: 95% interval of the mean (Student's t); p: Welch's t-test against the best, "
                     "Holm-corrected; = not distinguishable from the best at 5%")


def best_config(configurations: list[dict[str, Any]], keys: list[str], metric: str,
                left_out: str = SEED) -> str | None:
    """The best configuration's overrides, shell-quoted, in the order of `keys`: what to run again (with new
    seeds); None while no configuration has a finished run."""
    best = configurations[0] if configurations else None
    if best is None or best[mean_column(metric)] is None:
        return None
    return shlex.join(f"{key}={best[key]}" for key in keys if key != left_out)
