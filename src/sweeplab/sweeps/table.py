"""The end-of-sweep table in the terminal. Light on purpose: a joblib or submitit sweep's launching
process prints it without ever importing torch."""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from sweeplab.aggregate import SEED, aggregate, mean_column, spread
from sweeplab.overrides import overrides_dict, varying_keys
from sweeplab.ranking import legend, short, short_names
from sweeplab.sweeps.results import JobResult, best_result
from sweeplab.vocabulary import FINISHED, TEST_ACC


def print_sweep_table(results: list[JobResult], sweep_dir: Path) -> None:
    """Every job of a sweep: its swept values, status, best metric (the best job marked *); when the seed varies,
    each configuration's mean ± std over its seeds; then why jobs failed.

    Made to be read in an 80-column terminal: swept keys by their short names (a legend under the
    table), no word or number broken, the reasons on lines of their own.
    """
    metric = results[0].metric
    values = [overrides_dict(r.overrides) for r in results]
    keys = varying_keys(values)
    best = best_result(results)
    names = short_names(keys)
    table = Table(title=f"sweep: best {metric} marked *", box=box.SIMPLE_HEAVY, caption=legend(names),
                  pad_edge=False, collapse_padding=True)
    tested = any(r.test_acc is not None for r in results)  # a data set without a test split: no column
    for column in ("job", *(names[key] for key in keys), "status", metric, *((TEST_ACC,) if tested else ()), "seconds"):
        table.add_column(column, justify="left" if column == "status" else "right", no_wrap=True)
    for result, job_values in zip(results, values, strict=True):
        style = None if result.status == FINISHED else "red"
        table.add_row(
            f"{result.job}{'*' if result is best else ''}", *(short(job_values.get(key, "")) for key in keys),
            result.status, number(result.value), *((number(result.test_acc),) if tested else ()),
            "" if result.seconds is None else f"{result.seconds:.0f}", style=style,
        )
    console = Console()
    console.print(table)
    if SEED in keys:
        console.print(seed_table(results, values, keys, tested))
    for result in results:
        if result.reason:
            console.print(f"job {result.job} {result.status}: {result.reason}", style="red", markup=False)
    console.print(f"Sweep written to [bold]{sweep_dir}[/bold] (one run dir per job)")


def seed_table(results: list[JobResult], values: list[dict[str, str]], keys: list[str], tested: bool) -> Table:
    """Each configuration over its seeds: finished and failed jobs, mean ± std (the best by mean marked *).

    Shown when the seed varies: whether one configuration beats another by more than the seeds' spread.
    """
    metric = results[0].metric
    metrics = [metric, *((TEST_ACC,) if tested else ())]
    rows = [{**{key: job_values.get(key, "") for key in keys}, "status": r.status, metric: r.value,
             TEST_ACC: r.test_acc} for r, job_values in zip(results, values, strict=True)]
    configurations = aggregate(rows, keys, metrics)
    kept = [key for key in keys if key != SEED]
    names = short_names(kept)
    table = Table(title=f"over seeds: mean ± std, best {metric} marked *", box=box.SIMPLE_HEAVY,
                  caption=legend(names), pad_edge=False, collapse_padding=True)
    for column in (*(names[key] for key in kept), "n", "failed", *metrics):
        table.add_column(column, justify="right", no_wrap=True)
    for index, row in enumerate(configurations):
        marked = "*" if index == 0 and row[mean_column(metric)] is not None else ""
        table.add_row(*(short(row[key]) for key in kept), str(row["n"]), str(row["failed"]),
                      spread(row, metric) + marked, *(spread(row, m) for m in metrics[1:]))
    return table


def number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"
