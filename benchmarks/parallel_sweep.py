"""A 4-job grid with 2 joblib workers against the same grid run sequentially, side by side.

    python benchmarks/parallel_sweep.py [--grid digits|cnn] [--repeats 2] [hydra overrides...]

Both are the command a user types, `python train.py -m optimizer.lr=1e-2,1e-3 seed=0,1` with everything a run
does (MLflow tracking, figures, checkpoints, the best job's ONNX export): on the embedded digits data (10 epochs
of the MLP), or `--grid cnn`, the classic CNN for 3 epochs on a generated CIFAR-10 (5,000 images in the real
pickled batches). Once with Hydra's basic launcher (one process, jobs one after another) and once with
`hydra/launcher=joblib hydra.launcher.n_jobs=2` (two worker processes, each given half the cores). They
alternate, each in a fresh directory with its own sqlite store, so machine noise hits both.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from floor import epoch_seconds  # beside this script

REPO = Path(__file__).resolve().parents[1]
GRID = ["optimizer.lr=1e-2,1e-3", "seed=0,1"]
CNN = ["model=cnn", "dataset=cifar10", "dataset.source.verify_checksums=false", "trainer.epochs=3"]
LAUNCHERS = {"sequential": [], "joblib, 2 workers": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]}


def timed_sweep(launcher: list[str], overrides: list[str]) -> tuple[float, float]:
    """(the command's wall seconds, the mean seconds a job spent in its epochs)."""
    with tempfile.TemporaryDirectory() as folder:
        sweep_dir = Path(folder) / "sweep"
        command = [sys.executable, str(REPO / "train.py"), "-m", *GRID, *launcher, "trainer.progress=false",
                   f"hydra.sweep.dir={sweep_dir}", *overrides]
        started = time.perf_counter()
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True)
        if result.returncode:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
        wall = time.perf_counter() - started
        jobs = [path for path in sweep_dir.iterdir() if path.name.isdigit()]
        return wall, epoch_seconds(sweep_dir) / len(jobs)


def generated_cifar10() -> list[str]:
    """The CNN grid's data: 5,000 training and 1,000 test images of CIFAR-10's files, generated as the tests do."""
    sys.path.insert(0, str(REPO / "tests"))
    from data_formats import write_cifar10

    folder = Path(tempfile.mkdtemp(prefix="parallel-sweep-data-"))
    write_cifar10(folder, per_batch=1000, test_size=1000)
    return [*CNN, f"paths.data_dir={folder}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=("digits", "cnn"), default="digits")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each launcher, alternating")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every job, e.g. trainer.epochs=5")
    args = parser.parse_args()
    if args.grid == "cnn":
        args.overrides = [*generated_cifar10(), *args.overrides]
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in LAUNCHERS}
    for repeat in range(args.repeats):
        order = list(LAUNCHERS) if repeat % 2 == 0 else list(reversed(LAUNCHERS))
        for name in order:
            runs[name].append(timed_sweep(LAUNCHERS[name], args.overrides))
            print(f"{name}: {runs[name][-1][0]:.1f} s", flush=True)
    (sequential, epochs_alone), (parallel, epochs_side_by_side) = (
        (statistics.median(wall for wall, _ in runs[name]), statistics.median(e for _, e in runs[name]))
        for name in LAUNCHERS
    )
    print(f"4-job grid, median of {args.repeats}: sequential {sequential:.1f} s, joblib 2 workers {parallel:.1f} s, "
          f"speed-up {sequential / parallel:.2f}x")
    print(f"a job's epochs: {epochs_alone:.1f} s alone on all cores, {epochs_side_by_side:.1f} s on its share "
          f"beside another job ({epochs_side_by_side / epochs_alone:.2f}x slower)")


if __name__ == "__main__":
    main()
