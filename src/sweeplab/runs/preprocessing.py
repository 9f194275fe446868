"""How a picture becomes a trained model's input: written beside every exported .onnx file.

Format 2 (`sweeplab-preprocessing/2`): the model takes uint8 images (N, C, H, W), 0..255, exactly
as decoded, and normalizes them itself; this file says how to decode a picture to that shape
(its mode, size or resize-and-crop) and names the classes. Format 1 (models that took normalized
floats) is refused with the command that re-exports the run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sweeplab.core.atomic import write_text_atomically
from sweeplab.core.errors import UserError

PREPROCESSING_SUFFIX = ".preprocessing.json"
PREPROCESSING_FORMAT = "sweeplab-preprocessing/2"
INPUT_CONTRACT = "uint8 NCHW images, 0..255, as decoded below; the model normalizes them itself"


@dataclass
class Preprocessing:
    """`resize` is [H, W] for in-memory data sets (images are resized to the data's size);
    `image_size`/`crop_size` describe image folders (shorter side resized, then center crop)."""

    shape: list[int]  # [C, H, W] of the uint8 images the model takes
    mode: str  # PIL mode the pictures are converted to: L (one channel) or RGB
    classes: list[str]
    resize: list[int] | None = None
    image_size: int | None = None
    crop_size: int | None = None
    # Applied inside the model (stated so nobody applies it again): {"mean": [...], "std": [...]}.
    normalization_in_model: dict[str, list[float]] = field(default_factory=dict)
    input: str = INPUT_CONTRACT
    format: str = PREPROCESSING_FORMAT

    @classmethod
    def from_checkpoint(cls, payload: dict[str, Any]) -> Preprocessing:
        description = payload["input"]
        shape = [int(n) for n in description["shape"]]
        dataset = payload["config"]["dataset"]
        image_size, crop_size = dataset.get("image_size"), dataset.get("crop_size")
        folder = image_size is not None and shape[1] == shape[2] == (crop_size or image_size)
        return cls(
            shape=shape,
            mode="L" if shape[0] == 1 else "RGB",
            classes=[str(c) for c in payload["classes"]],
            resize=None if folder else shape[1:],
            image_size=image_size if folder else None,
            crop_size=crop_size if folder else None,
            normalization_in_model={key: [float(v) for v in description[key]] for key in ("mean", "std")},
        )

    @classmethod
    def beside(cls, onnx_file: Path) -> Preprocessing:
        """The description written next to `onnx_file`; an .onnx from another tool has none."""
        path = preprocessing_file(onnx_file)
        if not path.is_file():
            raise UserError(
                f"{onnx_file} has no {path.name} beside it (not exported by sweeplab?): "
                "export the run with `sweeplab export <run>` or put its preprocessing file next to it"
            )
        try:
            fields = json.loads(path.read_text())
            found = fields.get("format")
        except (ValueError, AttributeError) as error:
            raise UserError(f"{path} is not a sweeplab preprocessing file ({error}): re-export the run") from None
        if found != PREPROCESSING_FORMAT:
            raise UserError(
                f"{path} is format {found!r}, not {PREPROCESSING_FORMAT!r} (an older export, whose model took "
                "normalized floats): re-export the run with `sweeplab export <run dir>`"
            )
        try:
            return cls(**fields)
        except TypeError as error:
            raise UserError(f"{path} is not a sweeplab preprocessing file ({error}): re-export the run") from None

    def save(self, onnx_file: Path) -> Path:
        path = preprocessing_file(onnx_file)
        write_text_atomically(path, json.dumps(asdict(self), indent=2) + "\n")
        return path


def preprocessing_file(onnx_file: Path) -> Path:
    return onnx_file.with_name(onnx_file.stem + PREPROCESSING_SUFFIX)
