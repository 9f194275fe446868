"""Per-job overhead of a sequential sweep: everything a job spends besides its epochs.

    python benchmarks/sweep_overhead.py [--jobs 4] [hydra overrides...]

Runs `python train.py -m optimizer.lr=<one value per job>` (basic launcher: all jobs in one process)
and splits each job's wall time (its result.json) into the epochs (the seconds each epoch took, from
its last.pt) and the rest: building data and model, the MLflow run, figures, checkpoints, exports.
The first job also pays one-time costs (decoding the data set, first imports); the jobs after it
reuse the data set already in memory. The sweep's fixed cost (interpreter, Hydra, the config check)
is the command's wall time minus its jobs' times.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every job, e.g. dataset=cifar10")
    args = parser.parse_args()
    rates = ",".join(str(0.01 * (index + 1)) for index in range(args.jobs))
    with tempfile.TemporaryDirectory() as folder:
        sweep_dir = Path(folder) / "sweep"
        command = [sys.executable, str(REPO / "train.py"), "-m", f"optimizer.lr={rates}", "trainer.progress=false",
                   f"hydra.sweep.dir={sweep_dir}", *args.overrides]
        started = time.perf_counter()
        subprocess.run(command, cwd=folder, check=True, capture_output=True)
        wall = time.perf_counter() - started
        jobs = [job_times(sweep_dir / str(index)) for index in range(args.jobs)]
    print(f"{'job':>4} {'total s':>8} {'epochs s':>9} {'overhead s':>11}")
    for index, (total, epochs) in enumerate(jobs):
        print(f"{index:>4} {total:>8.2f} {epochs:>9.2f} {total - epochs:>11.2f}")
    later = [total - epochs for total, epochs in jobs[1:]]
    print(f"per-job overhead: first job {jobs[0][0] - jobs[0][1]:.2f} s, later jobs {sum(later) / len(later):.2f} s "
          f"on average; sweep fixed cost {wall - sum(total for total, _ in jobs):.2f} s; wall {wall:.1f} s")


def job_times(run_dir: Path) -> tuple[float, float]:
    """(job wall seconds, seconds spent in its epochs)."""
    total = json.loads((run_dir / "result.json").read_text())["seconds"]
    history = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["history"]
    return total, sum(epoch["seconds"] for epoch in history)


if __name__ == "__main__":
    main()
