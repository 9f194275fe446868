"""An export's check, asked of the recorder (or done here), and recorded whatever its verdict.

The parity numbers are returned as metrics; out of tolerance, ExportParityError says by how much
and carries them, so the run records them (and its files) before it fails. Light on purpose: the
training process imports this, not onnx_check.py (onnx, onnxruntime).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING

from sweeplab.core.errors import UserError
from sweeplab.recorder.remote import Remote
from sweeplab.tracking.handle import ExportRecord

if TYPE_CHECKING:
    from sweeplab.export.onnx import ExportFiles
    from sweeplab.recorder import Inline, Recorder

EXAMPLE_IMAGES = 8  # > 1 keeps a logged model's batch dimension dynamic


class ExportParityError(UserError):
    """onnxruntime's logits differ from PyTorch's by more than the tolerance; `metrics` say by how much."""

    def __init__(self, message: str, metrics: dict[str, float]):
        super().__init__(message)
        self.metrics = metrics

    def __reduce__(self):  # it travels from the recorder process
        return type(self), (str(self), self.metrics)


def verified(export: ExportFiles, tolerance: float, threads: int, recorder: Recorder | Inline,
             record: Callable[[ExportRecord], None] | None, log_model: bool = False,
             registered_name: str | None = None, random_inputs: bool = False) -> dict[str, float]:
    """Check the export; hand `record` its metrics and files (as the run's model too, if asked and verified)."""
    check = recorder.submit(Remote.VERIFY_ONNX, str(export.files[0]), export.images, export.expected, tolerance,
                            threads, random_inputs)
    try:
        metrics = check.result()
    except ExportParityError as error:
        if record:
            record(export_record(export, error.metrics, log_model=False))
        raise
    if record:
        record(export_record(export, metrics, log_model, registered_name))
    return metrics


def export_record(export: ExportFiles, metrics: dict[str, float], log_model: bool,
                  registered_name: str | None = None) -> ExportRecord:
    return ExportRecord(
        metrics=metrics,
        files=[str(file) for file in export.files],
        log_model=log_model,
        registered_name=registered_name,
        example=export.images[:EXAMPLE_IMAGES],
        example_logits=export.expected[:EXAMPLE_IMAGES],
        metadata={"sweeplab_preprocessing": asdict(export.preprocessing)},
    )
