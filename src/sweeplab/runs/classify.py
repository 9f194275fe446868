"""Classify image files with a trained run, through PyTorch (its checkpoint) or onnxruntime (its export).

Both backends share one path from file to probabilities: decode the picture the way the data
was decoded (mode, size) into uint8, run the backend (which normalizes inside, as the exported
model does), softmax, top-k. So they can only differ by the network itself, which the export
verified. A bad file becomes an error line for that file; the other files are still classified.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms import v2

from sweeplab.core.errors import UserError, first_line
from sweeplab.core.vocabulary import ONNX_INPUT, ONNX_OUTPUT
from sweeplab.data.sources import eight_bit, folder_decoder
from sweeplab.runs.classifier import rebuild_classifier
from sweeplab.runs.preprocessing import Preprocessing
from sweeplab.training.checkpoint import load_checkpoint

BATCH_SIZE = 32  # images decoded and classified at once: bounded memory for folders of photos


@dataclass
class Prediction:
    image: str
    classes: list[str] = field(default_factory=list)  # top-k, most probable first
    probabilities: list[float] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict:
        if self.error:
            return {"image": self.image, "error": self.error}
        ranked = [{"class": c, "probability": p} for c, p in zip(self.classes, self.probabilities, strict=True)]
        return {"image": self.image, "predictions": ranked}


@dataclass
class Classifier:
    """A backend: uint8 NCHW images -> logits, with the preprocessing its pictures need."""

    preprocessing: Preprocessing
    logits: Callable[[torch.Tensor], torch.Tensor]
    source: str


def torch_classifier(checkpoint: Path) -> Classifier:
    payload = load_checkpoint(checkpoint)
    model = rebuild_classifier(payload)

    def logits(inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(inputs)

    return Classifier(Preprocessing.from_checkpoint(payload), logits, str(checkpoint))


def onnx_classifier(onnx_file: Path) -> Classifier:
    """An .onnx file exported by sweeplab: its preprocessing file must sit beside it and fit its input."""
    import onnxruntime  # only for this backend
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    unloadable = (ort_errors.Fail, ort_errors.InvalidProtobuf, ort_errors.InvalidGraph, ort_errors.NotImplemented)
    if not onnx_file.is_file():
        raise UserError(f"no ONNX file at {onnx_file}: check the path (`sweeplab export <run>` writes <run>/export)")
    preprocessing = Preprocessing.beside(onnx_file)
    try:
        session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    except unloadable as error:  # onnxruntime's own exception types, none a subclass of OSError or ValueError
        raise UserError(f"{onnx_file} is not a readable ONNX model ({first_line(error)}): re-export the run") from None
    check_onnx_signature(session, preprocessing, onnx_file)

    def logits(inputs: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run([ONNX_OUTPUT], {ONNX_INPUT: inputs.numpy()})[0])

    return Classifier(preprocessing, logits, str(onnx_file))


def check_onnx_signature(session, preprocessing: Preprocessing, onnx_file: Path) -> None:
    """Refuse a model whose input is not the images its preprocessing file describes (any batch size)."""
    takes = [(i.name, list(i.shape[1:])) for i in session.get_inputs()]
    returns = [o.name for o in session.get_outputs()]
    wanted = [(ONNX_INPUT, preprocessing.shape)]
    if takes != wanted or returns != [ONNX_OUTPUT]:
        raise UserError(
            f"{onnx_file} takes {takes} and returns {returns}, but its preprocessing file describes "
            f"{wanted} -> {[ONNX_OUTPUT]}: pass the model that `sweeplab export` wrote with that file"
        )


def decoder(preprocessing: Preprocessing) -> Callable:
    """PIL image -> uint8 CHW exactly as the data was decoded (a resize, or the image-folder decoder)."""
    if preprocessing.resize is None:
        return folder_decoder(preprocessing.image_size, preprocessing.crop_size)  # type: ignore[arg-type]
    return v2.Compose([v2.Resize(preprocessing.resize), v2.PILToTensor()])


def read_image(path: Path, mode: str):
    """Any picture PIL reads (RGBA, palette, grayscale, CMYK, ...) converted to the data's mode."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        with Image.open(path) as image:
            if image.mode == "P" and "transparency" in image.info:
                image = image.convert("RGBA")  # what PIL asks for; the RGB values are the same
            return eight_bit(image).convert(mode)
    except (OSError, Image.DecompressionBombError) as error:
        raise UserError(f"{path} is not a readable image ({error})") from None


def image_files(arguments: Iterable[Path]) -> list[Path]:
    """Files as given; a folder stands for the images under it (by extension, sorted)."""
    extensions = set(Image.registered_extensions())
    files: list[Path] = []
    for argument in arguments:
        if argument.is_dir():
            found = sorted(p for p in argument.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
            if not found:
                raise UserError(f"{argument} holds no image files: pass image files or a folder of images")
            files += found
        else:
            files.append(argument)
    return files


def predict(classifier: Classifier, files: list[Path], top_k: int = 5) -> list[Prediction]:
    """Top-k classes for each file, in order; an unreadable file gets an error instead."""
    predictions: list[Prediction] = []
    for start in range(0, len(files), BATCH_SIZE):
        predictions += predict_batch(classifier, files[start : start + BATCH_SIZE], top_k)
    return predictions


def predict_batch(classifier: Classifier, files: list[Path], top_k: int) -> list[Prediction]:
    preprocessing = classifier.preprocessing
    decode = decoder(preprocessing)
    predictions = [Prediction(str(path)) for path in files]
    images, readable = [], []
    for prediction, path in zip(predictions, files, strict=True):
        try:
            images.append(decode(read_image(path, preprocessing.mode)))
            readable.append(prediction)
        except UserError as error:
            prediction.error = str(error)
    if not images:
        return predictions
    probabilities = classifier.logits(torch.stack(images)).float().softmax(dim=1)
    best = probabilities.topk(min(top_k, probabilities.shape[1]), dim=1)
    for prediction, values, indices in zip(readable, best.values.tolist(), best.indices.tolist(), strict=True):
        prediction.classes = [preprocessing.classes[i] for i in indices]
        prediction.probabilities = values
    return predictions
