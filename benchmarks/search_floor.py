"""sweeplab's Optuna search against the same search written by hand with Optuna, side by side.

    python benchmarks/search_floor.py [--pairs 3] [--trials 20] [--small 4] [hydra overrides...]

- sweeplab: `python train.py -m hparams_search=digits_mlp` as a user types it (MLflow tracking, checkpoints,
  figures, the summary; no ONNX export: a search exports its best trial once, at its end), its study in a fresh
  sqlite file each time, beside an mlflow.db that exists already.
- by hand: benchmarks/bare_search.py, the same space, TPE seed, median pruner and sqlite storage in one script.

They alternate, `--pairs` times each; the ratio is of the medians. sweeplab's wall is then split as
fixed + trials x (epochs + per-trial cost), solved from a second search of `--small` trials, the epochs'
seconds read from the trials' checkpoints. Run it on a quiet machine, with nothing else heavy meanwhile.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from floor import REPO, TRAIN, alternate, epoch_seconds, median, timed

BARE = [sys.executable, str(REPO / "benchmarks" / "bare_search.py")]


def search(trials: int, store: Path, overrides: list[str]) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="search-floor-"))
    command = [*TRAIN[:2], "-m", *TRAIN[2:], "hparams_search=digits_mlp", "export.onnx=false",
               f"hydra.sweeper.n_trials={trials}", f"hydra.sweeper.storage=sqlite:///{folder / 'optuna.db'}", f"tracking.uri=sqlite:///{store}",
               f"hydra.sweep.dir={folder / 'search'}", *overrides]
    result = timed(command, folder)
    result["epochs"] = epoch_seconds(folder / "search")
    return result


def by_hand(trials: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="search-floor-bare-"))
    return timed([*BARE, "--storage", f"sqlite:///{folder / 'optuna.db'}", "--trials", str(trials)], folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--small", type=int, default=4, help="trials of the second search, for the split")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for sweeplab's side")
    args = parser.parse_args()
    store = Path(tempfile.mkdtemp(prefix="search-floor-store-")) / "mlflow.db"
    timed([*TRAIN, "trainer.epochs=1", "export.onnx=false", f"tracking.uri=sqlite:///{store}"], store.parent)
    runs = alternate({
        f"sweeplab, {args.trials} trials": lambda: search(args.trials, store, args.overrides),
        f"by hand, {args.trials} trials": lambda: by_hand(args.trials),
        f"sweeplab, {args.small} trials": lambda: search(args.small, store, args.overrides),
    }, args.pairs)
    ours, bare = median(runs[f"sweeplab, {args.trials} trials"]), median(runs[f"by hand, {args.trials} trials"])
    small = median(runs[f"sweeplab, {args.small} trials"])
    epochs, small_epochs = (median(runs[f"sweeplab, {n} trials"], "epochs") for n in (args.trials, args.small))
    per_trial = ((ours - small) - (epochs - small_epochs)) / (args.trials - args.small)
    fixed = ours - epochs - args.trials * per_trial
    print(f"\nsearch of {args.trials} trials (median of {args.pairs}): sweeplab {ours:.2f} s, by hand {bare:.2f} s "
          f"= {ours / bare:.2f}x")
    print(f"  sweeplab = fixed {fixed:.2f} s + epochs {epochs:.2f} s + {args.trials} trials x {per_trial:.2f} s")
    print(f"  by hand: {runs[f'by hand, {args.trials} trials'][-1]['out'].strip().splitlines()[-1]}")


if __name__ == "__main__":
    main()
