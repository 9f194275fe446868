"""Runs trained once per test session for the export and predict tests (see the `trained_run` fixture)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAST = ["trainer.epochs=1", "trainer.progress=false", "tracking.enabled=false", "export.onnx=false"]
# model -> the data it trains on: one channel in memory, RGB in memory (CIFAR-10 files), 32x32 fake, image folder.
RUNS = {
    "mlp": ["model=mlp", "dataset=digits", "model.hidden=[32]"],
    "cnn": ["model=cnn", "dataset=cifar10", "dataset.source.download=false", "dataset.source.verify_checksums=false"],
    "resnet18": ["model=resnet18", "dataset=hymenoptera", "dataset.image_size=40", "dataset.crop_size=32",
                 "dataset.num_workers=0", "dataset.batch_size=8"],
}


def train_run(root: Path, data_dir: Path, name: str, *extra: str) -> Path:
    """Train run `name` of RUNS into root/name once (the folder is the cache), as a user would."""
    run_dir = root / name
    if not (run_dir / "checkpoints" / "best.pt").is_file():
        overrides = [*RUNS[name], *FAST, f"paths.data_dir={data_dir}", f"hydra.run.dir={run_dir}", *extra]
        result = subprocess.run([sys.executable, str(REPO / "train.py"), *overrides], cwd=root, capture_output=True,
                                text=True)
        assert result.returncode == 0, result.stderr[-3000:]
    return run_dir
