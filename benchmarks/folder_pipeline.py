"""Image folders decoded once (dataset.cache) against decoding every epoch, and against the course notes' way.

    python benchmarks/folder_pipeline.py [--images 5000] [--repeats 2] [--skip-sweep]

Generates a folder of full-size JPEGs (500x375, 10 classes, as a photo folder holds them) once, under the system
temp dir. Then, side by side, alternating:
- the loader alone (no model), images at size 64, 2 DataLoader workers, batch 64, images/s of epoch 1 and epoch 2:
  sweeplab's folder data with the cache (a fresh cache dir each time: epoch 1 fills it), without it, and the course
  notes' way (torchvision ImageFolder + Resize/CenterCrop/ToTensor transforms + a DataLoader, the same workers);
- end to end, the same 4-job sweep (`model=cnn dataset=imagefolder dataset.image_size=64 trainer.epochs=3
  optimizer.lr=1e-2,1e-3 seed=0,1`, tracking off) with the cache (filled by the first job) and without.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from floor import timed  # beside this script
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SIZE, WORKERS, BATCH = 64, 2, 64
SWEEP = ["model=cnn", "dataset=imagefolder", f"dataset.image_size={SIZE}", "trainer.epochs=3",
         "optimizer.lr=1e-2,1e-3", "seed=0,1", "tracking.enabled=false", "export.onnx=false", "trainer.progress=false"]


def photo_folder(count: int) -> Path:
    """`count` 500x375 JPEGs in train/<class>/ and 10% as many in val/, 10 classes; made once and kept."""
    root = Path(tempfile.gettempdir()) / f"sweeplab-folder-pipeline-{count}"
    if (root / "done").is_file():
        return root
    rng = np.random.default_rng(0)
    for split, total in (("train", count), ("val", count // 10)):
        for i in range(total):
            label = i % 10
            folder = root / split / f"class_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 60, (375, 500, 3), dtype=np.uint8)
            pixels[:, 50 * label: 50 * label + 50] += 150  # a class signal a CNN can learn
            Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=90)
    (root / "done").write_text("")
    return root


def sweeplab_epochs(root: Path, cache: bool, cache_dir: Path) -> list[float]:
    """Images/s of two epochs of sweeplab's training batches (a DataLoader over its folder data set)."""
    from sweeplab.data import folder_cache
    from sweeplab.data.batches import make_batches
    from sweeplab.data.sources import load_image_folder

    folder_cache.cache_folder.cache_clear()
    splits = load_image_folder(str(root), 0, 0.1, SIZE, None, cache=cache, cache_dir=str(cache_dir))
    return timed_epochs(make_batches(splits.train, BATCH, True, torch.device("cpu"), 0, WORKERS))


def notes_epochs(root: Path) -> list[float]:
    """The course notes' way: ImageFolder, transforms, a DataLoader with the same workers."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.Resize(SIZE), transforms.CenterCrop(SIZE), transforms.ToTensor()])
    data = datasets.ImageFolder(str(root / "train"), transform=transform)
    return timed_epochs(DataLoader(data, batch_size=BATCH, shuffle=True, num_workers=WORKERS, persistent_workers=True))


def timed_epochs(batches, epochs: int = 2) -> list[float]:
    rates = []
    for _ in range(epochs):
        started, seen = time.perf_counter(), 0
        for images, _ in batches:
            seen += len(images)
        rates.append(seen / (time.perf_counter() - started))
    return rates


def timed_sweep(root: Path, cache: bool) -> float:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, str(REPO / "train.py"), "-m", *SWEEP, f"dataset.path={root}",
                   f"dataset.cache={str(cache).lower()}", f"paths.cache_dir={folder}/cache",
                   f"hydra.sweep.dir={folder}/sweep"]
        return timed(command, Path(folder))["wall"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side, alternating")
    parser.add_argument("--skip-sweep", action="store_true", help="measure the loader alone")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    root = photo_folder(args.images)
    loaders = {"sweeplab, cache": [], "sweeplab, no cache": [], "the notes' way": []}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache_dir:
            loaders["sweeplab, cache"].append(sweeplab_epochs(root, True, Path(cache_dir)))
        with tempfile.TemporaryDirectory() as cache_dir:
            loaders["sweeplab, no cache"].append(sweeplab_epochs(root, False, Path(cache_dir)))
        loaders["the notes' way"].append(notes_epochs(root))
    print(f"loader alone, {args.images} images of 500x375 at {SIZE}x{SIZE}, {WORKERS} workers, median of "
          f"{args.repeats}:")
    medians = {name: [statistics.median(run[epoch] for run in runs) for epoch in (0, 1)]
               for name, runs in loaders.items()}
    for name, (first, second) in medians.items():
        print(f"  {name:20s} epoch 1 {first:8,.0f} images/s   epoch 2 {second:8,.0f} images/s")
    notes = medians["the notes' way"][1]
    cached, uncached = medians["sweeplab, cache"], medians["sweeplab, no cache"]
    print(f"  epoch 2 with the cache: {cached[1] / notes:.1f}x the notes' way (target >= 10x)")
    print(f"  epoch 1 with the cache: {cached[0] / uncached[0]:.2f}x the speed without (target >= 0.9x)")
    if args.skip_sweep:
        return
    walls = {True: [], False: []}
    for _ in range(args.repeats):
        for cache in (True, False):
            walls[cache].append(timed_sweep(root, cache))
    with_cache, without = statistics.median(walls[True]), statistics.median(walls[False])
    print(f"4-job sweep ({' '.join(SWEEP[:5])}): with the cache {with_cache:.1f} s, without {without:.1f} s: "
          f"{without / with_cache:.2f}x faster (target >= 2x)")


if __name__ == "__main__":
    main()
