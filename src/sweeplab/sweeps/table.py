"""The end-of-sweep table in the terminal. Light on purpose: a joblib or submitit sweep's launching
process prints it without ever importing torch."""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from sweeplab.overrides import overrides_dict, varying_keys
from sweeplab.ranking import legend, short, short_names
from sweeplab.sweeps.results import JobResult, best_result
from sweeplab.vocabulary import FINISHED, TEST_ACC


def print_sweep_table(results: list[JobResult], sweep_dir: Path) -> None:
    """Every job of a sweep: its swept values, status, best metric (the best job marked *); then why jobs failed.

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
    for result in results:
        if result.reason:
            console.print(f"job {result.job} {result.status}: {result.reason}", style="red", markup=False)
    console.print(f"Sweep written to [bold]{sweep_dir}[/bold] (one run dir per job)")



def number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"
