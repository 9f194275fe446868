"""The export check: onnx.checker, then onnxruntime on the same images PyTorch classified, within a tolerance.

No torch here: during a run this runs in the recorder process, beside training (sweeplab.recorder).
Out of tolerance it raises ExportParityError (sweeplab.export.verdict), which carries the metrics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime

from sweeplab.core.vocabulary import (
    ONNX_ARGMAX_AGREEMENT,
    ONNX_INPUT,
    ONNX_MAX_ABS_DIFF,
    ONNX_NUM_IMAGES,
    ONNX_OUTPUT,
    ONNX_RANDOM_INPUTS,
)
from sweeplab.export.verdict import ExportParityError


def verify_onnx(onnx_file: str, images: np.ndarray, expected: np.ndarray, tolerance: float, threads: int,
                random_inputs: bool = False) -> dict[str, float]:
    """Check the file, run it on `images` (uint8 NCHW); the parity metrics, or ExportParityError."""
    onnx.checker.check_model(onnx_file, full_check=True)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads  # a parallel sweep job's share of the cores, not all of them
    session = onnxruntime.InferenceSession(onnx_file, options, providers=["CPUExecutionProvider"])
    actual = session.run([ONNX_OUTPUT], {ONNX_INPUT: images})[0]
    metrics = {
        ONNX_MAX_ABS_DIFF: float(np.abs(expected - actual).max()),
        ONNX_ARGMAX_AGREEMENT: float((expected.argmax(1) == actual.argmax(1)).mean()),
        ONNX_NUM_IMAGES: float(len(images)),
        ONNX_RANDOM_INPUTS: float(random_inputs),
    }
    diff, agreement = metrics[ONNX_MAX_ABS_DIFF], metrics[ONNX_ARGMAX_AGREEMENT]
    if diff > tolerance or agreement < 1:
        raise ExportParityError(
            f"the ONNX model disagrees with PyTorch: max |logit difference| {diff:.3g} (tolerance {tolerance:g}), "
            f"argmax agreement {agreement:.2%}; files kept in {Path(onnx_file).parent} to inspect; "
            "raise export.tolerance (--tolerance) if this is expected",
            metrics,
        )
    return metrics
