"""A real sweep (joblib workers) logged over HTTP to a real `mlflow server`, read back with MlflowClient."""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from launch import rerun_printed, run_train
from mlflow_server import SWEEPLAB, MlflowServer, mlflow_server  # noqa: F401 - mlflow_server is a fixture

pytestmark = pytest.mark.slow
EXPERIMENT = "sweep-test"



@pytest.fixture(scope="module")
def sweep(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> dict:  # noqa: F811
    """`python train.py -m optimizer.lr=1e-2,1e-3 model=mlp,cnn` in 2 joblib workers, 1 epoch each.

    The sweep exports its best job at its end, and logs (and registers) that job's model."""
    cwd = tmp_path_factory.mktemp("sweep")
    result = run_train(
        "-m", "optimizer.lr=1e-2,1e-3", "model=mlp,cnn", "trainer.epochs=1", f"tracking.uri={mlflow_server.uri}",
        f"tracking.experiment={EXPERIMENT}", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
        "tracking.tensorboard=true", "tracking.register_model=digits-sweep", cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(mlflow_server.uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return {"client": client, "parent": parents[0], "children": children, "experiment": experiment, "cwd": cwd,
            "uri": mlflow_server.uri, "stdout": result.stdout, "stderr": result.stderr}


def test_one_parent_with_four_finished_children(sweep: dict) -> None:
    assert sweep["parent"].info.status == "FINISHED"
    assert len(sweep["children"]) == 4
    assert {c.info.status for c in sweep["children"]} == {"FINISHED"}
    assert {c.info.run_name for c in sweep["children"]} == {
        f"optimizer.lr={lr} model={model}" for lr in ("0.01", "0.001") for model in ("mlp", "cnn")
    }
    assert sorted(c.data.tags["sweep.job"] for c in sweep["children"]) == ["0", "1", "2", "3"]


def test_children_carry_params_tags_and_metrics(sweep: dict) -> None:
    client: MlflowClient = sweep["client"]
    for child in sweep["children"]:
        params, tags, metrics = child.data.params, child.data.tags, child.data.metrics
        assert params["trainer.epochs"] == "1" and params["dataset.name"] == "digits"
        assert params["model.name"] in ("mlp", "cnn") and float(params["optimizer.lr"]) in (1e-2, 1e-3)
        assert tags["torch"] and tags["torchvision"] and tags["host"] and tags["device"] == "cpu"
        assert tags["torch.threads"] == str(max(1, len(os.sched_getaffinity(0)) // 2)), "2 workers share the cores"
        assert len(tags["sweeplab.git.commit"]) == 40 and tags["sweeplab.git.dirty"] in ("true", "false")
        assert "mlflow.source.git.commit" not in tags, "launched from a temporary dir: no project checkout"
        assert "optimizer.lr=" in tags["sweeplab.overrides"] and Path(tags["hydra.output_dir"]).is_dir()
        for name in ("train/loss", "train/acc", "val/loss", "val/acc", "lr", "epoch_seconds", "images_per_second",
                     "best/val/acc", "test/acc", "test/loss"):
            assert name in metrics, name
        assert 0 < metrics["val/acc"] <= 1 and 0 < metrics["test/acc"] <= 1
        assert [m.step for m in client.get_metric_history(child.info.run_id, "val/acc")] == [1]
        assert [m.step for m in client.get_metric_history(child.info.run_id, "test/acc")] == [1], "scored once"
        assert params["dataset.test_fraction"] == "0.2" and params["dataset.val_split"] == "train"


def test_children_record_the_splits_they_read_as_dataset_inputs(sweep: dict) -> None:
    """The same splits for every job (one split_seed), each a dataset input with its size."""
    inputs = [{(i.tags[0].value, i.dataset.name, json.loads(i.dataset.profile)["num_rows"], i.dataset.digest)
               for i in child.inputs.dataset_inputs} for child in sweep["children"]]
    assert all(found == inputs[0] for found in inputs)
    assert {(split, name, size) for split, name, size, _ in inputs[0]} == {
        ("train", "digits", 1150), ("val", "digits", 288), ("test", "digits", 359)}
    assert len({digest for *_, digest in inputs[0]}) == 3


def test_children_carry_artifacts_and_the_best_one_a_model(sweep: dict) -> None:
    client: MlflowClient = sweep["client"]
    child = sweep["children"][0]
    paths = {a.path for folder in ("", "figures", "checkpoints", ".hydra")
             for a in client.list_artifacts(child.info.run_id, folder)}
    for expected in ("figures/learning_curves.png", "figures/confusion_matrix.png", "figures/validation_samples.png",
                     "checkpoints/best.pt", ".hydra/config.yaml", ".hydra/overrides.yaml",
                     "tensorboard", "environment", "test"):
        assert expected in paths, paths
    assert "torch.jit.trace" not in sweep["stderr"], "TensorBoard's graph traces without torch.jit's FutureWarning"
    best = best_child(sweep)
    assert best.data.metrics["best/val/acc"] == max(c.data.metrics["best/val/acc"] for c in sweep["children"])
    assert best.data.metrics["onnx/max_abs_diff"] <= 1e-4 and best.data.metrics["onnx/argmax_agreement"] == 1
    models = client.search_logged_models([sweep["experiment"].experiment_id])
    assert {m.source_run_id for m in models} == {best.info.run_id}, "only the best job is exported and logged"
    versions = client.search_model_versions("name = 'digits-sweep'")
    assert {v.run_id for v in versions} == {best.info.run_id}


def best_child(sweep: dict):
    """The job the sweep exported (the parent says which)."""
    exported = sweep["parent"].data.tags["sweeplab.exported_job"]
    (child,) = [c for c in sweep["children"] if c.data.tags["sweep.job"] == exported]
    return child


def test_logged_model_takes_raw_images_through_pyfunc(sweep: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """What MLflow serves: uint8 images as they are (N, C, H, W), normalized inside; the run's own logits."""
    import mlflow
    import numpy as np
    import torch

    from sweeplab.runs.classifier import rebuild_classifier
    from sweeplab.training.checkpoint import load_checkpoint

    best = best_child(sweep)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sweep["uri"])  # restored after the test (set_tracking_uri sets it too)
    mlflow.set_tracking_uri(sweep["uri"])
    (logged,) = sweep["client"].search_logged_models([sweep["experiment"].experiment_id])
    model = mlflow.pyfunc.load_model(f"models:/{logged.model_id}")
    images = np.random.default_rng(0).integers(0, 256, (3, 1, 8, 8), dtype=np.uint8)
    logits = model.predict(images)
    logits = np.asarray(logits["logits"] if isinstance(logits, dict) else logits)
    checkpoint = load_checkpoint(Path(best.data.tags["hydra.output_dir"]) / "checkpoints" / "best.pt")
    expected = rebuild_classifier(checkpoint)(torch.from_numpy(images)).detach().numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    assert model.metadata.metadata["sweeplab_preprocessing"]["classes"] == checkpoint["classes"]


def test_parent_holds_the_summary(sweep: dict, tmp_path: Path) -> None:
    client: MlflowClient = sweep["client"]
    parent = sweep["parent"]
    children = {c.info.run_id: c for c in sweep["children"]}
    best = max(children.values(), key=lambda c: c.data.metrics["best/val/acc"])
    assert parent.data.tags["best_child_run_id"] == best.info.run_id
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "summary")} == {
        "summary/summary.csv", "summary/summary.md", "summary/metric_vs_params.png"}
    folder = Path(client.download_artifacts(parent.info.run_id, "summary", str(tmp_path)))
    rows = list(csv.DictReader(io.StringIO((folder / "summary.csv").read_text())))
    assert {row["run_id"] for row in rows} == set(children) and rows[0]["run_id"] == best.info.run_id
    assert {(row["optimizer.lr"], row["model"], row["status"]) for row in rows} == {
        (lr, model, "FINISHED") for lr in ("0.01", "0.001") for model in ("mlp", "cnn")}
    assert all(float(row["test/acc"]) == children[row["run_id"]].data.metrics["test/acc"] for row in rows)
    assert "| optimizer.lr | model |" in (folder / "summary.md").read_text()


def compare(sweep: dict, *args: str) -> subprocess.CompletedProcess:
    """The installed `sweeplab` console script, as a user types it."""
    return subprocess.run([SWEEPLAB, "compare", "--uri", sweep["uri"], *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "160"})


def test_compare_json_and_table(sweep: dict) -> None:
    result = compare(sweep, "--sweep", sweep["parent"].info.run_id, "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 4
    assert [r["best/val/acc"] for r in rows] == sorted((r["best/val/acc"] for r in rows), reverse=True)
    tested = {c.info.run_id: c.data.metrics["test/acc"] for c in sweep["children"]}
    assert all(r["test/acc"] == tested[r["run_id"]] for r in rows)
    assert {"optimizer.lr", "model.name", "status"} <= set(rows[0]) and "seed" not in rows[0]
    table = compare(sweep, "--experiment", EXPERIMENT)
    assert table.returncode == 0, table.stderr
    assert "test/acc" in table.stdout and "test/acc" in sweep["stdout"], "the sweep's own table shows it too"
    for child in sweep["children"]:
        assert child.info.run_id[:8] in table.stdout
    csv_rows = list(csv.DictReader(io.StringIO(compare(sweep, "--sweep", "latest", "--csv").stdout)))
    assert [r["run_id"] for r in csv_rows] == [r["run_id"] for r in rows]


def test_compare_prints_the_reproducing_command(sweep: dict) -> None:
    child = sweep["children"][0]
    result = compare(sweep, "--command", child.info.run_id[:8])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == (f"# launched outside a git checkout; sweeplab {child.data.tags['sweeplab.version']} at commit "
                        f"{child.data.tags['sweeplab.git.commit']}")
    assert lines[-1].startswith("python train.py ") and "optimizer.lr=" in lines[-1] and "model=" in lines[-1]
    sweep_command = compare(sweep, "--command", sweep["parent"].info.run_id[:8]).stdout.strip().splitlines()[-1]
    assert sweep_command.startswith("python train.py -m ") and "hydra/launcher=joblib" in sweep_command
    assert "hydra.launcher.n_jobs=2" in sweep_command and "hydra.sweep.dir" not in sweep_command
    plan = rerun_printed(sweep_command, "sweep.plan=true", cwd=sweep["cwd"])  # the same jobs, as the sweep ran them
    planned = [dict(o.split("=", 1) for o in shlex.split(line.split(": ", 1)[1].split(" -> ")[0]))
               for line in plan.stdout.splitlines() if line.startswith("  job ")]
    assert sorted((float(job["optimizer.lr"]), job["model"]) for job in planned) == sorted(
        (float(c.data.params["optimizer.lr"]), c.data.params["model.name"]) for c in sweep["children"]), plan.stdout
    assert all(job["tracking.uri"] == sweep["uri"] and job["trainer.epochs"] == "1" for job in planned)
    bad = compare(sweep, "--filter", "nonsense here")
    assert bad.returncode == 2 and bad.stderr.startswith("error: bad --filter")
