"""The course notes' recipes through sweeplab against the notes' own scripts (and Lightning), side by side.

    python benchmarks/recipes.py [fashion] [cifar] [sweep] [cifar-options] [--pairs 3] [--data DIR]

Generates 60k/10k FashionMNIST and 50k/10k CIFAR-10 images in the real on-disk formats (IDX files,
python pickle batches; benchmarks/notes/generate_data.py), once, into --data, then alternates:

- fashion: the PyTorch quickstart's MLP (batch 64, plain SGD 1e-3, 5 epochs, the test split scored
  every epoch) through `python train.py`, with its whole record (MLflow, figures, ONNX export),
  against benchmarks/notes/fashion_mlp.py and benchmarks/notes/lightning_fashion_mlp.py;
- cifar: the notes' CIFAR-10 CNN (batch 64, plain SGD 1e-2, 2 epochs, no augmentation) through
  `python train.py` against benchmarks/notes/cifar10_cnn.py;
- sweep: an 8-job FashionMNIST sweep (4 learning rates x 2 batch sizes, 1 epoch each) against the
  notes' script training its one 5-epoch model;
- cifar-options: one epoch of the CNN recipe in sweeplab per CPU choice (NCHW, channels_last,
  bf16 autocast, both, torch.compile, one thread): what the CPU default is chosen from.

The notes score the official test split every epoch (it is their validation split), so sweeplab
runs with `dataset.val_split=test` here to do the same work. Every side prints its accuracy. Run it
on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTES = REPO / "benchmarks" / "notes"
PYTHON = sys.executable
FASHION = ["dataset=fashion_mnist", "model=mlp", "optimizer=sgd", "optimizer.lr=1e-3", "optimizer.momentum=0",
           "dataset.batch_size=64", "trainer.epochs=5"]
CIFAR = ["dataset=cifar10", "model=cnn", "optimizer=sgd", "optimizer.lr=1e-2", "optimizer.momentum=0",
         "dataset.batch_size=64", "trainer.epochs=2", "dataset.augment.random_crop_padding=0",
         "dataset.augment.hflip=false", "dataset.source.verify_checksums=false"]
SWEEP = ["-m", "dataset=fashion_mnist", "model=mlp", "optimizer=sgd", "optimizer.momentum=0",
         "optimizer.lr=1e-1,3e-2,1e-2,3e-3", "dataset.batch_size=64,128", "trainer.epochs=1"]
CIFAR_OPTIONS = {  # name: (overrides, environment)
    "fp32, NCHW (before)": (["trainer.precision=32", "trainer.channels_last=false"], {}),
    "fp32, channels_last": (["trainer.precision=32"], {}),
    "bf16 autocast, NCHW": (["trainer.precision=bf16", "trainer.channels_last=false"], {}),
    "bf16 autocast, channels_last (the default here)": ([], {}),
    "torch.compile, bf16, channels_last": (["trainer.compile=true"], {}),
    "one thread, bf16, channels_last": ([], {"OMP_NUM_THREADS": "1"}),
}


def sweeplab(data: Path, overrides: list[str]) -> list[str]:
    return [PYTHON, str(REPO / "train.py"), *overrides, f"paths.data_dir={data}", "dataset.source.download=false",
            "dataset.val_split=test", "trainer.progress=false"]


def timed(command: list[str], env: dict[str, str] | None = None) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="recipes-"))
    started = time.perf_counter()
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return {"wall": wall, "accuracy": accuracy(result.stdout), "out": result.stdout}


def accuracy(out: str) -> str:
    if match := re.search(r"RESULT accuracy=([\d.]+)", out):
        return match.group(1)
    rows = [line for line in out.splitlines() if re.match(r"\s+\d+\*?\s", line)]  # the summary table's epochs
    return rows[-1].split()[4] if rows else "?"


def alternate(sides: dict, pairs: int) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    for pair in range(pairs):
        for name in (list(sides) if pair % 2 == 0 else list(reversed(sides))):
            runs[name].append(sides[name]())
            print(f"  {name}: {runs[name][-1]['wall']:.1f} s, accuracy {runs[name][-1]['accuracy']}", file=sys.stderr,
                  flush=True)
    return runs


def report(title: str, runs: dict[str, list[dict]], ours: str) -> None:
    walls = {name: statistics.median(run["wall"] for run in results) for name, results in runs.items()}
    print(f"\n{title} (median of {len(runs[ours])}):")
    for name, wall in walls.items():
        versus = "" if name == ours else f"  -> sweeplab {wall / walls[ours]:.2f}x faster"
        print(f"  {name}: {wall:.1f} s, last accuracy {runs[name][-1]['accuracy']}{versus}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", default=["fashion", "cifar", "sweep", "cifar-options"])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "sweeplab-recipes-data")
    args = parser.parse_args()
    if not (args.data / "cifar-10-batches-py" / "test_batch").is_file():
        subprocess.run([PYTHON, str(NOTES / "generate_data.py"), str(args.data)], check=True)
    data = args.data
    if "fashion" in args.parts:
        report("FashionMNIST MLP, 5 epochs", alternate({
            "sweeplab": lambda: timed(sweeplab(data, FASHION)),
            "notes' script": lambda: timed([PYTHON, str(NOTES / "fashion_mlp.py"), "--data", str(data)]),
            "Lightning": lambda: timed([PYTHON, str(NOTES / "lightning_fashion_mlp.py"), "--data", str(data)]),
        }, args.pairs), "sweeplab")
    if "cifar" in args.parts:
        report("CIFAR-10 CNN, 2 epochs", alternate({
            "sweeplab": lambda: timed(sweeplab(data, CIFAR)),
            "notes' script": lambda: timed([PYTHON, str(NOTES / "cifar10_cnn.py"), "--data", str(data)]),
        }, args.pairs), "sweeplab")
    if "sweep" in args.parts:
        report("8-job FashionMNIST sweep (1 epoch each) vs the notes' one 5-epoch model", alternate({
            "sweeplab sweep": lambda: timed(sweeplab(data, SWEEP)),
            "notes' script": lambda: timed([PYTHON, str(NOTES / "fashion_mlp.py"), "--data", str(data)]),
        }, args.pairs), "sweeplab sweep")
    if "cifar-options" in args.parts:
        print("\nCIFAR-10 CNN, one epoch of sweeplab per CPU choice (epoch seconds, test accuracy):")
        for name, (options, env) in CIFAR_OPTIONS.items():
            run = timed(sweeplab(data, [*CIFAR, "trainer.epochs=1", "tracking.enabled=false", "export.onnx=false",
                                        *options]), {**os.environ, **env})
            epoch = [line.split() for line in run["out"].splitlines() if re.match(r"\s+1\*?\s", line)][0]
            print(f"  {name}: epoch {epoch[6]} s, wall {run['wall']:.1f} s, accuracy {epoch[4]}")


if __name__ == "__main__":
    main()
