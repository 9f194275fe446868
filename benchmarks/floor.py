"""sweeplab against its floor, side by side: the default run, a sweep, their memory, the instant commands.

    python benchmarks/floor.py [run] [sweep] [memory] [help] [--pairs 3]

Every figure is a ratio (or a difference) of two commands run alternately in this one command, the
median of `--pairs` pairs, so machine noise hits both sides alike:

- run: `python train.py` with its defaults (MLflow record, figures, checkpoints, logged model, ONNX
  export with parity) against benchmarks/bare_digits.py (the same training in plain torch), with
  mlflow.db already there, and on the first run that creates it.
- sweep: an 8-job sequential sweep of the default run (`optimizer.lr=<4 values> seed=0,1`) against
  the bare script training the same 8 configs in one process; and, from a 2-job and an 8-job sweep,
  what each job costs beyond its epochs and what the sweep costs once (wall = fixed + jobs x (epochs +
  per job), solved from the two sizes; the epochs' seconds are read from the jobs' checkpoints).
- memory: peak memory of the default run (its processes together: the training process and the
  recorder) against the bare script's; and a 16-job sweep's against a 2-job sweep's.
- help: `python train.py --help`, `--cfg job` and a config error, each on its own (no ratio: < 1 s).

Each side prints its final accuracy (and data sizes), so a faster side is seen to do the same work.
Run it on a quiet machine, and nothing else heavy meanwhile.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAIN = [sys.executable, str(REPO / "train.py"), "trainer.progress=false"]
BARE = [sys.executable, str(REPO / "benchmarks" / "bare_digits.py")]
GRID = ["optimizer.lr=1e-2,3e-3,1e-3,3e-4", "seed=0,1"]
BARE_GRID = ["--configs", ",".join(f"{lr}:{seed}" for lr in ("1e-2", "3e-3", "1e-3", "3e-4") for seed in (0, 1))]


class PeakMemory(threading.Thread):
    """Samples a process tree every 20 ms: the peak of its summed RSS and of its summed PSS (shared pages split)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.rss, self.pss, self.running = pid, 0, 0, True

    def run(self) -> None:
        while self.running:
            rss = pss = 0
            for pid in tree(self.pid):
                fields = rollup(pid)
                rss, pss = rss + fields.get("Rss", 0), pss + fields.get("Pss", 0)
            self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)
            time.sleep(0.02)


def tree(pid: int) -> list[int]:
    pids, index = [pid], 0
    while index < len(pids):
        try:
            for task in Path(f"/proc/{pids[index]}/task").iterdir():
                pids += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
        index += 1
    return pids


def rollup(pid: int) -> dict[str, int]:
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    except OSError:
        return {}
    return {line.split(":")[0]: int(line.split()[1]) * 1024 for line in lines}


def timed(command: list[str], cwd: Path, memory: bool = False) -> dict:
    """Wall seconds (and peak memory) of one command; its output's last lines, which name its accuracy."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = PeakMemory(process.pid) if memory else None
    if sampler:
        sampler.start()
    out, err = process.communicate()
    wall = time.perf_counter() - started
    if sampler:
        sampler.running = False
        sampler.join()
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{err[-3000:]}")
    result = {"wall": wall, "out": out}
    if sampler:
        result |= {"rss": sampler.rss / 2**30, "pss": sampler.pss / 2**30}
    return result


def alternate(sides: dict[str, callable], pairs: int) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    for pair in range(pairs):
        for name in (list(sides) if pair % 2 == 0 else list(reversed(sides))):
            runs[name].append(sides[name]())
            print(f"  {name}: {runs[name][-1]['wall']:.2f} s", file=sys.stderr, flush=True)
    return runs


def median(runs: list[dict], key: str = "wall") -> float:
    return statistics.median(run[key] for run in runs)


def accuracy_lines(out: str) -> str:
    wanted = ("best val acc", "sizes", "images:")
    lines = [line.strip() for line in out.splitlines() if any(word in line for word in wanted)]
    return " | ".join(lines[-3:])


def bench_run(pairs: int) -> None:
    warm = Path(tempfile.mkdtemp(prefix="floor-"))
    timed(TRAIN, warm)  # creates mlflow.db: the "exists" side runs beside it from now on
    runs = alternate({
        "sweeplab, mlflow.db there": lambda: timed(TRAIN, warm),
        "sweeplab, first run": lambda: timed(TRAIN, Path(tempfile.mkdtemp(prefix="floor-"))),
        "bare script": lambda: timed(BARE, warm),
    }, pairs)
    bare = median(runs["bare script"])
    print(f"\nrun (median of {pairs}): bare {bare:.2f} s")
    for name in ("sweeplab, mlflow.db there", "sweeplab, first run"):
        print(f"  {name}: {median(runs[name]):.2f} s = {median(runs[name]) / bare:.2f}x the bare script")
    print(f"  sweeplab: {best_accuracy(warm)}, {accuracy_lines(runs['sweeplab, mlflow.db there'][-1]['out'])}")
    print(f"  bare: {accuracy_lines(runs['bare script'][-1]['out'])}")


def best_accuracy(folder: Path) -> str:
    import torch

    best = sorted(folder.glob("outputs/*/*/checkpoints/best.pt"))[-1]
    return f"best val acc {torch.load(best, weights_only=True)['metrics']['val/acc']:.4f}"


def sweep(jobs: int, cwd: Path, memory: bool = False) -> dict:
    grid = GRID if jobs == 8 else [f"optimizer.lr={','.join(str(0.001 * (i + 1)) for i in range(jobs))}"]
    sweep_dir = cwd / f"sweep-{time.time_ns()}"
    result = timed([*TRAIN[:2], "-m", *TRAIN[2:], *grid, f"hydra.sweep.dir={sweep_dir}"], cwd, memory)
    result["epochs"] = epoch_seconds(sweep_dir)
    return result


def epoch_seconds(sweep_dir: Path) -> float:
    """The seconds a sweep's jobs spent in their epochs, from their checkpoints' histories."""
    import torch

    total = 0.0
    for last in sweep_dir.glob("*/checkpoints/last.pt"):
        total += sum(epoch["seconds"] for epoch in torch.load(last, weights_only=True)["history"])
    return total


def bench_sweep(pairs: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="floor-sweep-"))
    timed(TRAIN, folder)  # the store exists, as for anyone who trained before
    runs = alternate({
        "8-job sweep": lambda: sweep(8, folder),
        "2-job sweep": lambda: sweep(2, folder),
        "bare, 8 configs": lambda: timed([*BARE, *BARE_GRID], folder),
    }, pairs)
    eight, two, bare = median(runs["8-job sweep"]), median(runs["2-job sweep"]), median(runs["bare, 8 configs"])
    epochs8, epochs2 = median(runs["8-job sweep"], "epochs") / 8, median(runs["2-job sweep"], "epochs") / 2
    per_job = (eight - two) / 6 - (epochs8 * 8 - epochs2 * 2) / 6
    fixed = two - 2 * (epochs2 + per_job)
    print(f"\nsweep (median of {pairs}): 8 jobs {eight:.2f} s, bare 8 configs {bare:.2f} s = {eight / bare:.2f}x")
    print(f"  a job's epochs {epochs8:.2f} s; beyond them {per_job:.2f} s a job; the sweep's fixed cost {fixed:.2f} s "
          f"(2 jobs: {two:.2f} s)")
    print(f"  bare: {accuracy_lines(runs['bare, 8 configs'][-1]['out'])}")


def bench_memory(pairs: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="floor-memory-"))
    timed(TRAIN, folder)
    runs = alternate({
        "sweeplab": lambda: timed(TRAIN, folder, memory=True),
        "bare script": lambda: timed(BARE, folder, memory=True),
        "16-job sweep": lambda: sweep(16, folder, memory=True),
        "2-job sweep": lambda: sweep(2, folder, memory=True),
    }, pairs)
    for key, what in (("pss", "PSS (shared pages split between processes)"), ("rss", "RSS summed over processes")):
        ours, bare = median(runs["sweeplab"], key), median(runs["bare script"], key)
        many, few = median(runs["16-job sweep"], key), median(runs["2-job sweep"], key)
        print(f"\nmemory, peak {what} (median of {pairs}): sweeplab {ours:.2f} GiB, bare {bare:.2f} GiB = "
              f"{ours / bare:.2f}x; 16-job sweep {many:.2f} GiB vs 2-job {few:.2f} GiB = {many / few:.2f}x")


def bench_help(pairs: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="floor-help-"))
    commands = {
        "--help": [*TRAIN, "--help"],
        "--cfg job": [*TRAIN, "--cfg", "job"],
        "a config error": [*TRAIN, "optimizer.lr=abc"],
    }
    print(f"\ninstant commands (median of {pairs}):")
    for name, command in commands.items():
        walls = []
        for _ in range(pairs):
            started = time.perf_counter()
            subprocess.run(command, cwd=folder, capture_output=True)
            walls.append(time.perf_counter() - started)
        print(f"  {name}: {statistics.median(walls):.2f} s")


PARTS = {"run": bench_run, "sweep": bench_sweep, "memory": bench_memory, "help": bench_help}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", metavar="PART", help=f"{', '.join(PARTS)} (default: all)")
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    if unknown := set(args.parts) - set(PARTS):
        parser.error(f"unknown parts {sorted(unknown)}: choose from {', '.join(PARTS)}")
    for part in args.parts or PARTS:
        print(f"== {part}", file=sys.stderr, flush=True)
        PARTS[part](args.pairs)


if __name__ == "__main__":
    main()
