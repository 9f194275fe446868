"""Fast tracking tests on a real sqlite MLflow store: URIs, params, reachability, the sweep summary."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param

from mlflow_server import free_port
from sweeplab.core.errors import UserError
from sweeplab.core.vocabulary import MAX_PARAM_LENGTH, OPTIMIZED_TAG, OVERRIDES_TAG, PARENT_TAG, SWEPT_TAG
from sweeplab.runs.run_table import DATA, comparison, find_runs, print_table
from sweeplab.tracking import figures
from sweeplab.tracking.client import ensure_experiment
from sweeplab.tracking.metadata import flatten
from sweeplab.tracking.session import job_name
from sweeplab.tracking.store import check_reachable, experiment_name, resolve_uri
from sweeplab.tracking.sweep import log_sweep_summary, markdown_table


def test_figures_drawn_on_an_earlier_runs_figure_are_byte_for_byte_those_drawn_anew(tmp_path: Path) -> None:
    """The recorder draws a run's learning curves and confusion matrix on the figures it built for an earlier run:
    what the earlier run drew (more epochs, other counts) must leave no trace."""
    rng = np.random.default_rng(0)

    def draw(epochs: int, accuracy: float, name: str) -> list[bytes]:
        history = [{"epoch": e, **{f"{split}_{metric}": rng.random() for split in ("train", "val")
                                   for metric in ("loss", "acc")}} for e in range(1, epochs + 1)]
        labels = rng.integers(0, 10, 300)
        predictions = np.where(rng.random(300) < accuracy, labels, rng.integers(0, 10, 300))
        paths = [figures.learning_curves(history, tmp_path / f"{name}-curves.png"),
                 figures.confusion_matrix(labels, predictions, [str(c) for c in range(10)], tmp_path / f"{name}.png")]
        return [path.read_bytes() for path in paths]

    figures.curves_layout.cache_clear()
    figures.matrix_layout.cache_clear()
    anew = draw(3, 0.9, "anew")
    draw(12, 0.3, "earlier")
    rng = np.random.default_rng(0)
    assert draw(3, 0.9, "again") == anew
    for line in figures.curves_layout()[1].values():  # and each line within its axes' view
        (x_low, x_high), (y_low, y_high) = line.axes.get_xlim(), line.axes.get_ylim()
        assert x_low < min(line.get_xdata()) and max(line.get_xdata()) < x_high
        assert y_low < min(line.get_ydata()) and max(line.get_ydata()) < y_high


def test_default_store_is_an_absolute_sqlite_file_in_the_current_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert resolve_uri("sqlite:///runs/x.db") == f"sqlite:///{tmp_path / 'runs' / 'x.db'}"
    assert resolve_uri("sqlite:////abs/x.db") == "sqlite:////abs/x.db"


def test_environment_uri_is_honoured_unless_configured(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert resolve_uri(None) == "http://tracking.example:5000"
    assert resolve_uri("http://other:5000") == "http://other:5000"
    with pytest.raises(UserError, match="not a URI"):
        resolve_uri("mlflow.db")


def test_experiment_defaults_to_the_dataset() -> None:
    assert experiment_name(None, "cifar10") == "sweeplab-cifar10"
    assert experiment_name("mine", "cifar10") == "mine"


def test_config_is_flattened_to_dotted_params_within_mlflow_limits() -> None:
    params = flatten({"optimizer": {"lr": 0.01, "betas": [0.9, 0.99]}, "empty": {}, "long": "x" * 7000})
    assert params["optimizer.lr"] == "0.01" and params["optimizer.betas"] == "[0.9, 0.99]"
    assert params["empty"] == "{}"
    assert len(params["long"]) == MAX_PARAM_LENGTH and params["long"].endswith("...")


def test_unreachable_server_is_a_user_error_within_seconds() -> None:
    started = time.monotonic()
    with pytest.raises(UserError, match=r"tracking server http://127\.0\.0\.1:\d+ is unreachable"):
        check_reachable(f"http://127.0.0.1:{free_port()}")
    assert time.monotonic() - started < 10
    check_reachable("sqlite:////nowhere/mlflow.db")  # local stores need no check


def test_sweep_jobs_are_named_by_their_swept_values() -> None:
    overrides = ["trainer.epochs=1", "optimizer.lr=0.01", "model=cnn"]
    assert job_name(overrides, ["optimizer.lr", "model"]) == "optimizer.lr=0.01 model=cnn"
    assert job_name(overrides, []) == "trainer.epochs=1 optimizer.lr=0.01 model=cnn"


@pytest.fixture
def sweep_store(tmp_path: Path) -> tuple[MlflowClient, str, dict[str, str]]:
    """A parent run and three children (one failed) written through MlflowClient, as sweeps write them."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = ensure_experiment(client, "summary")
    parent = client.create_run(experiment_id, tags={SWEPT_TAG: "optimizer.lr model", OPTIMIZED_TAG: "val/loss"})
    children = {}
    for job, (lr, model, loss, status) in enumerate(
        [("0.1", "mlp", 0.5, "FINISHED"), ("0.01", "cnn", 0.2, "FINISHED"), ("0.001", "mlp", None, "FAILED")]
    ):
        overrides = shlex.join(["trainer.epochs=1", f"optimizer.lr={lr}", f"model={model}"])
        tags = {PARENT_TAG: parent.info.run_id, OVERRIDES_TAG: overrides, "sweep.job": str(job)}
        run_id = client.create_run(experiment_id, tags=tags).info.run_id
        if loss is not None:
            client.log_metric(run_id, "best/val/loss", loss)
        client.set_terminated(run_id, status)
        children[lr] = run_id
    return client, parent.info.run_id, children


def test_summary_ranks_jobs_by_the_optimized_metric(sweep_store, tmp_path: Path) -> None:
    client, parent_id, children = sweep_store
    log_sweep_summary(client, parent_id)
    tags = client.get_run(parent_id).data.tags
    assert tags["best_child_run_id"] == children["0.01"]  # lowest loss wins for a loss metric
    assert tags["sweep.jobs"] == "3" and tags["sweep.failed_jobs"] == "1"
    folder = Path(client.download_artifacts(parent_id, "summary", str(tmp_path)))
    lines = (folder / "summary.md").read_text().splitlines()
    assert lines[0].startswith("| run_id | job | optimizer.lr | model | status | best/val/loss |")
    assert [line.split(" | ")[2] for line in lines[2:]] == ["0.01", "0.1", "0.001"]  # failed job last
    assert (folder / "metric_vs_params.png").stat().st_size > 5_000
    assert (folder / "summary.csv").read_text().count("\n") == 4


def test_a_sweep_stopped_before_any_job_has_a_value_is_summarized_without_a_plot(tmp_path: Path) -> None:
    """Ctrl-C or SIGTERM in the first epoch of the first job: the parent still gets its table (its end used to
    fail on the empty plot, leaving it RUNNING)."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = ensure_experiment(client, "stopped")
    parent = client.create_run(experiment_id, tags={SWEPT_TAG: "optimizer.lr", OPTIMIZED_TAG: "val/acc"})
    tags = {PARENT_TAG: parent.info.run_id, OVERRIDES_TAG: "optimizer.lr=0.1", "sweep.job": "0"}
    client.set_terminated(client.create_run(experiment_id, tags=tags).info.run_id, "KILLED")
    log_sweep_summary(client, parent.info.run_id)
    assert client.get_run(parent.info.run_id).data.tags["sweep.jobs"] == "1"
    folder = Path(client.download_artifacts(parent.info.run_id, "summary", str(tmp_path)))
    assert sorted(path.name for path in folder.iterdir()) == ["summary.csv", "summary.md"]


def test_markdown_table_formats_numbers_and_gaps() -> None:
    table = markdown_table([{"a": 0.123456, "b": None, "c": "x"}])
    assert table.splitlines() == ["| a | b | c |", "|---|---|---|", "| 0.1235 |  | x |"]


def test_processes_creating_one_fresh_store_at_once_all_get_it(tmp_path: Path) -> None:
    """A fresh sqlite store is migrated under another name and linked into place whole (a killed or racing
    creator never leaves a half-made store); four recorders creating it at once all end up using one."""
    db = tmp_path / "mlflow.db"
    code = ("import sys; from sweeplab.tracking.client import client, ensure_experiment; "
            "print(ensure_experiment(client(sys.argv[1]), 'race'))")
    processes = [subprocess.Popen([sys.executable, "-c", code, f"sqlite:///{db}"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, outputs
    assert len({out.strip().splitlines()[-1] for out, _ in outputs}) == 1, "one experiment, in one store"
    assert [p.name for p in tmp_path.iterdir()] == ["mlflow.db"], "no temporary store left behind"


def sweeplab_cli(*args: str, columns: int = 80) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("sweeplab")
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": str(columns)})


@pytest.fixture
def wide_experiment(tmp_path: Path) -> tuple[str, list[str], str]:
    """12 runs differing in 40 params (as a long study leaves them), and a sweep's parent; the store's uri."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = ensure_experiment(client, "wide")
    parent = client.create_run(experiment_id, tags={SWEPT_TAG: "optimizer.lr", OVERRIDES_TAG: "optimizer.lr=1e-2,1e-3",
                                                     "mlflow.source.git.commit": "a" * 40, "git.dirty": "false"})
    ids = []
    for index in range(12):
        run = client.create_run(experiment_id, tags={PARENT_TAG: parent.info.run_id, OPTIMIZED_TAG: "val/acc",
                                                     OVERRIDES_TAG: f"optimizer.lr={index}"})
        params = [Param(f"group{key % 4}.option_number_{key}", str(index * key)) for key in range(40)]
        client.log_batch(run.info.run_id, metrics=[Metric("best/val/acc", index / 12, 0, 0)], params=params)
        client.set_terminated(run.info.run_id)
        ids.append(run.info.run_id)
    return uri, ids, parent.info.run_id


def test_compare_fits_an_80_column_terminal(wide_experiment) -> None:
    uri, ids, _ = wide_experiment
    result = sweeplab_cli("compare", "--uri", uri, "--experiment", "wide")
    assert result.returncode == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= 80, result.stdout
    assert "--wide shows every column" in " ".join(result.stdout.split()) and "best/val/acc" in result.stdout
    first_row = next(line for line in result.stdout.splitlines() if " done " in line)
    assert ids[-1][:8] in first_row, "best first"
    wide = sweeplab_cli("compare", "--uri", uri, "--experiment", "wide", "--wide")
    assert "group3.option_number_39" in wide.stdout and "not shown" not in wide.stdout


def test_a_run_is_named_by_the_prefix_compare_prints(wide_experiment) -> None:
    uri, ids, parent = wide_experiment
    swept = sweeplab_cli("compare", "--uri", uri, "--sweep", parent[:8], "--json")
    assert swept.returncode == 0, swept.stderr
    assert len(json.loads(swept.stdout)) == 12
    command = sweeplab_cli("compare", "--uri", uri, "--command", parent[:8]).stdout.splitlines()
    assert command == [f"git checkout {'a' * 40}", "python train.py -m optimizer.lr=1e-2,1e-3"]
    shared = os.path.commonprefix(ids[:2])
    if len(shared) >= 4:  # two runs' ids rarely share 4 hex digits; when they do, the prefix is ambiguous
        ambiguous = sweeplab_cli("compare", "--uri", uri, "--command", shared)
        assert ambiguous.returncode == 2 and ids[0] in ambiguous.stderr and ids[1] in ambiguous.stderr
    missing = sweeplab_cli("compare", "--uri", uri, "--sweep", "ffffffff")
    assert missing.returncode == 2 and "no run id starts with ffffffff" in missing.stderr


def test_compare_says_when_runs_read_different_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Two runs on the same data set but different splits (their dataset inputs' digests) are flagged."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = ensure_experiment(client, "data")
    for index, digest in enumerate(("aaaa", "aaaa", "bbbb")):
        run_id = client.create_run(experiment_id, tags={OPTIMIZED_TAG: "val/acc"}).info.run_id
        client.log_batch(run_id, metrics=[Metric("best/val/acc", index / 4, 0, 0)], params=[Param("seed", str(index))])
        inputs = [DatasetInput(Dataset("digits", digest + split, "sweeplab", "{}"),
                               [InputTag("mlflow.data.context", split)]) for split in ("train", "test")]
        client.log_inputs(run_id, datasets=inputs)
    runs = find_runs(client, "data", None, "", 10)
    on_a = [run for run in runs if run.inputs.dataset_inputs[0].dataset.digest.startswith("aaaa")]
    same, different = comparison(on_a, None), comparison(runs, None)
    assert DATA not in same.params and len({row[DATA] for row in same.rows}) == 1
    assert different.params[0] == DATA and len({row[DATA] for row in different.rows}) == 2
    print_table(different, "here")
    assert "these runs read different data" in capsys.readouterr().out
