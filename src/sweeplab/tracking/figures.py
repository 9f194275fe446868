"""Pictures people would rather look at than read: learning curves, confusion matrix, sample grid.

Drawn in the recorder process, on matplotlib's object API (no pyplot): no GUI backend, so it works in sweep
workers and on headless machines. Every sweep job draws them, so their layouts are fixed rather than computed by a
layout engine (which would cost a third to a half of each figure's time), and the learning curves and the confusion
matrix are drawn again on the figure the recorder built for an earlier run (a third of their time): only the data
changes.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D

from sweeplab.core.atomic import write_atomically
from sweeplab.tracking.handle import FigureData

LABEL_CHARACTER_INCHES = 0.08  # a tick label's character at matplotlib's default 10 points: its margin's width


def warm_up() -> None:
    """Done while training runs: matplotlib loads its font list when it first draws text (a few tenths)."""
    with tempfile.TemporaryDirectory() as folder:
        learning_curves([{"epoch": 1, "train_loss": 0, "val_loss": 0, "train_acc": 0, "val_acc": 0}],
                        Path(folder) / "warm_up.png")


def draw_all(data: FigureData, folder: Path) -> None:
    learning_curves(data.history, folder / "learning_curves.png")
    confusion_matrix(data.labels, data.predictions, data.classes, folder / "confusion_matrix.png")
    sample_grid(data.images, data.labels, data.predictions, data.classes, folder / "validation_samples.png")


def learning_curves(history: Sequence[dict[str, float]], path: Path) -> Path:
    """`history`: the checkpoint's epochs (epoch, train_loss, val_acc, ...)."""
    figure, lines = curves_layout()
    epochs = [m["epoch"] for m in history]
    for (split, name), line in lines.items():
        line.set_data(epochs, [m[f"{split}_{name}"] for m in history])
    for axes in figure.axes:
        axes.relim()
        axes.autoscale_view()
    return _save(figure, path)


@functools.cache
def curves_layout() -> tuple[Figure, dict[tuple[str, str], Line2D]]:
    """Loss and accuracy side by side, a line for each split: (split, loss or acc) -> its line, no data yet."""
    figure = Figure(figsize=(10, 4))
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.91, wspace=0.22)  # fixed: see the docstring
    lines = {}
    for axes, name in zip(figure.subplots(1, 2), ("loss", "acc"), strict=True):
        for split in ("train", "val"):
            (lines[split, name],) = axes.plot([], [], marker="o", label=split)
        axes.set(xlabel="epoch", ylabel=name)
        axes.set_title(f"{name} per epoch", y=1)  # where matplotlib would put it, without measuring the ticks for it
        axes.legend()
    return figure, lines


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, classes: Sequence[str], path: Path) -> Path:
    """Counts of (true, predicted) classes, the diagonal what was right; cells with no image stay blank (a hundred
    numbers cost more to draw than the rest of the figure)."""
    image = matrix_layout(tuple(classes))
    counts = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(counts, (labels, predictions), 1)
    image.set_data(counts)
    image.set_clim(counts.min(), counts.max())  # what imshow scales a new image's colours to
    for text in list(image.axes.texts):  # the previous run's counts
        text.remove()
    for row, col in np.argwhere(counts):
        dark = counts[row, col] > counts.max() / 2
        image.axes.text(col, row, str(counts[row, col]), ha="center", va="center", color="white" if dark else "black",
                        fontsize=8)
    return _save(image.figure, path)


@functools.cache
def matrix_layout(classes: tuple[str, ...]) -> AxesImage:
    """The matrix's square for these classes, named along both axes; its image, which holds no counts yet."""
    n = len(classes)
    size = min(4 + 0.5 * n, 20)
    names = min(max(map(len, classes)), 30) * LABEL_CHARACTER_INCHES + 0.6  # the class names, and the axis label
    figure = Figure(figsize=(size + names, size + names))
    edge = 0.1 / (size + names)
    figure.subplots_adjust(left=names / (size + names), bottom=names / (size + names), right=1 - edge,
                           top=1 - 0.5 / (size + names))
    axes = figure.subplots()
    image = axes.imshow(np.zeros((n, n), dtype=int), cmap="Blues")
    axes.set(xticks=range(n), yticks=range(n), xlabel="predicted label", ylabel="true label")
    axes.set_xticklabels(classes, rotation=90)
    axes.set_yticklabels(classes)
    figure.suptitle("validation confusion matrix (best epoch)")
    return image


def sample_grid(
    images: np.ndarray, labels: np.ndarray, predictions: np.ndarray, classes: Sequence[str], path: Path
) -> Path:
    """The course notes' 3x3 grid: uint8 [N, C, H, W] validation images titled true/pred, mistakes in red. One
    picture of the nine, each with room above it for its title: one axes, not nine."""
    _, channels, height, width = images.shape
    gap, title = max(1, width // 16), round(height * 0.45)
    row, column = height + title + gap, width + gap
    canvas = np.full((3 * row, 3 * column, channels), 255, np.uint8)
    figure = Figure(figsize=(7, 7 * row / column))
    axes = figure.add_axes((0, 0, 1, 1))
    for index, (image, label, prediction) in enumerate(zip(images[:9], labels, predictions, strict=False)):
        top, left = index // 3 * row + title, index % 3 * column
        canvas[top : top + height, left : left + width] = image.transpose(1, 2, 0)
        axes.text(left + width / 2, top - title * 0.1, f"true {classes[label]}\npred {classes[prediction]}",
                  ha="center", va="bottom", fontsize=9, color="green" if label == prediction else "red")
    axes.imshow(canvas.squeeze(-1) if channels == 1 else canvas, cmap="gray", vmin=0, vmax=255, aspect="auto")
    axes.axis("off")
    return _save(figure, path)


def _save(figure: Figure, path: Path) -> Path:
    write_atomically(path, lambda temporary: figure.savefig(temporary, dpi=100, format="png"))
    return path
