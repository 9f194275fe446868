"""Write a classifier (uint8 images in, logits out) to `model.onnx` with a dynamic batch axis.

TorchScript's exporter first: it exports the course models in milliseconds. Where it cannot (vgg16's
AdaptiveAvgPool2d on feature maps smaller than 7x7, from our 32x32 inputs), torch.export's (dynamo)
exporter, which handles every built-in model but costs seconds of start-up. Either way the parity
check (onnx_check.py) compares the file with PyTorch.
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sweeplab.core.atomic import flush_to_disk
from sweeplab.core.errors import UserError, first_line
from sweeplab.core.vocabulary import ONNX_FILE, ONNX_INPUT, ONNX_OUTPUT
from sweeplab.runs.preprocessing import Preprocessing
from sweeplab.training.run_log import printed_to_log

# One protobuf file holds at most 2 GiB; bigger models keep their weights in a .data file beside it.
SINGLE_FILE_LIMIT = 2**31 - 2**26


@dataclass
class ExportFiles:
    """What was written, and the reference the ONNX file must reproduce."""

    files: list[Path]  # the .onnx file first, then its weights (when external) and its preprocessing JSON
    images: np.ndarray  # uint8 NCHW inputs to check on
    expected: np.ndarray  # PyTorch's logits for them
    preprocessing: Preprocessing


def export_classifier(classifier: nn.Module, preprocessing: Preprocessing, images: torch.Tensor,
                      out_dir: Path) -> ExportFiles:
    """Write `out_dir/model.onnx` and its preprocessing file; PyTorch's logits on `images` to compare with."""
    classifier = classifier.cpu().eval()

    def write(folder: Path) -> list[Path]:
        onnx_file = folder / ONNX_FILE
        return [*write_onnx(classifier, preprocessing.shape, onnx_file), preprocessing.save(onnx_file)]

    files = written_whole(out_dir, write)
    images = images.cpu()
    with torch.no_grad():
        expected = classifier(images).float().numpy()
    return ExportFiles(files, images.numpy(), expected, preprocessing)


def written_whole(out_dir: Path, write: Callable[[Path], list[Path]]) -> list[Path]:
    """The export's files written into a folder beside their place, flushed to disk, then renamed in (an external
    weights file keeps its name, which the .onnx file refers to): a full disk or a crash mid-export leaves the
    previous export whole."""
    partial = out_dir / ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        written = write(partial)
        for file in written:
            flush_to_disk(file)
        for file in reversed(written):  # the .onnx file, which names its weights file, last
            os.replace(file, out_dir / file.name)
        return [out_dir / file.name for file in written]
    except OSError as error:
        kept = "the previous export is intact" if (out_dir / ONNX_FILE).is_file() else "nothing was written"
        raise UserError(f"could not write {out_dir / ONNX_FILE} ({first_line(error)}): free space under {out_dir} "
                        f"and export again with `sweeplab export <run dir>` ({kept})") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def write_onnx(classifier: nn.Module, shape: list[int], path: Path) -> list[Path]:
    """Returns the files written: the .onnx file, and its external weights for models over 2 GiB."""
    sample = torch.zeros(2, *shape, dtype=torch.uint8)  # batch 2: exporters specialize sizes 0 and 1
    weight_bytes = sum(p.numel() * p.element_size() for p in classifier.state_dict().values())
    external = weight_bytes > SINGLE_FILE_LIMIT
    try:
        if external:
            raise torch.onnx.errors.OnnxExporterError("TorchScript's exporter writes no external data")
        # Its deprecation notice, in every run's log; its IR graph dump when it gives up, in the run's log only.
        with warnings.catch_warnings(), printed_to_log("the TorchScript ONNX exporter"):
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(classifier, (sample,), str(path), dynamo=False, input_names=[ONNX_INPUT],
                              output_names=[ONNX_OUTPUT], dynamic_axes={ONNX_INPUT: {0: "batch"},
                                                                        ONNX_OUTPUT: {0: "batch"}})
    except torch.onnx.errors.OnnxExporterError:
        write_with_dynamo(classifier, sample, path, external)
    return [path, path.with_name(path.name + ".data")] if external else [path]


def write_with_dynamo(classifier: nn.Module, sample: torch.Tensor, path: Path, external: bool) -> None:
    for chatty in ("onnxscript", "onnx_ir"):  # their per-pass INFO lines would flood Hydra's INFO-level job log
        logging.getLogger(chatty).setLevel(logging.WARNING)
    program = torch.onnx.export(
        classifier, (sample,), dynamo=True, input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        verbose=False,  # no "[torch.onnx] Translate the graph..." progress lines in training logs
    )
    program.save(str(path), external_data=external)
