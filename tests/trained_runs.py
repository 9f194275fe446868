"""Runs trained once per test session for the export and predict tests (see conftest's `trained_run` fixture)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from launch import QUIET

# model -> the data it trains on: one channel in memory, RGB in memory (CIFAR-10 files), 32x32 fake, image folder.
RUNS = {
    "mlp": ["model=mlp", "dataset=digits", "model.hidden=[32]"],
    "cnn": ["model=cnn", "dataset=cifar10", "dataset.source.download=false", "dataset.source.verify_checksums=false"],
    "resnet18": ["model=resnet18", "dataset=hymenoptera", "dataset.image_size=40", "dataset.crop_size=32",
                 "dataset.num_workers=0", "dataset.batch_size=8"],
}


def train_run(train_here: Callable, root: Path, data_dir: Path, name: str) -> Path:
    """Train run `name` of RUNS into root/name once (the folder is the cache), in this process."""
    run_dir = root / name
    if not (run_dir / "checkpoints" / "best.pt").is_file():
        result = train_here(*RUNS[name], "trainer.epochs=1", *QUIET, f"paths.data_dir={data_dir}",
                            f"hydra.run.dir={run_dir}", cwd=root)
        assert result.returncode == 0, result.stderr[-3000:]
    return run_dir
