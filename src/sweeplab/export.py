"""ONNX export of a trained run, verified: the exported graph must compute what PyTorch computes.

A checkpoint -> the model rebuilt on the CPU -> `model.onnx` (dynamic batch axis) beside
`model.preprocessing.json` (what turns a picture into the model's input, and the class names)
-> onnx.checker -> onnxruntime and PyTorch on the same validation images. The parity numbers
are returned as metrics; when they are out of tolerance the files stay written (to inspect)
and ExportParityError says by how much.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeplab.errors import UserError
from sweeplab.tracking.tags import RUN_DIR_TAG

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

ONNX_FILE = "model.onnx"
PREPROCESSING_SUFFIX = ".preprocessing.json"
PREPROCESSING_FORMAT = "sweeplab-preprocessing/1"
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
# One protobuf file holds at most 2 GiB; bigger models keep their weights in a .data file beside it.
SINGLE_FILE_LIMIT = 2**31 - 2**26


@dataclass
class ExportReport:
    metrics: dict[str, float]
    files: list[Path]  # the .onnx file first, then its weights (when external) and its preprocessing JSON


class ExportParityError(UserError):
    """onnxruntime's logits differ from PyTorch's by more than the tolerance; `report` still has the files."""

    def __init__(self, message: str, report: ExportReport):
        super().__init__(message)
        self.report = report


@dataclass
class Preprocessing:
    """How evaluation turned a picture into the model's input; written beside every .onnx file.

    `resize` is [H, W] for in-memory data sets (images are resized to the data's size);
    `image_size`/`crop_size` describe image folders (shorter side resized, then center crop).
    """

    shape: list[int]  # [C, H, W] of the uint8 images the model was trained on
    mode: str  # PIL mode the pictures are converted to: L (one channel) or RGB
    mean: list[float]
    std: list[float]
    classes: list[str]
    resize: list[int] | None = None
    image_size: int | None = None
    crop_size: int | None = None
    format: str = PREPROCESSING_FORMAT

    @classmethod
    def from_checkpoint(cls, payload: dict[str, Any]) -> Preprocessing:
        description = payload["input"]
        shape = [int(n) for n in description["shape"]]
        dataset = payload["config"]["dataset"]
        image_size, crop_size = dataset.get("image_size"), dataset.get("crop_size")
        decoded_side = crop_size or image_size
        folder = image_size is not None and shape[1] == shape[2] == decoded_side
        return cls(
            shape=shape,
            mode="L" if shape[0] == 1 else "RGB",
            mean=[float(m) for m in description["mean"]],
            std=[float(s) for s in description["std"]],
            classes=[str(c) for c in payload["classes"]],
            resize=None if folder else shape[1:],
            image_size=image_size if folder else None,
            crop_size=crop_size if folder else None,
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
            if fields.get("format") != PREPROCESSING_FORMAT:
                raise ValueError(f"format is {fields.get('format')!r}, expected {PREPROCESSING_FORMAT!r}")
            return cls(**fields)
        except (ValueError, TypeError, AttributeError) as error:
            raise UserError(f"{path} is not a sweeplab preprocessing file ({error}): re-export the run") from None

    def save(self, onnx_file: Path) -> Path:
        path = preprocessing_file(onnx_file)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW -> the model's float input, by the very code evaluation used."""
        from sweeplab.config import AugmentConfig
        from sweeplab.data.augment import BatchPreprocess

        return BatchPreprocess(self.mean, self.std, AugmentConfig())(images, train=False)


def preprocessing_file(onnx_file: Path) -> Path:
    return onnx_file.with_name(onnx_file.stem + PREPROCESSING_SUFFIX)


def rebuild_model(payload: dict[str, Any]) -> nn.Module:
    """The checkpoint's model on the CPU in eval mode, whatever device trained it."""
    from omegaconf import OmegaConf

    from sweeplab.models import build_model

    # The trained weights replace any pretrained ones: never download or read them again.
    model_cfg = OmegaConf.create({**payload["config"]["model"], "weights": None})
    shape = tuple(int(n) for n in payload["input"]["shape"])
    model = build_model(model_cfg, shape, len(payload["classes"]))  # type: ignore[arg-type]
    model.load_state_dict(payload["model"])
    return model.eval()


def validation_images(payload: dict[str, Any], count: int, data_dir: Path | None = None) -> torch.Tensor:
    """The first `count` validation images (uint8 NCHW) of the run's data, read again from disk.

    Never downloads: exporting must not fetch a data set; a missing one is a UserError.
    `data_dir` replaces the run's paths.data_dir (the data lives elsewhere on this machine).
    """
    import torch
    from omegaconf import OmegaConf

    from sweeplab.data import load_splits

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
    import torch

    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (count, *shape), dtype=torch.uint8, generator=generator)


def write_onnx(model: nn.Module, shape: list[int], path: Path) -> list[Path]:
    """torch.export-based (dynamo) exporter with a dynamic batch axis; returns the files written.

    The TorchScript exporter (dynamo=False) is deprecated and cannot export vgg16's
    AdaptiveAvgPool2d when the feature map is smaller than 7x7 (our 32x32 inputs); the dynamo
    exporter handles every built-in model.
    """
    import onnx
    import torch

    # Their per-pass INFO lines would flood Hydra's INFO-level job log.
    for chatty in ("onnxscript", "onnx_ir"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    sample = torch.zeros(2, *shape)  # batch 2: torch.export specializes sizes 0 and 1
    batch = torch.export.Dim("batch")
    program = torch.onnx.export(
        model,
        (sample,),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: batch},),
        verbose=False,  # no "[torch.onnx] Translate the graph..." progress lines in training logs
    )
    weight_bytes = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    external = weight_bytes > SINGLE_FILE_LIMIT
    program.save(str(path), external_data=external)
    onnx.checker.check_model(str(path), full_check=True)
    data_file = path.with_name(path.name + ".data")
    return [path, data_file] if external else [path]


def onnx_logits(path: Path, inputs: np.ndarray) -> np.ndarray:
    import onnxruntime
    import torch

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # a parallel sweep job's share of the cores, not all
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: inputs})[0]


def parity_metrics(model: nn.Module, path: Path, inputs: torch.Tensor) -> dict[str, float]:
    import numpy as np
    import torch

    with torch.no_grad():
        expected = model(inputs).numpy()
    actual = onnx_logits(path, inputs.numpy())
    return {
        "onnx/max_abs_diff": float(np.abs(expected - actual).max()),
        "onnx/argmax_agreement": float((expected.argmax(1) == actual.argmax(1)).mean()),
        "onnx/num_images": float(len(inputs)),
    }


def check_parity(report: ExportReport, tolerance: float) -> None:
    diff, agreement = report.metrics["onnx/max_abs_diff"], report.metrics["onnx/argmax_agreement"]
    if diff > tolerance or agreement < 1:
        raise ExportParityError(
            f"the ONNX model disagrees with PyTorch: max |logit difference| {diff:.3g} (tolerance {tolerance:g}), "
            f"argmax agreement {agreement:.2%}; files kept in {report.files[0].parent} to inspect; "
            "raise export.tolerance (--tolerance) if this is expected",
            report,
        )


def export_onnx(
    checkpoint: Path,
    out_dir: Path,
    tolerance: float = 1e-4,
    num_images: int = 64,
    random_inputs: bool = False,
    data_dir: Path | None = None,
) -> ExportReport:
    """Export `checkpoint` to out_dir/model.onnx and verify it on `num_images` validation images.

    The data is read from the run's paths.data_dir, or `data_dir` when it lives elsewhere here;
    random_inputs=True verifies on seeded random images instead, for machines without the data.
    """
    from sweeplab.checkpoint import load_checkpoint

    if num_images < 1:
        raise UserError(f"num_images={num_images} is invalid: verify on at least 1 image")
    payload = load_checkpoint(checkpoint)
    model = rebuild_model(payload)
    preprocessing = Preprocessing.from_checkpoint(payload)
    if random_inputs:
        images = random_images(preprocessing.shape, num_images)
    else:
        images = validation_images(payload, num_images, data_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_file = out_dir / ONNX_FILE
    files = [*write_onnx(model, preprocessing.shape, onnx_file), preprocessing.save(onnx_file)]
    metrics = parity_metrics(model, onnx_file, preprocessing.normalize(images))
    metrics["onnx/random_inputs"] = float(random_inputs)
    report = ExportReport(metrics, files)
    check_parity(report, tolerance)
    return report


@dataclass
class RunTarget:
    """What `sweeplab export/predict` was pointed at: a checkpoint, and the MLflow run it belongs to if named."""

    checkpoint: Path
    run_id: str | None = None
    tracking_uri: str | None = None

    @property
    def run_dir(self) -> Path:
        """Where a run keeps its files: the folder above checkpoints/, else the checkpoint's own folder."""
        folder = self.checkpoint.parent
        return folder.parent if folder.name == "checkpoints" else folder


def find_checkpoint(target: str, tracking_uri: str | None = None) -> RunTarget:
    """A checkpoint file, a run dir (its checkpoints/best.pt) or an MLflow run id (its run dir tag)."""
    from sweeplab.checkpoint import BEST

    path = Path(target)
    if path.is_file():
        return RunTarget(path)
    if path.is_dir():
        for candidate in (path / "checkpoints" / BEST, path / BEST):
            if candidate.is_file():
                return RunTarget(candidate)
        expected = path / "checkpoints" / BEST
        raise UserError(f"no checkpoint in {path}: expected {expected} (a run writes it after its first epoch)")
    if re.fullmatch(r"[0-9a-f]{32}", target):
        return mlflow_run_checkpoint(target, tracking_uri)
    raise UserError(f"{target} is neither a checkpoint file, a run dir nor an MLflow run id: check it")


def mlflow_run_checkpoint(run_id: str, tracking_uri: str | None) -> RunTarget:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from sweeplab.tracking.store import check_reachable, resolve_uri

    uri = resolve_uri(tracking_uri)
    check_reachable(uri)
    try:
        tags = MlflowClient(uri).get_run(run_id).data.tags
    except MlflowException as error:
        raise UserError(f"no MLflow run {run_id} at {uri} ({error.message}): check the id or --uri") from None
    if RUN_DIR_TAG not in tags:
        raise UserError(f"MLflow run {run_id} has no {RUN_DIR_TAG} tag (not a sweeplab run?): pass its run dir")
    run_dir = Path(tags[RUN_DIR_TAG])
    if not run_dir.is_dir():
        raise UserError(f"MLflow run {run_id} ran in {run_dir}, which is not on this machine: copy it here and pass it")
    return RunTarget(find_checkpoint(str(run_dir)).checkpoint, run_id, uri)


def log_to_mlflow(target: RunTarget, report: ExportReport) -> None:
    """An after-the-fact export lands in the run it came from, like the export at the end of training."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    if target.run_id is None:
        return
    client = MlflowClient(target.tracking_uri)
    now = int(time.time() * 1000)
    client.log_batch(target.run_id, metrics=[Metric(k, v, now, 0) for k, v in report.metrics.items()])
    for file in report.files:
        client.log_artifact(target.run_id, str(file), "onnx")
