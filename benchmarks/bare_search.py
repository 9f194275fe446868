"""The floor of `python train.py -m hparams_search=digits_mlp`: the same search as an Optuna user writes it.

    python benchmarks/bare_search.py --storage sqlite:///optuna.db [--trials 20] [--epochs 10]

One script, one process: the preset's space (optimizer adam or sgd, lr log 1e-4..3e-1, weight decay log
1e-6..1e-2, batch size 32, 64 or 128), TPE seeded 0 as the preset seeds it, the median pruner with 5 startup
trials, the study in sqlite, validation accuracy reported after every epoch, each trial trained as
benchmarks/bare_digits.py trains (sweeplab's splits and MLP). No tracking, checkpoints or export.
"""

from __future__ import annotations

import argparse
import time

import optuna
from bare_digits import splits, train


def objective(data, epochs: int):
    def run(trial: optuna.Trial) -> float:
        pruned = []

        def report(epoch: int, accuracy: float) -> bool:
            trial.report(accuracy, epoch)
            if epoch < epochs and trial.should_prune():
                pruned.append(epoch)
            return bool(pruned)

        best, _ = train(*data, lr=trial.suggest_float("optimizer.lr", 1e-4, 3e-1, log=True), seed=0, epochs=epochs,
                        batch_size=trial.suggest_categorical("dataset.batch_size", [32, 64, 128]),
                        optimizer=trial.suggest_categorical("optimizer", ["adam", "sgd"]),
                        weight_decay=trial.suggest_float("optimizer.weight_decay", 1e-6, 1e-2, log=True),
                        stop_after=report)
        if pruned:
            raise optuna.TrialPruned()
        return best

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    study = optuna.create_study(study_name="digits_mlp", storage=args.storage, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=0),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=5))
    study.optimize(objective(splits(), args.epochs), n_trials=args.trials)
    pruned = len(study.get_trials(states=(optuna.trial.TrialState.PRUNED,)))
    print(f"best val acc {study.best_value:.4f} ({args.trials} trials, {pruned} pruned, "
          f"{time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
