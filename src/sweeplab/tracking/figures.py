"""Pictures people would rather look at than read: learning curves, confusion matrix, sample grid.

Built on matplotlib's object API (no pyplot): no global state and no GUI backend, so it works
in sweep workers and on headless machines.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from sweeplab.engine import EpochMetrics


def learning_curves(history: Sequence[EpochMetrics], path: Path) -> Path:
    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_axes, acc_axes = figure.subplots(1, 2)
    epochs = [m.epoch for m in history]
    for axes, name in ((loss_axes, "loss"), (acc_axes, "acc")):
        for split in ("train", "val"):
            axes.plot(epochs, [getattr(m, f"{split}_{name}") for m in history], marker="o", label=split)
        axes.set(xlabel="epoch", ylabel=name, title=f"{name} per epoch")
        axes.legend()
    return _save(figure, path)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, classes: Sequence[str], path: Path) -> Path:
    from sklearn.metrics import ConfusionMatrixDisplay

    size = min(4 + 0.5 * len(classes), 20)
    figure = Figure(figsize=(size, size), layout="constrained")
    ConfusionMatrixDisplay.from_predictions(
        labels, predictions, labels=list(range(len(classes))), display_labels=list(classes),
        ax=figure.subplots(), colorbar=False, xticks_rotation="vertical",
    )
    figure.suptitle("validation confusion matrix (best epoch)")
    return _save(figure, path)


def sample_grid(
    images: np.ndarray, labels: np.ndarray, predictions: np.ndarray, classes: Sequence[str], path: Path
) -> Path:
    """The course notes' 3x3 grid: uint8 [N, C, H, W] validation images titled true/pred, mistakes in red."""
    figure = Figure(figsize=(7, 7.5), layout="constrained")
    for axes, image, label, prediction in zip(figure.subplots(3, 3).flat, images, labels, predictions, strict=False):
        picture = image.transpose(1, 2, 0)
        axes.imshow(picture.squeeze(-1) if picture.shape[-1] == 1 else picture, cmap="gray")
        axes.set_title(f"true {classes[label]}\npred {classes[prediction]}",
                       color="green" if label == prediction else "red", fontsize=9)
    for axes in figure.axes:
        axes.axis("off")
    return _save(figure, path)


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
