"""sweeplab's own Optuna sweeper on released Hydra: its samplers, its stored study's guard, pruning mid-training.

Real searches of short digits jobs through `python train.py -m`, read back through Optuna, MLflow and
the jobs' result.json; epochs are counted, never timed.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import optuna
import pytest
import torch
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from launch import rerun_printed, run_train
from sweeplab.runs.run_table import reproduce_command
from sweeplab.sweeps.optuna_search import search_space
from test_sweeps import QUICK, study, sweep_runs

pytestmark = pytest.mark.slow
UNTRACKED = ["tracking.enabled=false", "export.onnx=false", "trainer.progress=false"]
# 12 trials of 3 epochs; the median pruner starts after 3 and may stop a trial after any epoch.
SEARCH = ["hparams_search=digits_mlp", "hydra.sweeper.n_trials=12", "trainer.epochs=3",
          "optimizer.lr=tag(log,interval(1e-4,1e-1))"]
MEDIAN = ["hydra/sweeper/pruner=median", "hydra.sweeper.pruner.n_startup_trials=3"]
PARALLEL = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2"]


def epochs_trained(sweep_dir: Path) -> dict[int, int]:
    return {int(path.parents[1].name): torch.load(path, weights_only=True)["epoch"]
            for path in sweep_dir.glob("*/checkpoints/last.pt")}


def test_pruning_stops_trials_mid_training_and_trains_fewer_epochs(tmp_path: Path) -> None:
    """A 12-trial search with the median pruner: some trials PRUNED, fewer epochs in all than without it, every
    pruned trial a finished MLflow run saying when (a sequential search: its records complete later)."""
    pruned_dir = tmp_path / "pruned"
    result = run_train("-m", *SEARCH, *MEDIAN, *QUICK, f"hydra.sweep.dir={pruned_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = study(tmp_path, "digits_mlp").trials
    pruned = [t.number for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned and len(trials) == 12, [t.state for t in trials]
    assert {t.state for t in trials} <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    epochs = epochs_trained(pruned_dir)
    for trial in trials:  # every epoch reported once, and a pruned trial reported the epochs it trained
        assert sorted(trial.intermediate_values) == list(range(1, epochs[trial.number] + 1))
    _, _, children = sweep_runs(tmp_path)
    for number in pruned:
        run = children[number]
        assert run.info.status == "FINISHED" and run.data.tags["sweeplab.pruned"] == str(epochs[number])
        outcome = json.loads((pruned_dir / str(number) / "result.json").read_text())
        assert outcome["status"] == "PRUNED" and (pruned_dir / str(number) / "checkpoints" / "best.pt").is_file()
    assert "PRUNED" in result.stdout and "failed" not in result.stderr
    again = run_train("-m", *SEARCH, *MEDIAN, *QUICK, f"hydra.sweep.dir={pruned_dir}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [t.state for t in study(tmp_path, "digits_mlp").trials] == [t.state for t in trials], "pruned stay pruned"
    assert sum(epochs.values()) < 12 * 3, "fewer epochs than the unpruned search trains (every trial all 3)"

    client, parent, _ = sweep_runs(tmp_path)
    command = reproduce_command(client, parent.info.run_id)
    typed = command.splitlines()[-1]
    assert typed.startswith("python train.py -m ") and all(o in shlex.split(typed) for o in [*SEARCH, *MEDIAN]), typed
    plans = [[line for line in rerun_printed(line, "sweep.plan=true", f"hydra.sweep.dir={pruned_dir}",
                                             cwd=tmp_path).stdout.splitlines() if not line.startswith("  every trial")]
             for line in (typed, shlex.join(["python", "train.py", "-m", *SEARCH, *MEDIAN, *QUICK]))]
    assert plans[0] == plans[1] and "n_trials=12" in plans[0][0], "the printed command plans the search that ran"


def test_a_parallel_search_prunes_through_one_sqlite_study(tmp_path: Path) -> None:
    """2 joblib workers reporting their epochs to one sqlite study and asking its pruner, side by side."""
    sweep_dir = tmp_path / "search"
    result = run_train("-m", *SEARCH[:1], "hydra.sweeper.n_trials=6", *SEARCH[2:], *MEDIAN[:1],
                       "hydra.sweeper.pruner.n_startup_trials=2", *PARALLEL, *UNTRACKED, f"hydra.sweep.dir={sweep_dir}",
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    trials, epochs = study(tmp_path, "digits_mlp").trials, epochs_trained(sweep_dir)
    assert len(trials) == 6 and {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    for trial in trials:
        assert sorted(trial.intermediate_values) == list(range(1, epochs[trial.number] + 1))
        assert (trial.state.name == "PRUNED") == (epochs[trial.number] < 3)


@pytest.mark.parametrize(("sampler", "target"), [("tpe", "optuna.samplers.TPESampler"),
                                                 ("random", "optuna.samplers.RandomSampler"),
                                                 ("cmaes", "optuna.samplers.CmaEsSampler")])
def test_every_sampler_runs_a_search(tmp_path: Path, sampler: str, target: str) -> None:
    """The search ran with the sampler asked for (a study loaded back gets Optuna's default, TPE, whatever ran it:
    the Hydra config each trial recorded says which)."""
    result = run_train("-m", "hparams_search=digits_mlp", f"hydra/sweeper/sampler={sampler}",
                       "hydra.sweeper.n_trials=2", "trainer.epochs=1", f"hydra.sweep.dir={tmp_path / 'search'}",
                       *UNTRACKED, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    searched = study(tmp_path, "digits_mlp")
    assert [t.state.name for t in searched.trials] == ["COMPLETE", "COMPLETE"]
    for trial in ("0", "1"):
        assert OmegaConf.load(tmp_path / "search" / trial / ".hydra" / "hydra.yaml").hydra.sweeper.sampler._target_ \
            == target


def test_a_changed_search_space_is_refused_and_a_foreign_target_too(tmp_path: Path) -> None:
    first = run_train("-m", "hparams_search=digits_mlp", "hydra.sweeper.n_trials=1", "trainer.epochs=1", *UNTRACKED,
                      cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    changed = run_train("-m", "hparams_search=digits_mlp", "hydra.sweeper.n_trials=2", "trainer.epochs=1",
                        "optimizer.lr=tag(log,interval(1e-2,1e-1))", *UNTRACKED, cwd=tmp_path)
    assert changed.returncode != 0 and "Traceback" not in changed.stderr
    assert "study 'digits_mlp'" in changed.stderr and "optimizer.lr differ" in changed.stderr
    assert len(study(tmp_path, "digits_mlp").trials) == 1, "nothing ran"
    foreign = run_train("-m", "hparams_search=digits_mlp", "hydra.sweeper.study_name=other",
                        "hydra.sweeper.sampler._target_=os.system", *UNTRACKED, cwd=tmp_path)
    assert foreign.returncode != 0 and "Traceback" not in foreign.stderr
    assert "_target_=os.system is not allowed" in foreign.stderr


def test_the_search_space_reads_hydra_s_grammar() -> None:
    space, fixed = search_space(["a=choice(x,y)", "b=tag(log,interval(1e-4,1e-1))", "c=interval(0,4)",
                                 "d=range(1,9,2)", "e=interval(0.0,0.5)", "f=3", "e=0.1"])
    assert space == {"a": CategoricalDistribution(["x", "y"]), "b": FloatDistribution(1e-4, 1e-1, log=True),
                     "c": FloatDistribution(0, 4), "d": IntDistribution(1, 7, step=2)}  # Hydra: intervals are floats
    assert fixed == ["f=3", "e=0.1"], "a plain value on the command line wins over a declared dimension"
