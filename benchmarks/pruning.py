"""An Optuna search with its pruner against the same search without, side by side: wall time and epochs.

    python benchmarks/pruning.py [--repeats 1] [hydra overrides...]

Both are `python train.py -m hparams_search=digits_mlp` as a user types it (20 trials of 10 epochs, TPE
seeded the same, MLflow tracking, checkpoints; the median pruner is the preset's), once as it is and once
with `hydra/sweeper/pruner=none`. They alternate, each in a fresh directory with its own stores. Epochs
are counted from the trials' checkpoints, so the saving is seen to come from the epochs not trained.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SEARCH = ["-m", "hparams_search=digits_mlp", "trainer.progress=false", "export.onnx=false"]
PRUNERS = {"median pruner (the preset's)": [], "no pruner": ["hydra/sweeper/pruner=none"]}


def timed_search(pruner: list[str], overrides: list[str]) -> tuple[float, int, int]:
    """(the command's wall seconds, epochs trained in all, trials pruned)."""
    with tempfile.TemporaryDirectory() as folder:
        sweep_dir = Path(folder) / "search"
        command = [sys.executable, str(REPO / "train.py"), *SEARCH, *pruner, f"hydra.sweep.dir={sweep_dir}",
                   *overrides]
        started = time.perf_counter()
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True)
        if result.returncode:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
        wall = time.perf_counter() - started
        epochs = sum(torch.load(path, weights_only=True)["epoch"] for path in sweep_dir.glob("*/checkpoints/last.pt"))
        pruned = sum('"PRUNED"' in path.read_text() for path in sweep_dir.glob("*/result.json"))
        return wall, epochs, pruned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="runs of each, alternating")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both, e.g. hydra.sweeper.n_trials=30")
    args = parser.parse_args()
    runs: dict[str, list[tuple[float, int, int]]] = {name: [] for name in PRUNERS}
    for repeat in range(args.repeats):
        for name in PRUNERS if repeat % 2 == 0 else reversed(PRUNERS):
            runs[name].append(timed_search(PRUNERS[name], args.overrides))
            wall, epochs, pruned = runs[name][-1]
            print(f"{name}: {wall:.1f} s, {epochs} epochs, {pruned} trials pruned", flush=True)
    pruning, full = (statistics.median(wall for wall, _, _ in runs[name]) for name in PRUNERS)
    print(f"median of {args.repeats}: with the pruner {pruning:.1f} s, without {full:.1f} s: "
          f"{full / pruning:.2f}x faster")


if __name__ == "__main__":
    main()
