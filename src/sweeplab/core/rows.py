"""Rows of runs, best first, and their cells as people read them: shared by summaries, tables and compare."""

from __future__ import annotations

from typing import Any

from sweeplab.core.vocabulary import metric_mode


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


def short_names(keys: list[str]) -> dict[str, str]:
    """Each dotted key by its shortest ending that no other key shares: optimizer.lr -> lr."""
    names = {}
    for key in keys:
        parts = key.split(".")
        for size in range(1, len(parts) + 1):
            ending = ".".join(parts[-size:])
            if not any(other != key and (other == ending or other.endswith("." + ending)) for other in keys):
                break
        names[key] = ending
    return names


def legend(names: dict[str, str]) -> str | None:
    """What the shortened column names stand for, on one line; None when no name was shortened."""
    shortened = [f"{short} = {key}" for key, short in names.items() if short != key]
    return "columns: " + ", ".join(shortened) if shortened else None
