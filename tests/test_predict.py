"""`sweeplab predict`: evaluation's preprocessing for any picture, the same answer from PyTorch and ONNX,
and one clear line per bad input while the other images are still classified."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from omegaconf import OmegaConf
from onnx import TensorProto, helper
from PIL import Image

from sweeplab.cli.main import main
from sweeplab.data import load_splits
from sweeplab.export.from_checkpoint import export_and_verify as export_onnx
from sweeplab.runs.classifier import rebuild_classifier
from sweeplab.runs.classify import decoder, read_image
from sweeplab.runs.preprocessing import Preprocessing
from sweeplab.training.checkpoint import load_checkpoint
from trained_runs import RUNS

# One run per way the data was decoded: one channel in memory, RGB in memory, an image folder.
DECODINGS = ["mlp", "cnn", "resnet18"]


def noise(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Pictures a user might have: odd sizes, alpha, a palette with transparency, grayscale, CMYK, JPEG and PNG."""
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(0)
    palette = Image.fromarray(noise(rng, 300, 20)).convert("P")
    palette.info["transparency"] = 0
    made = {
        "rgba.png": Image.fromarray(noise(rng, 50, 70, 4), "RGBA"),
        "palette.png": palette,
        "gray.jpg": Image.fromarray(noise(rng, 9, 9), "L"),
        "tiny.png": Image.fromarray(noise(rng, 1, 1, 3)),
        "huge.jpg": Image.fromarray(noise(rng, 1200, 1600, 3)),
        "cmyk.jpg": Image.fromarray(noise(rng, 30, 40, 4), "CMYK"),
    }
    for name, image in made.items():
        image.save(folder / name, transparency=0) if name == "palette.png" else image.save(folder / name)
    return [folder / name for name in made]


@pytest.fixture
def exported(trained_run, tmp_path: Path):
    """`exported("cnn")` -> (run dir, its model.onnx)."""

    def export(name: str) -> tuple[Path, Path]:
        run_dir = trained_run(name)
        return run_dir, export_onnx(run_dir / "checkpoints" / "best.pt", tmp_path / name, 1e-4, 4).files[0]

    return export


def predict_json(capsys, *argv: str) -> tuple[int, list[dict], list[str]]:
    """Run `sweeplab predict ... --json`: (exit code, the JSON entries, the error lines on stderr)."""
    capsys.readouterr()
    code = main(["predict", *argv, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), [line for line in captured.err.splitlines() if line.startswith("error:")]


@pytest.mark.slow
@pytest.mark.parametrize("name", DECODINGS)
def test_pytorch_and_onnx_agree_on_odd_pictures(name: str, exported, pictures: list[Path], capsys) -> None:
    run_dir, onnx_file = exported(name)
    files = [str(p) for p in pictures]
    code, by_torch, errors = predict_json(capsys, "--run", str(run_dir), *files, "--top-k", "3")
    assert (code, errors) == (0, [])
    code, by_onnx, errors = predict_json(capsys, "--onnx", str(onnx_file), *files, "--top-k", "3")
    assert (code, errors) == (0, [])

    assert [entry["image"] for entry in by_torch] == files == [entry["image"] for entry in by_onnx]
    for torch_entry, onnx_entry in zip(by_torch, by_onnx, strict=True):
        assert len(torch_entry["predictions"]) == (2 if name == "resnet18" else 3)  # top-k of the ants/bees folder: 2
        assert torch_entry["predictions"][0]["class"] == onnx_entry["predictions"][0]["class"]
        np.testing.assert_allclose(
            [p["probability"] for p in torch_entry["predictions"]],
            [p["probability"] for p in onnx_entry["predictions"]],
            atol=1e-5,
        )


@pytest.mark.slow
@pytest.mark.parametrize("name", DECODINGS)
def test_pictures_are_decoded_exactly_like_the_data(name: str, trained_run, tmp_path: Path) -> None:
    """A validation image saved as a file comes back as the same uint8 tensor the model was evaluated on."""
    payload = load_checkpoint(trained_run(name) / "checkpoints" / "best.pt")
    preprocessing = Preprocessing.from_checkpoint(payload)
    val = load_splits(OmegaConf.create(payload["config"]["dataset"])).val
    for i in range(3):
        expected = val[i][0]
        if name == "resnet18":  # an image folder: the file itself
            path = Path(val.samples[i][0])
        else:
            path = tmp_path / f"{i}.png"
            Image.fromarray(expected.permute(1, 2, 0).squeeze(-1).numpy()).save(path)
        assert torch.equal(decoder(preprocessing)(read_image(path, preprocessing.mode)), expected)


@pytest.mark.slow
def test_probabilities_are_the_models_on_evaluation_inputs(trained_run, tmp_path: Path, capsys) -> None:
    run_dir = trained_run("cnn")
    payload = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    images = load_splits(OmegaConf.create(payload["config"]["dataset"])).val.tensors[0][:4]
    files = []
    for i, image in enumerate(images):
        files.append(str(tmp_path / f"val_{i}.png"))
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(files[-1])
    expected = rebuild_classifier(payload)(images).softmax(1)  # the run's classifier on the uint8 images

    code, entries, _ = predict_json(capsys, "--run", str(run_dir), *files, "--top-k", "100")
    assert code == 0
    for entry, probabilities in zip(entries, expected.tolist(), strict=True):
        ranked = [payload["classes"][i] for i in np.argsort(probabilities)[::-1]]
        assert [p["class"] for p in entry["predictions"]] == ranked
        np.testing.assert_allclose([p["probability"] for p in entry["predictions"]], sorted(probabilities)[::-1],
                                   atol=1e-6)


@pytest.mark.slow
def test_bad_files_are_one_line_each_and_the_rest_is_classified(exported, pictures: list[Path], tmp_path: Path,
                                                                 capsys) -> None:
    run_dir, onnx_file = exported("cnn")
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not a picture")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(pictures[4].read_bytes()[:300])
    missing = tmp_path / "missing.jpg"
    files = [str(pictures[0]), str(not_an_image), str(missing), str(truncated), str(pictures[1])]

    for backend in (["--run", str(run_dir)], ["--onnx", str(onnx_file)]):
        code, entries, errors = predict_json(capsys, *backend, *files)
        assert code == 2
        assert [("predictions" in entry) for entry in entries] == [True, False, False, False, True]
        assert errors[:2] == [
            f"error: {not_an_image} is not a readable image (cannot identify image file '{not_an_image}')",
            f"error: {missing}: no such file",
        ]
        assert errors[2].startswith(f"error: {truncated} is not a readable image (") and len(errors) == 3


@pytest.mark.slow
def test_a_folder_stands_for_its_images_and_the_table_lists_them(exported, pictures: list[Path], capsys) -> None:
    run_dir, _ = exported("mlp")
    capsys.readouterr()
    assert main(["predict", "--run", str(run_dir), str(pictures[0].parent), "--top-k", "1"]) == 0
    table = capsys.readouterr().out
    assert all(picture.name in table for picture in pictures)


@pytest.mark.slow
def test_onnx_files_sweeplab_did_not_write_are_refused(exported, tmp_path: Path, capsys) -> None:
    _, digits_onnx = exported("mlp")
    _, cifar_onnx = exported("cnn")
    foreign = tmp_path / "foreign" / "model.onnx"
    foreign.parent.mkdir()
    node = helper.make_node("Identity", ["x"], ["y"])
    value = helper.make_tensor_value_info
    graph = helper.make_graph([node], "other", [value("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [value("y", TensorProto.FLOAT, [1, 3, 4, 4])])
    onnx.save(helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)]), foreign)
    picture = str(tmp_path / "picture.png")
    Image.new("RGB", (5, 5)).save(picture)

    def refused(onnx_file: Path) -> str:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_code:
            main(["predict", "--onnx", str(onnx_file), picture])
        assert exit_code.value.code == 2
        return capsys.readouterr().err

    assert "has no model.preprocessing.json beside it" in refused(foreign)
    cifar_preprocessing = (cifar_onnx.parent / "model.preprocessing.json").read_bytes()
    (foreign.parent / "model.preprocessing.json").write_bytes(cifar_preprocessing)
    assert "but its preprocessing file describes [('images', [3, 32, 32])]" in refused(foreign)
    mismatched = tmp_path / "mismatched" / "model.onnx"
    mismatched.parent.mkdir()
    mismatched.write_bytes(digits_onnx.read_bytes())
    (mismatched.parent / "model.preprocessing.json").write_bytes(cifar_preprocessing)
    assert "takes [('images', [1, 8, 8])]" in refused(mismatched)
    foreign.write_text("not onnx")
    assert "is not a readable ONNX model" in refused(foreign)
    assert f"no ONNX file at {tmp_path / 'absent.onnx'}" in refused(tmp_path / "absent.onnx")


def test_a_run_without_checkpoint_is_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "run" / ".hydra").mkdir(parents=True)
    Image.new("RGB", (5, 5)).save(tmp_path / "picture.png")
    with pytest.raises(SystemExit) as exit_code:
        main(["predict", "--run", str(tmp_path / "run"), str(tmp_path / "picture.png")])
    assert exit_code.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(f"error: no checkpoint in {tmp_path / 'run'}")


@pytest.mark.slow
def test_train_cnn_on_cifar10_then_predict_by_run_id_through_both_backends(train_here, data_dir: Path,
                                                                          tmp_path: Path, capsys) -> None:
    """The issue's "done means": a tracked run exports at its end, and both backends name the dog's class alike."""
    from mlflow import MlflowClient

    uri, run_dir = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "run"
    overrides = [*RUNS["cnn"], "trainer.epochs=1", "trainer.progress=false", "tracking.log_model=false",
                 f"tracking.uri={uri}", f"paths.data_dir={data_dir}", f"hydra.run.dir={run_dir}"]
    result = train_here(*overrides, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("sweeplab-cifar10").experiment_id])
    assert run.data.metrics["onnx/max_abs_diff"] <= 1e-4 and run.data.metrics["onnx/argmax_agreement"] == 1
    dog = tmp_path / "dog.png"
    Image.fromarray(noise(np.random.default_rng(1), 150, 200, 3)).save(dog)

    code, by_torch, _ = predict_json(capsys, "--run", run.info.run_id, "--uri", uri, str(dog))
    assert code == 0
    code, by_onnx, _ = predict_json(capsys, "--onnx", str(run_dir / "export" / "model.onnx"), str(dog))
    assert code == 0
    assert by_torch[0]["predictions"][0]["class"] == by_onnx[0]["predictions"][0]["class"]
    assert by_torch[0]["predictions"][0]["class"] in load_checkpoint(run_dir / "checkpoints" / "best.pt")["classes"]
    np.testing.assert_allclose([p["probability"] for p in by_torch[0]["predictions"]],
                               [p["probability"] for p in by_onnx[0]["predictions"]], atol=1e-5)


def test_a_run_dir_that_kept_no_checkpoint_is_predicted_from_its_mlflow_run(train_here, tmp_path: Path,
                                                                            capsys) -> None:
    """trainer.keep_checkpoints=none: the run dir has no best.pt, its MLflow run does; `--run <run dir>` finds it."""
    run_dir = tmp_path / "run"
    result = train_here("trainer.epochs=1", "trainer.keep_checkpoints=none", "export.onnx=false",
                        "tracking.log_model=false", "trainer.progress=false", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (run_dir / "checkpoints" / "best.pt").exists()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "digit.png")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = ["predict", "--run", str(run_dir), "--uri", uri, "--json", "--top-k", "3", str(tmp_path / "digit.png")]
    predicted = subprocess.run([sys.executable, "-m", "sweeplab.cli.main", *command], cwd=tmp_path, capture_output=True,
                               text=True, timeout=120)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    (prediction,) = json.loads(predicted.stdout)
    assert len(prediction["predictions"]) == 3 and "Downloading" not in predicted.stderr, "from MLflow, without a bar"
