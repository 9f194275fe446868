"""What a person sees in the terminal: a live progress bar and a summary table at the end."""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sweeplab.core.masking import masked_text
from sweeplab.training.engine import Callback, EpochMetrics, Trainer

progress_console = Console(stderr=True)  # live bars on stderr
results_console = Console()  # results on stdout
SUMMARY_ROWS = 20  # epochs the run's table shows at most; train.log has every one
RUN_LOG = "train.log"  # Hydra's job log in the run dir, named after train.py


class ProgressBar(Callback):
    """One bar over all training steps, showing the latest loss, accuracy and images/s."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  val acc {task.fields[acc]}  {task.fields[rate]} img/s"),
            TimeElapsedColumn(),
            console=progress_console,
            transient=False,
        )
        self.task = None

    def on_fit_start(self, trainer: Trainer) -> None:
        total = trainer.steps_per_epoch * trainer.epochs
        self.task = self.progress.add_task("train", total=total, completed=trainer.state.step,
                                           epoch=trainer.state.epoch + 1, loss="-", acc="-", rate="-")
        self.progress.start()

    def on_step_end(self, trainer: Trainer, loss: float, images_per_second: float) -> None:
        self.progress.update(self.task, completed=trainer.state.step, loss=f"{loss:.4f}",
                             rate=f"{images_per_second:,.0f}")

    def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> None:
        self.progress.update(
            self.task,
            completed=trainer.state.step,
            epoch=min(metrics.epoch + 1, trainer.epochs),
            loss=f"{metrics.train_loss:.4f}",
            acc=f"{metrics.val_acc:.2%}",
            rate=f"{metrics.images_per_second:,.0f}",
        )

    def on_fit_end(self, trainer: Trainer) -> None:
        self.progress.stop()


def print_summary(history: list[EpochMetrics], best_epoch: int, metric: str, run_dir: Path,
                  sizes: dict[str, int], test: tuple[float, float] | None, val_split: str,
                  limits: str | None = None) -> None:
    # A light box and a floor under the lr column: in an 80-column terminal rich otherwise cut 1.00e-03 to 1.00e-…
    table = Table(title=f"sweeplab run (best epoch by {metric} marked *)", box=box.SIMPLE_HEAVY, pad_edge=False,
                  collapse_padding=True)
    ema = any(m.val_ema_acc is not None for m in history)  # trainer.ema_decay: the average's accuracy too
    columns = ("epoch", "train loss", "train acc", "val loss", "val acc", *(("ema acc",) if ema else ()), "lr",
               "seconds", "img/s")
    for column in columns:
        table.add_column(column, justify="right", min_width=len("1.00e-03") if column == "lr" else None)
    shown = shown_epochs(history, best_epoch)
    for m in shown:
        mark = "*" if m.epoch == best_epoch else ""
        table.add_row(
            f"{m.epoch}{mark}", f"{m.train_loss:.4f}", f"{m.train_acc:.2%}", f"{m.val_loss:.4f}", f"{m.val_acc:.2%}",
            *((f"{m.val_ema_acc:.2%}",) if ema else ()), f"{m.lr:.2e}", f"{m.seconds:.2f}",
            f"{m.images_per_second:,.0f}",
        )
    results_console.print(table)
    if len(shown) < len(history):
        results_console.print(f"{len(history) - len(shown)} of {len(history)} epochs not shown (first, best, last and "
                              f"evenly spaced ones are): every epoch is in {run_dir / RUN_LOG}", markup=False)
    results_console.print(f"images: {' / '.join(f'{count} {split}' for split, count in sizes.items())}")
    if limits:
        results_console.print(f"debugging limits: the scores cover {limits} (trainer.limit_*_batches, "
                              "trainer.overfit_batches)", markup=False)
    results_console.print(test_line(test, best_epoch, val_split), markup=False)
    results_console.print(f"Run written to [bold]{run_dir}[/bold] (checkpoints in {run_dir / 'checkpoints'})")


def shown_epochs(history: list[EpochMetrics], best_epoch: int, rows: int = SUMMARY_ROWS) -> list[EpochMetrics]:
    """At most `rows` epochs, in order: the first, the best, the last, and evenly spaced ones between."""
    if len(history) <= rows:
        return history
    kept = {0, len(history) - 1, *(i for i, m in enumerate(history) if m.epoch == best_epoch)}
    spacing = (len(history) - 1) / (rows - 1)
    for step in range(rows):
        if len(kept) >= rows:
            break
        kept.add(round(step * spacing))
    return [history[i] for i in sorted(kept)]


def test_line(test: tuple[float, float] | None, best_epoch: int, val_split: str) -> str:
    if test:
        return f"test: acc {test[1]:.2%}, loss {test[0]:.4f} (the best epoch, {best_epoch}, scored once on test data)"
    if val_split == "test":
        return ("validated on the test split (dataset.val_split=test): every choice saw it, so these accuracies are "
                "optimistic; no test score")
    return "no test split: this run has no test score (dataset.test_fraction, or a test/ folder, gives one)"


def print_tracking_location(run_id: str, uri: str) -> None:
    """Where the run's record is, and how to browse it: a tracking server serves its own UI at its URL; a local
    store is browsed with `sweeplab ui` (`mlflow ui --backend-store-uri <a server's URL>` would fail)."""
    shown = masked_text(uri)
    browse = f"open {shown} in a browser" if uri.startswith(("http://", "https://")) else "browse it with `sweeplab ui`"
    results_console.print(f"MLflow run [bold]{run_id}[/bold] in {shown}: {browse}")

