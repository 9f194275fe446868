"""`sweeplab confirm`: the best configurations of a finished grid and of a finished Optuna search get more seeds in
the same sweep dir and MLflow parent run; the sweep's best is then chosen by mean, its numbers never collide with
what the sweep runs later, and a second confirm has nothing to run. The choice of jobs is tested as pure functions."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from launch import QUICK, run_train
from sweeplab.cli.main import main as sweeplab
from sweeplab.core.vocabulary import (
    BEST_CHILD_TAG,
    CONFIRM_SEED,
    EXPORTED_JOB_TAG,
    FINISHED,
    SWEEP_BEST_CONFIG_TAG,
)
from sweeplab.runs.results import JobResult, best_result, configuration_of, sweep_results
from sweeplab.sweeps.confirm import confirm_jobs, confirmations, with_seed
from test_sweeps import study, sweep_runs


def job(number: int, value: float | None, *overrides: str, status: str = FINISHED) -> JobResult:
    return JobResult(status, list(overrides), "val/acc", value, job=number)


def confirming(top: int, seeds: int) -> OmegaConf:
    return OmegaConf.create({"optimized_metric": "val/acc", "seed": 0, "hydra": {"sweep": {"dir": "s"}},
                             "sweep": {"confirm": {"top": top, "seeds": seeds}}})


def test_the_best_configurations_by_mean_get_the_seeds_they_lack_in_place_of_their_own() -> None:
    results = [job(0, 0.90, "lr=1", "seed=0"), job(1, 0.70, "lr=1", "seed=1"),  # lr=1: mean 0.80, a lucky best job
               job(2, 0.85, "lr=2", "seed=0"), job(3, 0.84, "lr=2", "seed=1"),  # lr=2: mean 0.845
               job(4, None, "lr=2", "seed=2", status="KILLED"), job(5, 0.10, "lr=3", "seed=0")]
    assert [c.example.job for c in confirmations(results, 2)] == [2, 0]
    assert best_result(results).job == 2, "the best seed of the best configuration by mean, not job 0"
    jobs = confirm_jobs(confirming(2, 4), results, runs_again=lambda result: True)
    assert [(j.number, j.seed, j.overrides) for j in jobs] == [
        (4, 2, ["lr=2", "seed=2"]),  # its unfinished job, again in its own run dir
        (None, 3, ["lr=2", "seed=3"]),
        (None, 2, ["lr=1", "seed=2"]), (None, 3, ["lr=1", "seed=3"])]
    unfinished_elsewhere = confirm_jobs(confirming(1, 3), results, runs_again=lambda result: False)
    assert [(j.number, j.seed) for j in unfinished_elsewhere] == [(None, 3)], "seed 2 is used: the next one"
    assert with_seed(["a=1", "seed=7", "b=2"], 3) == ["a=1", "seed=3", "b=2"]
    assert with_seed(["a=1"], 3) == ["a=1", "seed=3"]
    assert configuration_of(["lr=1", "seed=3", "sweep.confirm.top=2"]) == configuration_of(["lr=1"])


def test_confirm_a_grid_into_its_sweep_dir_and_parent_run(tmp_path: Path, capfd) -> None:
    sweep = run_train("-m", "optimizer.lr=1e-2,1e-4", "trainer.epochs=1", "hydra.sweep.dir=grid",
                      "tracking.log_model=false", "tracking.flush_seconds=0", cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    _, parent, _ = sweep_runs(tmp_path)
    confirm = ["confirm", "--sweep", str(tmp_path / "grid"), "--top", "1", "--seeds", "3"]
    capfd.readouterr()
    assert sweeplab([*confirm, "--plan"]) == 0
    planned = capfd.readouterr().out
    assert "optimizer.lr=0.01 trainer.epochs=1 seed=1 -> job 2\n" in planned and "seed=2 -> job 3\n" in planned
    assert not (tmp_path / "grid" / "2").exists(), "a plan runs nothing"

    assert sweeplab(confirm) == 0
    results = sweep_results(tmp_path / "grid")
    assert [(r.job, r.overrides[-1]) for r in results[2:]] == [(2, "seed=1"), (3, "seed=2")]
    assert {configuration_of(r.overrides) for r in results[2:]} == {configuration_of(results[0].overrides)}
    client, confirmed, children = sweep_runs(tmp_path)
    assert confirmed.info.run_id == parent.info.run_id and sorted(children) == [0, 1, 2, 3]
    assert confirmed.data.tags[SWEEP_BEST_CONFIG_TAG] == "optimizer.lr=0.01"
    assert confirmed.data.tags[EXPORTED_JOB_TAG] == str(best_result(results).job), "the best by mean, exported"
    assert confirmed.data.tags[BEST_CHILD_TAG] == children[best_result(results).job].info.run_id
    assert "over seeds: mean ± std" in capfd.readouterr().out, "the aggregate, printed again"

    assert sweeplab(confirm) == 0
    assert len(sweep_results(tmp_path / "grid")) == 4, "a second confirm has nothing to run"


def test_confirm_a_search_with_trials_of_its_study_that_n_trials_does_not_count(tmp_path: Path) -> None:
    search = ["-m", "hparams_search=digits_mlp", "trainer.epochs=1", "hydra.sweep.dir=search", *QUICK]
    ran = run_train(*search, "hydra.sweeper.n_trials=2", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert sweeplab(["confirm", "--sweep", str(tmp_path / "search"), "--top", "1", "--seeds", "2"]) == 0
    trials = study(tmp_path, "digits_mlp").trials
    assert [t.user_attrs.get(CONFIRM_SEED) for t in trials] == [None, None, 1]
    best = max(trials[:2], key=lambda t: t.value)
    assert trials[2].params == best.params and trials[2].state.name == "COMPLETE"

    assert [r.job for r in sweep_results(tmp_path / "search")] == [0, 1, 2]
    plan = run_train(*search, "hydra.sweeper.n_trials=3", "sweep.plan=true", cwd=tmp_path)
    assert "3 trials (3 complete); 1 to go" in plan.stdout, "the confirming trial does not count towards n_trials"
