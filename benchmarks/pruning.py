"""An Optuna search with its pruner against the same search without, side by side: what pruning saves.

    python benchmarks/pruning.py [--repeats 1] [--images 20000] [--brightness 6] [hydra overrides...]

Both are `python train.py -m hparams_search=digits_mlp` as a user types it (the preset's space, 20 trials of 10
epochs, TPE seeded the same, MLflow tracking, checkpoints; the median pruner is the preset's), once as it is and
once with `hydra/sweeper/pruner=none`, on a data set whose epochs are not trivial: `--images` generated
FashionMNIST images in the real IDX files (the MLP of the preset, 28x28 inputs), each class a square only
`--brightness` brighter than the noise around it, so that trials learn at different speeds (a bright square,
which every trial learns in its first epoch, leaves a pruner nothing to tell apart). They alternate, each in a fresh
directory with its own stores. From the trials' checkpoints: the epochs each trained and the seconds those epochs
took, so the wall time pruning saves is set against the epoch time it saves (the pruned-away epochs' seconds,
at the unpruned search's seconds per epoch).
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
SEARCH = ["-m", "hparams_search=digits_mlp", "dataset=fashion_mnist", "dataset.source.download=false",
          "trainer.progress=false", "export.onnx=false"]
PRUNERS = {"median pruner (the preset's)": [], "no pruner": ["hydra/sweeper/pruner=none"]}


def generated_data(images: int, brightness: int) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from data_formats import write_mnist

    folder = Path(tempfile.mkdtemp(prefix="pruning-data-"))
    write_mnist(folder, "FashionMNIST", train_size=images, test_size=images // 5, brightness=brightness)
    return folder


def timed_search(pruner: list[str], overrides: list[str]) -> tuple[float, int, float, int]:
    """(the command's wall seconds, epochs trained in all, their seconds, trials pruned)."""
    with tempfile.TemporaryDirectory() as folder:
        sweep_dir = Path(folder) / "search"
        command = [sys.executable, str(REPO / "train.py"), *SEARCH, *pruner, f"hydra.sweep.dir={sweep_dir}",
                   *overrides]
        started = time.perf_counter()
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True)
        if result.returncode:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
        wall = time.perf_counter() - started
        histories = [torch.load(path, weights_only=True)["history"] for path in sweep_dir.glob("*/checkpoints/last.pt")]
        epochs = sum(len(history) for history in histories)
        seconds = sum(epoch["seconds"] for history in histories for epoch in history)
        pruned = sum('"PRUNED"' in path.read_text() for path in sweep_dir.glob("*/result.json"))
        return wall, epochs, seconds, pruned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="runs of each, alternating")
    parser.add_argument("--images", type=int, default=20000, help="training images generated")
    parser.add_argument("--brightness", type=int, default=6, help="how much brighter each class's square is")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both, e.g. hydra.sweeper.n_trials=30")
    args = parser.parse_args()
    overrides = [f"paths.data_dir={generated_data(args.images, args.brightness)}", *args.overrides]
    runs: dict[str, list[tuple[float, int, float, int]]] = {name: [] for name in PRUNERS}
    for repeat in range(args.repeats):
        for name in PRUNERS if repeat % 2 == 0 else reversed(PRUNERS):
            runs[name].append(timed_search(PRUNERS[name], overrides))
            wall, epochs, seconds, pruned = runs[name][-1]
            print(f"{name}: {wall:.1f} s, {epochs} epochs ({seconds:.1f} s of them), {pruned} trials pruned",
                  flush=True)
    (pruned_wall, pruned_epochs, _, _), (full_wall, full_epochs, full_seconds, _) = (
        tuple(statistics.median(run[i] for run in runs[name]) for i in range(4)) for name in PRUNERS)
    saved_epoch_seconds = (full_epochs - pruned_epochs) * full_seconds / full_epochs
    saved_wall = full_wall - pruned_wall
    print(f"median of {args.repeats}: with the pruner {pruned_wall:.1f} s ({pruned_epochs:.0f} epochs), without "
          f"{full_wall:.1f} s ({full_epochs:.0f} epochs): {full_wall / pruned_wall:.2f}x faster")
    print(f"wall time saved {saved_wall:.1f} s against epoch time saved {saved_epoch_seconds:.1f} s: "
          f"{saved_wall / saved_epoch_seconds:.0%} of it")


if __name__ == "__main__":
    main()
