"""Which runs no other run beats on every objective: the Pareto set of an accuracy-against-cost sweep.

Pure and light, for the end-of-sweep table, the parent run's summary and an Optuna search's front alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sweeplab.core.vocabulary import metric_mode


def pareto_set(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> set[int]:
    """Indices of the rows with every metric that no other such row dominates (as good on all, better on one), each
    metric in its direction (accuracies up; losses and costs down)."""
    signs = [1 if metric_mode(metric) == "max" else -1 for metric in metrics]
    points = {index: [sign * row[metric] for sign, metric in zip(signs, metrics, strict=True)]
              for index, row in enumerate(rows) if all(row.get(metric) is not None for metric in metrics)}
    return {index for index, point in points.items()
            if not any(dominates(other, point) for other in points.values())}


def dominates(a: list[float], b: list[float]) -> bool:
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(x > y for x, y in zip(a, b, strict=True))
