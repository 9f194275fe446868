"""Seed replicates folded into configurations (sweeplab.core.aggregate): the numbers against `statistics`, failed
runs counted but never averaged, a loss ranked low-first; then the same numbers where users read them: the
parent run's aggregate.csv, the end-of-sweep table and `sweeplab compare --aggregate seed`."""

from __future__ import annotations

import csv
import io
import shlex
import statistics
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from scipy import stats

from launch import QUICK
from sweeplab.cli.main import main as sweeplab
from sweeplab.core.aggregate import aggregate, best_config, interval_cell, mean_and_std, p_cell, seeds_vary, spread
from sweeplab.core.errors import UserError
from sweeplab.core.significance import holm, mcnemar_p, paired_bootstrap, welch_p
from sweeplab.core.vocabulary import OPTIMIZED_TAG, OVERRIDES_TAG, PARENT_TAG, SWEPT_TAG
from sweeplab.runs.results import JobResult, best_result
from sweeplab.runs.run_table import aggregated, find_runs
from sweeplab.sweeps.sweep_table import print_sweep_table
from sweeplab.tracking.client import ensure_experiment
from sweeplab.tracking.sweep import log_sweep_summary

KEYS = ["optimizer.lr", "seed"]


def run(lr: str, seed: str, acc: float | None, test: float | None = None, status: str = "FINISHED") -> dict:
    return {"optimizer.lr": lr, "seed": seed, "status": status, "best/val/acc": acc, "test/acc": test}


def test_each_configuration_gets_the_mean_and_sample_std_of_its_seeds() -> None:
    rows = [run("0.1", "0", 0.90, 0.80), run("0.01", "0", 0.95, 0.91), run("0.1", "1", 0.70, 0.60),
            run("0.01", "1", 0.93, 0.90), run("0.01", "2", 0.97, 0.95)]
    high, low = aggregate(rows, KEYS, ["best/val/acc", "test/acc"])
    assert {key: value for key, value in high.items() if not key.endswith(("_ci_low", "_ci_high", "_p_holm"))} == {
        "optimizer.lr": "0.01", "n": 3, "failed": 0,
        "best/val/acc_mean": statistics.mean([0.95, 0.93, 0.97]),
        "best/val/acc_std": statistics.stdev([0.95, 0.93, 0.97]),
        "test/acc_mean": statistics.mean([0.91, 0.90, 0.95]),
        "test/acc_std": statistics.stdev([0.91, 0.90, 0.95]), "tied_with_best": None}
    assert low["optimizer.lr"] == "0.1" and low["best/val/acc_mean"] == pytest.approx(0.80)
    assert low["best/val/acc_std"] == pytest.approx(0.1414213562, rel=1e-9), "ddof=1: sqrt(0.02 / 1)"
    assert spread(high, "best/val/acc") == "0.9500 ± 0.0200"
    assert best_config([high, low], KEYS, "best/val/acc") == "optimizer.lr=0.01"


def test_each_configuration_gets_its_interval_and_its_test_against_the_best_as_scipy_computes_them() -> None:
    best, second, third = [0.95, 0.93, 0.97], [0.90, 0.94, 0.92], [0.60, 0.62, 0.61]
    rows = [run(lr, str(seed), value, value - 0.01) for lr, values in (("0.01", best), ("0.1", second), ("1", third))
            for seed, value in enumerate(values)]
    first, middle, last = aggregate(rows, KEYS, ["best/val/acc", "test/acc"])
    t = stats.t.ppf(0.975, 2)  # three seeds: two degrees of freedom (4.302653)
    assert t == pytest.approx(4.302652729749464)
    half = t * statistics.stdev(best) / 3 ** 0.5
    assert (first["best/val/acc_ci_low"], first["best/val/acc_ci_high"]) == pytest.approx((0.95 - half, 0.95 + half))
    raw = [stats.ttest_ind(values, best, equal_var=False).pvalue for values in (second, third)]
    holm = sorted(raw)[0] * 2, max(sorted(raw)[0] * 2, sorted(raw)[1])  # Holm, two comparisons
    assert (last["best/val/acc_p_holm"], middle["best/val/acc_p_holm"]) == pytest.approx(holm)
    assert first["best/val/acc_p_holm"] is None and first["tied_with_best"] is None, "the best is not tested"
    assert middle["tied_with_best"] is True and last["tied_with_best"] is False
    assert middle["test/acc_p_holm"] == pytest.approx(middle["best/val/acc_p_holm"]), "the same shift"
    assert interval_cell(first, "best/val/acc") == f"{0.95 - half:.4f}-{0.95 + half:.4f}"
    assert p_cell(middle, "best/val/acc").endswith("=") and not p_cell(last, "best/val/acc").endswith("=")


def test_one_seed_or_no_spread_gives_no_interval_and_no_test_not_nan() -> None:
    rows = [run("0.01", "0", 0.9), run("0.1", "0", 0.8), run("0.1", "1", 0.8), run("1", "0", 0.7), run("1", "1", 0.6)]
    single, flat, spread_out = aggregate(rows, KEYS, ["best/val/acc"])
    assert single["best/val/acc_ci_low"] is None and flat["best/val/acc_ci_low"] is None, "one seed; no spread"
    assert spread_out["best/val/acc_ci_low"] is not None
    assert flat["best/val/acc_p_holm"] is None and flat["tied_with_best"] is None, "against one seed: no test"
    assert interval_cell(flat, "best/val/acc") == "" and p_cell(flat, "best/val/acc") == ""


def test_holm_mcnemar_and_the_paired_bootstrap_on_known_values() -> None:
    assert holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None]), "3x0.01, 2x0.03, max(.., 0.04)"
    right_a = np.array([True] * 80 + [False] * 20)
    right_b = np.array([True] * 79 + [False] + [True] * 9 + [False] * 11)  # 1 image only A right, 9 only B
    assert mcnemar_p(right_a, right_b) == (1, 9, pytest.approx(22 / 1024)), "2 x P(X <= 1), X ~ Binomial(10, 1/2)"
    assert mcnemar_p(right_a, right_a) == (0, 0, 1.0)
    difference, low, high = paired_bootstrap(right_a, right_b)
    assert difference == pytest.approx(0.08)
    draws = np.random.default_rng(1).integers(0, 100, (4000, 100))  # resampling image by image, the slow way
    slow = np.percentile((right_b[draws].astype(int) - right_a[draws]).mean(axis=1), [2.5, 97.5])
    assert (low, high) == pytest.approx(tuple(slow), abs=0.01)
    assert welch_p([0.5, 0.5], [0.7, 0.7]) is None and welch_p([0.5], [0.6, 0.7]) is None


def test_failed_runs_are_counted_not_averaged() -> None:
    rows = [run("0.1", "0", 0.90), run("0.1", "1", 0.10, status="FAILED"), run("0.1", "2", 0.20, status="RUNNING")]
    (only,) = aggregate(rows, KEYS, ["best/val/acc"])
    assert (only["n"], only["failed"], only["best/val/acc_mean"]) == (1, 1, 0.90), "a running job counts in neither"


def test_one_run_has_no_std_and_no_finished_run_no_mean() -> None:
    assert mean_and_std([0.5]) == (0.5, None) and mean_and_std([]) == (None, None)
    rows = [run("0.1", "0", None, status="FAILED"), run("0.01", "0", 0.9)]
    single, failed = aggregate(rows, KEYS, ["best/val/acc"])
    assert spread(single, "best/val/acc") == "0.9000" and single["best/val/acc_std"] is None
    assert failed["n"] == 0 and failed["failed"] == 1 and spread(failed, "best/val/acc") == "", "ranked last"
    assert best_config([failed], KEYS, "best/val/acc") is None


def test_a_loss_ranks_the_lowest_mean_first() -> None:
    rows = [{"model": "mlp", "seed": s, "status": "FINISHED", "best/val/loss": v} for s, v in (("0", 0.3), ("1", 0.5))]
    rows += [{"model": "cnn", "seed": s, "status": "FINISHED", "best/val/loss": v} for s, v in (("0", 0.6), ("1", 0.7))]
    assert [c["model"] for c in aggregate(rows, ["model", "seed"], ["best/val/loss"])] == ["mlp", "cnn"]


def test_seeds_vary_only_when_jobs_differ_in_seed_and_best_config_is_shell_quoted() -> None:
    assert seeds_vary([run("0.1", "0", 0.9), run("0.1", "1", 0.8)], KEYS)
    assert not seeds_vary([run("0.1", "0", 0.9), run("0.01", "0", 0.8)], KEYS)
    hidden = {"model.hidden": "[32, 64]", "seed": "0", "status": "FINISHED", "best/val/acc": 0.9}
    keys = ["model.hidden", "seed"]
    assert shlex.split(best_config(aggregate([hidden], keys, ["best/val/acc"]), keys, "best/val/acc")) == [
        "model.hidden=[32, 64]"]


def job(number: int, lr: str, seed: int, value: float | None, test: float | None, status: str = "FINISHED"):
    return JobResult(status, [f"optimizer.lr={lr}", f"seed={seed}", "trainer.epochs=1"], "val/acc", value, test,
                     "loss became nan" if status == "FAILED" else None, number, 1.0)


def test_the_end_of_sweep_table_adds_mean_and_std_over_seeds_in_80_columns(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    results = [job(0, "0.001", 0, 0.90, 0.89), job(1, "0.01", 0, 0.95, 0.94), job(2, "0.001", 1, 0.92, 0.91),
               job(3, "0.01", 1, None, None, "FAILED")]
    print_sweep_table(results, tmp_path)
    out = capsys.readouterr().out
    seeds = out[out.index("over seeds"):]
    assert "0.9100 ± 0.0141" in seeds and "0.9000 ± 0.0141" in seeds, "lr=0.001: two seeds"
    assert "0.9500*" in seeds, "lr=0.01 is best by mean on its one finished seed"
    assert " 1       1 " in seeds, "n and failed"
    assert max(len(line) for line in out.splitlines()) <= 80


@pytest.fixture
def seed_store(tmp_path: Path) -> tuple[MlflowClient, str]:
    """A sweep over optimizer.lr x seed, minimizing val/loss, one seed failed; each child copies its seed into
    `dataset.source.seed` (as the fake data set's `${seed}` does)."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = ensure_experiment(client, "seeds")
    parent = client.create_run(experiment_id, tags={SWEPT_TAG: "optimizer.lr seed", OPTIMIZED_TAG: "val/loss"})
    for number, (lr, seed, loss, status) in enumerate([("0.1", 0, 0.5, "FINISHED"), ("0.1", 1, 0.7, "FINISHED"),
                                                       ("0.01", 0, 0.2, "FINISHED"), ("0.01", 1, 9.0, "FAILED")]):
        tags = {PARENT_TAG: parent.info.run_id, OVERRIDES_TAG: f"optimizer.lr={lr} seed={seed}",
                "sweep.job": str(number)}
        run_id = client.create_run(experiment_id, tags=tags).info.run_id
        for key, value in {"optimizer.lr": lr, "seed": seed, "dataset.source.seed": seed,
                           "paths.output_dir": f"/runs/{number}"}.items():
            client.log_param(run_id, key, value)
        client.log_metric(run_id, "best/val/loss", loss)
        client.set_terminated(run_id, status)
    return client, parent.info.run_id


def test_the_parent_run_gets_aggregate_csv_and_the_best_config(seed_store, tmp_path: Path) -> None:
    client, parent_id = seed_store
    log_sweep_summary(client, parent_id)
    assert client.get_run(parent_id).data.tags["sweep.best_config"] == "optimizer.lr=0.01", "the lower loss"
    folder = Path(client.download_artifacts(parent_id, "summary", str(tmp_path)))
    rows = list(csv.DictReader(io.StringIO((folder / "aggregate.csv").read_text())))
    assert [(r["optimizer.lr"], r["n"], r["failed"], r["best/val/loss_mean"], r["best/val/loss_std"]) for r in rows] \
        == [("0.01", "1", "1", "0.2", ""), ("0.1", "2", "0", "0.6", str(statistics.stdev([0.5, 0.7])))]
    assert (folder / "aggregate.md").read_text().startswith("| optimizer.lr | n | failed | best/val/loss_mean |")


def test_compare_groups_by_the_params_but_the_seed_and_its_copies(seed_store) -> None:
    client, parent_id = seed_store
    runs = find_runs(client, None, parent_id, "", 100)
    grouped = aggregated(runs, "seed", None)
    assert grouped.params == ["optimizer.lr"]
    assert [(r["optimizer.lr"], r["n"], r["failed"]) for r in grouped.rows] == [("0.01", 1, 1), ("0.1", 2, 0)]
    with pytest.raises(UserError, match="no run has a param 'sed'"):
        aggregated(runs, "sed", None)


@pytest.mark.slow
def test_a_sweep_over_seeds_reports_each_configuration_as_its_children_say(train_here, capsys, tmp_path: Path) -> None:
    result = train_here("-m", "seed=0,1", "optimizer.lr=1e-3,1e-2", "trainer.epochs=1", *QUICK, cwd=tmp_path,
                        env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr[-3000:]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (parent,) = [r for r in runs if PARENT_TAG not in r.data.tags]
    children = [r for r in runs if PARENT_TAG in r.data.tags]
    assert len(children) == 4

    folder = Path(client.download_artifacts(parent.info.run_id, "summary", str(tmp_path)))
    rows = list(csv.DictReader(io.StringIO((folder / "aggregate.csv").read_text())))
    assert len(rows) == 2
    cells = []
    for row in rows:
        seeds = [c for c in children if float(c.data.params["optimizer.lr"]) == float(row["optimizer.lr"])]
        assert {c.data.params["seed"] for c in seeds} == {"0", "1"} and (row["n"], row["failed"]) == ("2", "0")
        for metric in ("best/val/acc", "test/acc"):
            values = [c.data.metrics[metric] for c in seeds]
            mean, std = float(row[f"{metric}_mean"]), float(row[f"{metric}_std"])
            assert mean == pytest.approx(statistics.mean(values)) and std == pytest.approx(statistics.stdev(values))
            cells.append(f"{mean:.4f} ± {std:.4f}")
    assert parent.data.tags["sweep.best_config"] == f"optimizer.lr={rows[0]['optimizer.lr']}"
    assert float(rows[0]["best/val/acc_mean"]) >= float(rows[1]["best/val/acc_mean"])

    seed_table = result.stdout[result.stdout.index("over seeds: mean ± std"):]
    assert all(cell in seed_table for cell in cells), (cells, seed_table)
    assert sweeplab(["compare", "--uri", uri, "--sweep", "latest", "--aggregate", "seed"]) == 0
    table = capsys.readouterr().out
    assert all(cell in table for cell in cells), (cells, table)
    grouped = aggregated(find_runs(client, None, "latest", "", 100), "seed", None).rows  # what --csv/--json print
    assert [(r["n"], r["failed"], r["best/val/acc_mean"], r["test/acc_std"]) for r in grouped] == [
        (int(r["n"]), int(r["failed"]), float(r["best/val/acc_mean"]), float(r["test/acc_std"])) for r in rows]


def test_a_seed_sweeps_best_job_is_the_best_seed_of_the_best_configuration_by_mean() -> None:
    """A lucky seed does not pick the configuration: lr 0.1 has the best single job and the worse mean."""
    def job(number: int, lr: str, seed: int, value: float) -> JobResult:
        return JobResult("FINISHED", [f"optimizer.lr={lr}", f"seed={seed}"], "val/acc", value=value, job=number)

    jobs = [job(0, "0.1", 0, 0.99), job(1, "0.1", 1, 0.80), job(2, "0.01", 0, 0.95), job(3, "0.01", 1, 0.96)]
    assert best_result(jobs).job == 3
    assert best_result([job(0, "0.1", 0, 0.99), job(2, "0.01", 0, 0.95)]).job == 0  # one seed each: the best job
    losses = [JobResult("FINISHED", o, "val/loss", value=v, job=n) for n, o, v in
              [(0, ["optimizer.lr=0.1", "seed=0"], 0.1), (1, ["optimizer.lr=0.1", "seed=1"], 0.9),
               (2, ["optimizer.lr=0.01", "seed=0"], 0.3), (3, ["optimizer.lr=0.01", "seed=1"], 0.2)]]
    assert best_result(losses).job == 3  # a loss: the lowest mean
