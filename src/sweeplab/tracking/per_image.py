"""The test split image by image: each image's label and predicted class in the split's fixed order, the
confusion matrix and per-class accuracies. Written beside a run (its `test/` folder, uploaded to MLflow),
read back by `sweeplab diff` to compare two runs on the very same images."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sweeplab.core.atomic import write_atomically, write_text_atomically
from sweeplab.core.vocabulary import TEST_DIR

PREDICTIONS_FILE, PER_CLASS_FILE = "predictions.npz", "per_class.csv"


@dataclass
class SplitPredictions:
    labels: np.ndarray  # one per test image, in the split's order (its digest fixes it)
    predictions: np.ndarray  # the best checkpoint's predicted class, same order
    classes: list[str]

    @property
    def right(self) -> np.ndarray:
        return self.labels == self.predictions

    def confusion(self) -> np.ndarray:
        """Rows: the true class; columns: the predicted one."""
        count = len(self.classes)
        return np.bincount(self.labels * count + self.predictions, minlength=count * count).reshape(count, count)

    def per_class_accuracy(self) -> dict[str, float | None]:
        """Each class's share of its test images predicted right (None for a class with no test image)."""
        confusion = self.confusion()
        images = confusion.sum(axis=1)
        return {name: float(confusion[index, index] / images[index]) if images[index] else None
                for index, name in enumerate(self.classes)}


def write_test_split(run_dir: str, test: SplitPredictions) -> Path:
    """The run dir's `test/` folder, written: by the recorder, or by the run itself when its recorder is gone."""
    folder = Path(run_dir) / TEST_DIR
    write_split_predictions(folder, test)
    return folder


def write_split_predictions(folder: Path, test: SplitPredictions) -> None:
    def save(temporary: Path) -> None:
        with temporary.open("wb") as file:  # a file, not a name: numpy would add ".npz" to the temporary name
            np.savez_compressed(file, labels=test.labels.astype(np.int32),
                                predictions=test.predictions.astype(np.int32), classes=np.array(test.classes),
                                confusion=test.confusion())

    write_atomically(folder / PREDICTIONS_FILE, save)
    write_text_atomically(folder / PER_CLASS_FILE, per_class_csv(test))


def per_class_csv(test: SplitPredictions) -> str:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["class", "images", "right", "accuracy"])
    confusion = test.confusion()
    for index, name in enumerate(test.classes):
        images, right = int(confusion[index].sum()), int(confusion[index, index])
        writer.writerow([name, images, right, f"{right / images:.6f}" if images else ""])
    return text.getvalue()


def read_split_predictions(path: Path) -> SplitPredictions:
    with np.load(path) as saved:
        return SplitPredictions(saved["labels"], saved["predictions"], [str(name) for name in saved["classes"]])
