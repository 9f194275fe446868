"""`sweeplab export`, and a sweep's export of its best job: a checkpoint to a verified ONNX file, any time later.

The checkpoint holds everything needed (config, weights, classes, input description); the images to
check on are the run's validation images, read again from disk (never downloaded), or seeded
random images where the data is not on this machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from sweeplab.core.errors import UserError
from sweeplab.data import load_splits
from sweeplab.export.onnx import ExportFiles, export_classifier
from sweeplab.export.verdict import verified
from sweeplab.recorder import Inline
from sweeplab.runs.classifier import rebuild_classifier
from sweeplab.runs.preprocessing import Preprocessing
from sweeplab.tracking.handle import ExportRecord
from sweeplab.training.checkpoint import load_checkpoint


@dataclass
class ExportReport:
    metrics: dict[str, float]
    files: list[Path]


def export_and_verify(checkpoint: Path, out_dir: Path, tolerance: float = 1e-4, num_images: int = 64,
                      random_inputs: bool = False, data_dir: Path | None = None,
                      record: Callable[[ExportRecord], None] | None = None) -> ExportReport:
    """export_checkpoint, then its check, here (`record` gets the result for an MLflow run, pass or fail)."""
    export = export_checkpoint(checkpoint, out_dir, num_images, random_inputs, data_dir)
    metrics = verified(export, tolerance, torch.get_num_threads(), Inline(), record, random_inputs=random_inputs)
    return ExportReport(metrics, export.files)


def export_checkpoint(checkpoint: Path, out_dir: Path, num_images: int = 64, random_inputs: bool = False,
                      data_dir: Path | None = None) -> ExportFiles:
    """Write `checkpoint`'s classifier to out_dir/model.onnx, with `num_images` images to verify it on.

    The data is read from the run's paths.data_dir, or `data_dir` when it lives elsewhere here;
    random_inputs=True checks on seeded random images instead, for machines without the data.
    """
    if num_images < 1:
        raise UserError(f"num_images={num_images} is invalid: verify on at least 1 image")
    payload = load_checkpoint(checkpoint)
    preprocessing = Preprocessing.from_checkpoint(payload)
    if random_inputs:
        images = random_images(preprocessing.shape, num_images)
    else:
        images = validation_images(payload, num_images, data_dir)
    return export_classifier(rebuild_classifier(payload), preprocessing, images, out_dir)


def validation_images(payload: dict[str, Any], count: int, data_dir: Path | None = None) -> torch.Tensor:
    """The first `count` validation images (uint8 NCHW) of the run's data, read again from disk.

    Never downloads: exporting must not fetch a data set; a missing one is a UserError.
    `data_dir` replaces the run's paths.data_dir (the data lives elsewhere on this machine).
    """
    config = payload["config"]
    dataset = rebase(config["dataset"], config["paths"]["data_dir"], str(data_dir)) if data_dir else config["dataset"]
    dataset = OmegaConf.create(dataset)
    if "download" in dataset.source:
        dataset.source.download = False
    try:
        val = load_splits(dataset).val
    except UserError as error:
        raise UserError(
            f"cannot verify the export on validation images: {error} "
            "(export with --data-dir DIR where the data is on this machine, or verify on --random-inputs)"
        ) from None
    return torch.stack([val[i][0] for i in range(min(count, len(val)))])


def rebase(node: Any, old: str, new: str) -> Any:
    """The resolved config with every path under `old` moved under `new` (interpolations are gone by now)."""
    if isinstance(node, dict):
        return {key: rebase(value, old, new) for key, value in node.items()}
    if isinstance(node, str) and (node == old or node.startswith(old.rstrip("/") + "/")):
        return new + node[len(old.rstrip("/")) :]
    return node


def random_images(shape: list[int], count: int) -> torch.Tensor:
    """Seeded random uint8 images: a weaker check than real data (no real activations), never silent."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (count, *shape), dtype=torch.uint8, generator=generator)
