"""`sweeplab diff`: two digits runs launched from a project's checkout at two commits, with two learning rates.
The diff names exactly those differences, and its paired test comparison agrees with the runs' own test/acc
and with scipy on the per-image predictions each run recorded. Then what it says of a run recorded without
them, of test splits that cannot be paired, and of a compare table on a narrow terminal."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from scipy import stats

from launch import QUICK
from sweeplab.cli.main import main as sweeplab
from sweeplab.core.vocabulary import GIT_COMMIT_TAG, OVERRIDES_TAG, PARENT_TAG, SWEPT_TAG
from sweeplab.runs.run_diff import RunRecord, paired_test
from sweeplab.tracking.client import ensure_experiment
from sweeplab.tracking.per_image import SplitPredictions, read_split_predictions


def commit(project: Path, text: str) -> str:
    (project / "notes.txt").write_text(text)
    for command in (["add", "notes.txt"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", text]):
        subprocess.run(["git", *command], cwd=project, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()


def test_diff_names_what_differs_and_whether_the_test_difference_is_chance(train_here, capsys, tmp_path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    commits = []
    for lr, note in (("1e-3", "first"), ("3e-3", "second")):
        commits.append(commit(tmp_path, note))
        run = train_here("trainer.epochs=1", f"optimizer.lr={lr}", f"hydra.run.dir=run_{note}", *QUICK, cwd=tmp_path)
        assert run.returncode == 0, run.stderr[-2000:]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert not (tmp_path / "run_first" / ".hydra_masked").exists(), "nothing to mask: no masked copy"

    assert sweeplab(["diff", "--uri", uri, "run_first", "run_second", "--json"]) == 0
    diff = json.loads(capsys.readouterr().out)
    assert diff["config"] == {"optimizer.lr": [0.001, 0.003]}, "the one config key that differs"
    assert diff["code"][GIT_COMMIT_TAG] == commits and "notes.txt" in diff["code"]["diff --stat"]
    assert "environment" not in diff and "data" not in diff and "missing" not in diff
    assert diff["outcome"]["val/acc curve"]["first different epoch"] == 1

    client = MlflowClient(uri)
    runs = {run.data.tags["hydra.output_dir"]: run for run in client.search_runs(
        [e.experiment_id for e in client.search_experiments()])}
    first, second = (runs[str(tmp_path / name)] for name in ("run_first", "run_second"))
    a, b = (read_split_predictions(tmp_path / name / "test/predictions.npz") for name in ("run_first", "run_second"))
    assert a.right.mean() == pytest.approx(first.data.metrics["test/acc"]), "predictions as test/acc scored them"
    test = diff["test"]
    assert test["difference"] == pytest.approx(second.data.metrics["test/acc"] - first.data.metrics["test/acc"])
    only_a, only_b = int(np.sum(a.right & ~b.right)), int(np.sum(b.right & ~a.right))
    assert (test["only a right"], test["only b right"]) == (only_a, only_b)
    if only_a + only_b:
        assert test["mcnemar p"] == pytest.approx(stats.binomtest(only_b, only_a + only_b, 0.5).pvalue)
    assert test["interval"][0] <= test["difference"] <= test["interval"][1]

    assert sweeplab(["diff", "--uri", uri, first.info.run_id[:8], "run_second"]) == 0
    text = capsys.readouterr().out
    assert "optimizer.lr: 0.001 -> 0.003" in text and "the same: environment, data" in text
    assert "test, paired: B - A:" in text and ("larger than chance" in text or "not distinguishable" in text)

    old = client.create_run(first.info.experiment_id, tags={"hydra.output_dir": "/nowhere"}).info.run_id
    client.log_param(old, "optimizer.lr", "0.001")
    assert sweeplab(["diff", "--uri", uri, "run_first", old]) == 0
    assert f"run {old[:8]} has no record of its composed config" in capsys.readouterr().out.replace("\n", " ")
    with pytest.raises(SystemExit) as refused:
        sweeplab(["diff", "--uri", uri, "run_first"])
    assert refused.value.code == 2 and "takes two runs" in capsys.readouterr().err
    damaged = tmp_path / "run_second" / "test" / "predictions.npz"
    damaged.write_bytes(damaged.read_bytes()[:100])
    with pytest.raises(SystemExit) as refused:
        sweeplab(["diff", "--uri", uri, "run_first", "run_second"])
    said = capsys.readouterr().err
    assert refused.value.code == 2 and said.startswith(f"error: {damaged} is damaged (") and said.count("\n") == 1


def test_test_splits_that_differ_are_not_paired() -> None:
    def record(labels: list[int]) -> RunRecord:
        return RunRecord(None, None, None, SplitPredictions(np.array(labels), np.array(labels), ["a", "b"]))  # type: ignore[arg-type]

    assert "cannot be paired" in paired_test(record([0, 1]), record([1, 0]), {})["refused"]
    assert "cannot be paired" in paired_test(record([0, 1]), record([0, 1]), {"test": ["x", "y"]})["refused"]
    assert paired_test(record([0, 1]), record([0, 1]), {})["difference"] == 0


def test_compare_shows_the_swept_param_before_any_secondary_metric_in_80_columns(tmp_path: Path, capsys,
                                                                                monkeypatch) -> None:
    """A 2-job lr sweep with every metric compare shows: the lr column stays, metrics go (named), none cut."""
    monkeypatch.setenv("COLUMNS", "80")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = ensure_experiment(client, "narrow")
    parent = client.create_run(experiment, tags={SWEPT_TAG: "optimizer.lr"}).info.run_id
    ids = {}
    for lr, value in (("0.01", 0.91), ("0.001", 0.93)):
        run = client.create_run(experiment, tags={PARENT_TAG: parent, OVERRIDES_TAG: f"optimizer.lr={lr}"})
        ids[lr] = run.info.run_id
        client.log_param(run.info.run_id, "optimizer.lr", lr)
        for metric in ("best/val/acc", "test/acc", "val/acc", "val/loss", "train/loss", "epoch_seconds"):
            client.log_metric(run.info.run_id, metric, value)
        client.set_terminated(run.info.run_id)
    assert sweeplab(["compare", "--uri", uri, "--sweep", parent[:8]]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "run" in line and "status" in line)
    assert "lr" in header and "best/val/acc" in header and "done" in out and "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "not shown, for width:" in out and "optimizer.lr" not in out.split("not shown, for width:")[1]
    client.create_run(experiment, tags={SWEPT_TAG: "optimizer.lr"})  # a newer sweep, refused before any job ran
    assert sweeplab(["compare", "--uri", uri, "--sweep", "latest", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2, "latest: the newest sweep with runs"
    assert sweeplab(["compare", "--uri", uri, "--experiment", "narrow", "--limit", "1", "--json"]) == 0
    (best,) = json.loads(capsys.readouterr().out)
    assert best["run_id"] == ids["0.001"], "--limit keeps the best runs; the sweeps' parents are not counted"
