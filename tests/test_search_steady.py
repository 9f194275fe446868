"""A search that keeps its workers busy, stops on a budget, weighs accuracy against cost, and can be planned.

Real searches of one- or few-epoch digits trials through `python train.py -m`, read back through Optuna, the run
dirs and MLflow. Timing is never asserted, only order: when trials started and ended relative to each other.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from launch import QUICK, QUIET, run_train
from sweeplab.core.errors import UserError
from sweeplab.core.pareto import pareto_set
from sweeplab.sweeps.job_pools import BASIC_LAUNCHER, JOBLIB, trials_in_flight
from test_sweeps import study, sweep_runs

LAUNCH_SECONDS = 1.5  # from a job's result.json to the next job's .hydra/, on a busy 2-core machine
SEARCH = ["hparams_search=digits_mlp", "hydra/sweeper/pruner=none", "hydra/sweeper/sampler=random"]


def lifetimes(sweep_dir: Path) -> dict[int, tuple[float, float]]:
    """Each job's start (Hydra writes its .hydra/ first) and end (its final result.json), by job number."""
    return {int(job.name): ((job / ".hydra" / "config.yaml").stat().st_mtime, (job / "result.json").stat().st_mtime)
            for job in sweep_dir.iterdir() if (job / "result.json").is_file()}


@pytest.mark.slow
def test_a_parallel_search_starts_the_next_trial_as_soon_as_one_ends(tmp_path: Path) -> None:
    """2 workers, trials of 1 or 40 epochs: when a short trial ends beside a long one, the next trial starts before
    the long one ends (a batch-by-batch search would wait for it; one that ends within a job's launch, LAUNCH_SECONDS,
    proves nothing either way); never more than 2 at once; every trial told once."""
    sweep_dir = tmp_path / "search"
    result = run_train("-m", *SEARCH, "hydra.sweeper.n_trials=8", "trainer.epochs=choice(1,40)",
                       "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *QUIET, f"hydra.sweep.dir={sweep_dir}",
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = study(tmp_path, "digits_mlp").trials
    assert len(trials) == 8 and {t.state.name for t in trials} == {"COMPLETE"}, "each trial told, once"
    spans = lifetimes(sweep_dir)
    assert sorted(spans) == list(range(8))
    for start, _ in spans.values():
        assert sum(other_start < start < other_end for other_start, other_end in spans.values()) <= 1
    long = {t.number for t in trials if t.params["trainer.epochs"] == 40}
    starts = [start for start, _ in spans.values()]
    ends = sorted((end, number) for number, (_, end) in spans.items())
    checked = 0
    for (end, number), (next_end, next_number) in zip(ends, ends[1:], strict=False):
        trials_remain = sum(start <= end for start in starts) < 8
        long_runs_on = next_number in long and next_end - end > LAUNCH_SECONDS
        if trials_remain and number not in long and long_runs_on:  # a short one ended, a long one runs on
            assert any(end < start < next_end for start in starts), (number, next_number, spans)
            checked += 1
    assert checked, (long, spans)  # the seeded sampler's draws put a short trial beside a long one


@pytest.mark.slow
def test_a_search_stops_at_its_target_and_its_timeout_and_a_re_run_goes_on(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "search"
    command = ["-m", *SEARCH, "hydra.sweeper.n_trials=3", "trainer.epochs=1", *QUICK, f"hydra.sweep.dir={sweep_dir}"]
    reached = run_train(*command, "hydra.sweeper.target=0.0", cwd=tmp_path)
    assert reached.returncode == 0, reached.stderr[-3000:]
    assert len(study(tmp_path, "digits_mlp").trials) == 1, "no trial starts once one reached the target"
    assert "Stopped early: hydra.sweeper.target=0 reached by trial 0" in reached.stdout
    assert json.loads((sweep_dir / "search.json").read_text())["stopped"].startswith("hydra.sweeper.target=0")
    _, parent, _ = sweep_runs(tmp_path)
    assert parent.data.tags["sweep.stopped"].startswith("hydra.sweeper.target=0 reached")

    went_on = run_train(*command, cwd=tmp_path)
    assert went_on.returncode == 0, went_on.stderr[-3000:]
    searched = study(tmp_path, "digits_mlp")
    assert len(searched.trials) == 3 and "Stopped early" not in went_on.stdout
    spent = searched.user_attrs["sweeplab.seconds"]
    assert spent > 0

    out_of_time = run_train(*command, "hydra.sweeper.n_trials=5", f"hydra.sweeper.timeout={spent / 2}", cwd=tmp_path)
    assert out_of_time.returncode == 0, out_of_time.stderr[-3000:]
    assert len(study(tmp_path, "digits_mlp").trials) == 3, "the seconds spent before count: no time is left"
    assert "Stopped early: hydra.sweeper.timeout=" in out_of_time.stdout


def test_a_grid_past_its_timeout_records_its_jobs_as_not_started_and_a_re_run_runs_them(train_here,
                                                                                      tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    command = ["-m", "optimizer.lr=0.1,0.01", "trainer.epochs=1", *QUIET, f"hydra.sweep.dir={sweep_dir}"]
    stopped = train_here(*command, "sweep.timeout=0", cwd=tmp_path)
    assert stopped.returncode == 1
    assert "Stopped early: sweep.timeout passed before jobs 0, 1 started" in stopped.stdout
    assert [json.loads((sweep_dir / job / "result.json").read_text())["status"] for job in "01"] == ["NOT_STARTED"] * 2
    assert not (sweep_dir / "0" / "checkpoints").exists()
    resumed = train_here(*command, "sweep.timeout=600", cwd=tmp_path)  # what it may spend is not the job's identity
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [json.loads((sweep_dir / job / "result.json").read_text())["status"] for job in "01"] == ["FINISHED"] * 2


@pytest.mark.slow
def test_an_accuracy_against_latency_search_marks_and_records_its_pareto_front(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "search"
    result = run_train("-m", "hparams_search=digits_pareto", "hydra.sweeper.n_trials=4", "trainer.epochs=1", *QUICK,
                       f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    searched = study(tmp_path, "digits_pareto")
    assert [d.name for d in searched.directions] == ["MAXIMIZE", "MINIMIZE"]
    jobs = {n: json.loads((sweep_dir / str(n) / "result.json").read_text()) for n in range(4)}
    metrics = ["val/acc", "model/latency_ms"]
    assert all(set(job["objectives"]) == set(metrics) for job in jobs.values())
    front = pareto_set([jobs[n]["objectives"] for n in range(4)], metrics)
    table = result.stdout[result.stdout.index("Pareto set"):]
    for number in range(4):
        row = next(line.split()[0] for line in table.splitlines() if line.split()[:1] and
                   line.split()[0].rstrip("*+") == str(number))
        assert row.endswith("+") == (number in front), (number, front, table)
    client, parent, children = sweep_runs(tmp_path)
    assert all(child.data.metrics["model/params"] > 0 and "model/latency_ms" in child.data.metrics
               for child in children.values())
    folder = Path(client.download_artifacts(parent.info.run_id, "search", str(tmp_path / "artifacts")))
    rows = list(csv.DictReader(io.StringIO((folder / "pareto.csv").read_text())))
    assert {int(row["trial"]) for row in rows} == front and (folder / "pareto_front.png").is_file()
    assert set(json.loads((folder / "importance.json").read_text())) == set(metrics)


def test_several_objectives_refuse_a_pruner_before_anything_runs(train_here, tmp_path: Path) -> None:
    result = train_here("-m", "hparams_search=digits_pareto", "hydra/sweeper/pruner=median", *QUIET,
                        f"hydra.sweep.dir={tmp_path / 'search'}", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: pruning needs one objective")
    assert not (tmp_path / "search").exists() and not (tmp_path / "optuna.db").exists()


def test_a_plan_prints_the_jobs_and_the_search_and_runs_nothing(train_here, tmp_path: Path) -> None:
    grid = train_here("-m", "optimizer.lr=0.1,0.01", "seed=0,1", "sweep.plan=true", f"hydra.sweep.dir={tmp_path / 's'}",
                      cwd=tmp_path)
    assert grid.returncode == 0, grid.stderr
    assert "4 jobs in" in grid.stdout and f"job 3: optimizer.lr=0.01 seed=1 -> {tmp_path / 's' / '3'} [new]" \
        in grid.stdout
    search = train_here("-m", "hparams_search=digits_mlp", "sweep.plan=true", cwd=tmp_path)
    assert search.returncode == 0, search.stderr
    assert "optimizer.lr: FloatDistribution" in search.stdout and "the study is new: 20 trials to run" in search.stdout
    assert sorted(path.name for path in tmp_path.iterdir()) == [], "no sweep dir, store or study"


def test_trials_in_flight_come_from_the_sweeper_or_the_launcher_and_must_agree() -> None:
    def config(sweeper: int | None, workers: int) -> object:
        return OmegaConf.create({"hydra": {"sweeper": {"n_jobs": sweeper}, "launcher": {"n_jobs": workers}}})

    assert trials_in_flight(JOBLIB, config(None, 3)) == 3
    assert trials_in_flight(JOBLIB, config(3, 3)) == 3
    assert trials_in_flight(BASIC_LAUNCHER, config(None, 3)) == 1
    with pytest.raises(UserError, match="hydra.sweeper.n_jobs=2 but the launcher runs 3 jobs"):
        trials_in_flight(JOBLIB, config(2, 3))
    with pytest.raises(UserError, match="needs a launcher that runs jobs side by side"):
        trials_in_flight(BASIC_LAUNCHER, config(2, 3))


def test_the_pareto_set_is_every_run_no_other_beats_on_every_objective() -> None:
    rows = [{"acc": 0.9, "model/latency_ms": 2.0}, {"acc": 0.8, "model/latency_ms": 1.0},
            {"acc": 0.8, "model/latency_ms": 3.0}, {"acc": 0.95, "model/latency_ms": 2.0}, {"acc": None}]
    assert pareto_set(rows, ["acc", "model/latency_ms"]) == {1, 3}
