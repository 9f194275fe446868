"""The end-of-sweep table in the terminal. Light on purpose: a joblib or submitit sweep's launching
process prints it without ever importing torch."""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from sweeplab.core.aggregate import (
    SEED,
    STATISTICS_LEGEND,
    aggregate,
    interval_cell,
    mean_column,
    p_cell,
    spread,
)
from sweeplab.core.overrides import overrides_dict, varying_keys
from sweeplab.core.rows import cell, legend, short, short_names
from sweeplab.core.vocabulary import TEST_ACC
from sweeplab.runs.results import ENDED, JobResult, best_result
from sweeplab.sweeps.front import front


def print_sweep_table(results: list[JobResult], sweep_dir: Path, stopped: str | None = None,
                      seed: int | None = None) -> None:
    """Every job of a sweep: its swept values, status, best metric (the best job marked *); when the seed varies,
    each configuration's mean ± std over its seeds; then why jobs failed. `seed` is the one a job whose overrides
    name none ran.

    Made to be read in an 80-column terminal: swept keys by their short names (a legend under the
    table), no word or number broken, the reasons on lines of their own.
    """
    values = [{**({} if seed is None else {SEED: str(seed)}), **overrides_dict(r.overrides)} for r in results]
    keys = varying_keys(values)
    tested = any(r.test_acc is not None for r in results)  # a data set without a test split: no column
    console = Console()
    # What goes where the terminal is too narrow (e.g. a search's four params): the time, then the test scores and
    # the intervals over seeds; the swept values, the optimized metric and the tests against the best stay.
    console.print(fitting(console, [jobs_table(results, values, keys, tested, timed) for timed in (True, False)]))
    if SEED in keys:
        console.print(fitting(console, [seed_table(results, values, keys, tested and full, full)
                                        for full in (True, False)]))
    for result in results:
        if result.reason:
            console.print(f"job {result.job} {result.status}: {result.reason}", style="red", markup=False)
    if stopped:
        console.print(f"Stopped early: {stopped}", markup=False)
    console.print(f"Sweep written to [bold]{sweep_dir}[/bold] (one run dir per job)")


def fitting(console: Console, tables: list[Table]) -> Table:
    """The first of the tables that fits the terminal's width, else the last."""
    for table in tables:
        if console.measure(table, options=console.options.update(max_width=100_000)).maximum <= console.width:
            return table
    return tables[-1]


def jobs_table(results: list[JobResult], values: list[dict[str, str]], keys: list[str], tested: bool,
               timed: bool) -> Table:
    metric = results[0].metric
    best = best_result(results)
    names = short_names(keys)
    costs, front = objectives_of(results)
    title = f"sweep: best {metric} marked *" + (", its Pareto set (every objective) +" if costs else "")
    # No padding: the box's space between columns is enough, and a search's four params fit 80 columns.
    table = Table(title=title, box=box.SIMPLE_HEAVY, caption=legend(names), padding=0, pad_edge=False)
    columns = ("job", *(names[key] for key in keys), "status", metric, *(name.split("/")[-1] for name in costs),
               *((TEST_ACC,) if tested else ()), *(("seconds",) if timed else ()))
    for column in columns:
        table.add_column(column, justify="left" if column == "status" else "right", no_wrap=True)
    for index, (result, job_values) in enumerate(zip(results, values, strict=True)):
        seconds = "" if result.seconds is None else f"{result.seconds:.0f}"
        table.add_row(
            f"{result.job}{'*' if result is best else ''}{'+' if index in front else ''}",
            *(short(job_values.get(key, "")) for key in keys), result.status, number(result.value),
            *(cell((result.objectives or {}).get(name)) for name in costs),
            *((number(result.test_acc),) if tested else ()), *((seconds,) if timed else ()),
            style=None if result.status in ENDED else "red",
        )
    return table


def objectives_of(results: list[JobResult]) -> tuple[list[str], set[int]]:
    """Where optimized_metric names several: the objectives beside the metric's own column, and the indices of the
    jobs that form the Pareto set."""
    names = next((list(result.objectives) for result in results if result.objectives), [])
    shown = {results[0].metric, results[0].metric.replace("val_ema/", "val/")}
    on_front = {result.job for result in front(results)}
    return ([name for name in names if name not in shown],
            {index for index, result in enumerate(results) if result.job in on_front})


def seed_table(results: list[JobResult], values: list[dict[str, str]], keys: list[str], tested: bool,
               intervals: bool = True) -> Table:
    """Each configuration over its seeds: finished and failed jobs, mean ± std, the interval of the mean and the test
    against the best (the best by mean marked *).

    Shown when the seed varies: whether one configuration beats another by more than the seeds' spread.
    """
    metric = results[0].metric
    metrics = [metric, *((TEST_ACC,) if tested else ())]
    rows = [{**{key: job_values.get(key, "") for key in keys}, "status": r.status, metric: r.value,
             TEST_ACC: r.test_acc} for r, job_values in zip(results, values, strict=True)]
    configurations = aggregate(rows, keys, metrics)
    kept = [key for key in keys if key != SEED]
    names = short_names(kept)
    caption = "\n".join(filter(None, [legend(names), STATISTICS_LEGEND]))
    table = Table(title=f"over seeds: mean ± std, best {metric} marked *", box=box.SIMPLE_HEAVY,
                  caption=caption, pad_edge=False, collapse_padding=True)
    for column in (*(names[key] for key in kept), "n", "failed", metric, *(("CI",) if intervals else ()), "p",
                   *metrics[1:]):
        table.add_column(column, justify="right", no_wrap=True)
    for index, row in enumerate(configurations):
        marked = "*" if index == 0 and row[mean_column(metric)] is not None else ""
        table.add_row(*(short(row[key]) for key in kept), str(row["n"]), str(row["failed"]),
                      spread(row, metric) + marked, *((interval_cell(row, metric),) if intervals else ()),
                      p_cell(row, metric), *(spread(row, m) for m in metrics[1:]))
    return table


def number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"
