"""Rows of runs, best first, and their cells as people read them: shared by summaries, tables and compare."""

from __future__ import annotations

from typing import Any

from sweeplab.vocabulary import metric_mode


def best_first(rows: list[dict[str, Any]], key: str, metric: str) -> list[dict[str, Any]]:
    """Sorted by `row[key]` in `metric`'s direction (losses up, accuracies down); rows without a value last."""
    sign = 1 if metric_mode(metric) == "max" else -1
    return sorted(rows, key=lambda row: (row[key] is None, -sign * (row[key] or 0)))


def cell(value: Any) -> str:
    """A value in a table: floats to 4 significant digits, nothing for a missing value."""
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def short(value: str) -> str:
    """A swept value as typed (`0.012470427634325` from Optuna) read as a number where it is one: 0.01247."""
    try:
        return f"{float(value):.4g}" if "." in value or "e" in value.lower() else value
    except ValueError:
        return value
