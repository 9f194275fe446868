"""ONNX export: every built-in model exports with a dynamic batch and matches PyTorch on real validation images.

Runs are trained for real (`python train.py`, one epoch on tiny generated data) and shared with
test_predict.py through `trained_run`, which trains each run once per test session. vgg16 alone is
not trained: an epoch of it (and its 1.6 GB of checkpoints) costs a minute on 2 cores and teaches
the export nothing, so its checkpoint is the CIFAR-10 run's with the network swapped for a new vgg16.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from omegaconf import OmegaConf

from sweeplab.cli.main import main
from sweeplab.core.errors import UserError
from sweeplab.export.from_checkpoint import export_and_verify as export_onnx
from sweeplab.export.from_checkpoint import rebase
from sweeplab.export.onnx import write_onnx
from sweeplab.export.verdict import ExportParityError
from sweeplab.models import build_model
from sweeplab.runs.classifier import image_classifier, rebuild_classifier
from sweeplab.runs.preprocessing import Preprocessing
from sweeplab.runs.resolve import find_checkpoint
from sweeplab.training.checkpoint import load_checkpoint, save_checkpoint
from trained_runs import RUNS


def swapped_network(run_dir: Path, model: str, path: Path) -> Path:
    """The run's checkpoint (config, classes, input, data) with a freshly built `model` as its network."""
    payload = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    payload["config"]["model"] = {**payload["config"]["model"], "name": model, "min_size": 32}
    shape, num_classes = tuple(payload["input"]["shape"]), len(payload["classes"])
    payload["model"] = build_model(OmegaConf.create(payload["config"]["model"]), shape, num_classes).state_dict()
    save_checkpoint(payload, path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", [*RUNS, "vgg16"])
def test_every_builtin_model_exports_with_parity(name: str, trained_run, tmp_path: Path) -> None:
    if name in RUNS:
        path = trained_run(name) / "checkpoints" / "best.pt"
    else:
        path = swapped_network(trained_run("cnn"), name, tmp_path / "checkpoints" / "best.pt")
    checkpoint = load_checkpoint(path)
    report = export_onnx(path, tmp_path / "export", tolerance=1e-4, num_images=5)

    assert report.metrics["onnx/max_abs_diff"] <= 1e-4
    assert report.metrics["onnx/argmax_agreement"] == 1.0
    assert report.metrics["onnx/num_images"] == 5  # verified at batch 5, exported at batch 2
    onnx_file, preprocessing_file = report.files
    assert onnx_file == tmp_path / "export" / "model.onnx"
    assert json.loads(preprocessing_file.read_text())["classes"] == checkpoint["classes"]
    graph_input = onnx.load(onnx_file).graph.input[0]
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1:] == checkpoint["input"]["shape"]


@pytest.mark.slow
def test_onnx_takes_any_batch_size(trained_run, tmp_path: Path) -> None:
    payload = load_checkpoint(trained_run("cnn") / "checkpoints" / "best.pt")
    report = export_onnx(trained_run("cnn") / "checkpoints" / "best.pt", tmp_path, 1e-4, 8)
    session = onnxruntime.InferenceSession(str(report.files[0]), providers=["CPUExecutionProvider"])
    classifier = rebuild_classifier(payload)  # uint8 images in, as the ONNX file takes them
    for batch in (1, 3, 17):
        inputs = torch.randint(0, 256, (batch, *payload["input"]["shape"]), dtype=torch.uint8)
        (logits,) = session.run(["logits"], {"images": inputs.numpy()})
        np.testing.assert_allclose(logits, classifier(inputs).detach().numpy(), atol=1e-4)


@pytest.mark.slow
def test_export_after_the_fact_from_run_dir_and_checkpoint(trained_run, tmp_path: Path, capsys) -> None:
    run_dir = trained_run("mlp")
    assert main(["export", str(run_dir), "--num-images", "10"]) == 0
    assert (run_dir / "export" / "model.onnx").is_file()
    assert (run_dir / "export" / "model.preprocessing.json").is_file()
    assert "verified on 10 validation images" in capsys.readouterr().out

    out = tmp_path / "elsewhere"
    assert main(["export", str(run_dir / "checkpoints" / "best.pt"), "--out", str(out)]) == 0
    assert Preprocessing.beside(out / "model.onnx") == Preprocessing.beside(run_dir / "export" / "model.onnx")


@pytest.mark.slow
def test_parity_failure_raises_after_writing_the_files(trained_run, tmp_path: Path) -> None:
    """The cnn: onnxruntime computes some MLPs bit for bit as torch does, on some CPUs, and its convolutions not."""
    with pytest.raises(ExportParityError, match="disagrees with PyTorch") as caught:
        export_onnx(trained_run("cnn") / "checkpoints" / "best.pt", tmp_path, tolerance=1e-12, num_images=64)
    assert caught.value.metrics["onnx/max_abs_diff"] > 1e-12
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "model.preprocessing.json").is_file()


@pytest.mark.slow
def test_data_elsewhere_needs_data_dir_or_random_inputs(trained_run, data_dir: Path, tmp_path: Path) -> None:
    """A checkpoint moved to a machine where the data is somewhere else, or absent (and no network)."""
    payload = load_checkpoint(trained_run("cnn") / "checkpoints" / "best.pt")
    elsewhere = str(tmp_path / "cluster-data")
    payload["config"]["paths"]["data_dir"] = elsewhere
    payload["config"]["dataset"]["source"]["root"] = elsewhere
    payload["config"]["dataset"]["source"]["download"] = True  # export must never download
    moved = tmp_path / "run" / "checkpoints" / "best.pt"
    save_checkpoint(payload, moved)

    with pytest.raises(UserError, match="cannot verify the export on validation images.*--data-dir.*--random-inputs"):
        export_onnx(moved, tmp_path / "export", 1e-4, 8)
    assert not Path(elsewhere).exists()
    report = export_onnx(moved, tmp_path / "export", 1e-4, 8, data_dir=data_dir)
    assert report.metrics["onnx/random_inputs"] == 0.0 and report.metrics["onnx/num_images"] == 8
    report = export_onnx(moved, tmp_path / "export", 1e-4, 8, random_inputs=True)
    assert report.metrics["onnx/random_inputs"] == 1.0 and report.metrics["onnx/max_abs_diff"] <= 1e-4


def test_rebase_moves_only_the_paths_under_the_data_dir() -> None:
    dataset = {"path": "data/ants", "source": {"root": "data", "path": "data/ants", "name": "database", "size": 3}}
    assert rebase(dataset, "data", "/mnt/d") == {
        "path": "/mnt/d/ants", "source": {"root": "/mnt/d", "path": "/mnt/d/ants", "name": "database", "size": 3}
    }


def test_targets_that_hold_no_checkpoint_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "empty_run" / ".hydra").mkdir(parents=True)
    with pytest.raises(UserError, match="no checkpoint in .*empty_run: expected .*checkpoints/best.pt"):
        find_checkpoint(str(tmp_path / "empty_run"))
    with pytest.raises(UserError, match="neither a checkpoint file, a run dir nor an MLflow run id"):
        find_checkpoint("outputs/not-a-run")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "state.pt")
    with pytest.raises(UserError, match="state_dict, not a sweeplab checkpoint"):
        export_onnx(tmp_path / "state.pt", tmp_path / "export", 1e-4, 8)
    (tmp_path / "garbage.pt").write_text("not a checkpoint")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        export_onnx(tmp_path / "garbage.pt", tmp_path / "export", 1e-4, 8)


@pytest.mark.slow
def test_export_by_mlflow_run_id_logs_back_to_the_run(trained_run, tmp_path: Path, capsys) -> None:
    from mlflow import MlflowClient

    run_dir = trained_run("mlp")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("export-test", artifact_location=str(tmp_path / "artifacts"))
    run_id = client.create_run(experiment, tags={"hydra.output_dir": str(run_dir)}).info.run_id

    # by the 8-character prefix `sweeplab compare` shows
    assert main(["export", run_id[:8], "--uri", uri, "--out", str(tmp_path / "export")]) == 0
    metrics = client.get_run(run_id).data.metrics
    assert metrics["onnx/max_abs_diff"] <= 1e-4 and metrics["onnx/argmax_agreement"] == 1.0
    logged = {Path(a.path).name for a in client.list_artifacts(run_id, "onnx")}
    assert logged == {"model.onnx", "model.preprocessing.json"}

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_code:
        main(["export", "0" * 32, "--uri", uri])
    assert exit_code.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(f"error: no MLflow run {'0' * 32} at {uri}")


def test_the_torchscript_exporters_graph_dump_goes_to_the_log_not_the_terminal(tmp_path: Path, capfd,
                                                                                caplog) -> None:
    """An adaptive pooling whose output (7) does not divide its input (6): TorchScript's exporter gives up, prints
    its IR graph from C++ and the dynamo exporter takes over (a VGG on 32x32 CIFAR-10 images does this)."""
    pooled = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.AdaptiveAvgPool2d(7), torch.nn.Flatten())
    with caplog.at_level("INFO", logger="sweeplab.story"):
        write_onnx(image_classifier(pooled, [0.5], [0.25]).eval(), [1, 8, 8], tmp_path / "model.onnx")
    out, err = capfd.readouterr()
    assert "Torch IR graph" not in out + err and "Torch IR graph at exception" in caplog.text
    onnx.checker.check_model(str(tmp_path / "model.onnx"))
