"""Where an augmentation policy runs fastest for an image folder: on the batches (sweeplab's way) or per image in
the DataLoader workers (torchvision's references' way), side by side.

    python benchmarks/augment_policy.py [--images 2000] [--policy trivialaugment] [--workers 2] [--pairs 3]

Both sides decode the same generated folder (tests/data_formats.py's images, resized to 64, cropped
to 56) with the same DataLoader workers and apply the same torchvision policy to every image, each
its own draw: (a) in the training process, on each uint8 batch as it arrives (what
`dataset.augment.policy` does); (b) inside the workers' decode transform. Prints images per second.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from data_formats import write_image_folder  # noqa: E402
from sweeplab.data.policies import POLICIES, each_image  # noqa: E402
from sweeplab.data.sources import folder_decoder, read_rgb  # noqa: E402


def epoch(root: Path, workers: int, in_workers, on_batches) -> float:
    """Images per second of one pass over the folder."""
    decode = folder_decoder(64, 56)
    transform = v2.Compose([decode, in_workers]) if in_workers else decode
    loader = DataLoader(ImageFolder(str(root / "train"), transform=transform, loader=read_rgb), batch_size=64,
                        shuffle=True, num_workers=workers)
    started, count = time.perf_counter(), 0
    for images, _ in loader:
        if on_batches:
            images = on_batches(images)
        count += len(images)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--policy", default="trivialaugment", choices=sorted(POLICIES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="augment-policy-"))
    write_image_folder(root, ("ants", "bees"), {"train": args.images // 2}, seed=0)
    torch.manual_seed(0)
    sides = {
        "no policy": lambda: epoch(root, args.workers, None, None),
        "on the batches, in training": lambda: epoch(root, args.workers, None, each_image(POLICIES[args.policy]())),
        "per image in the workers": lambda: epoch(root, args.workers, POLICIES[args.policy](), None),
    }
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for pair in range(args.pairs):
        for name in (list(sides) if pair % 2 == 0 else list(reversed(sides))):
            rates[name].append(sides[name]())
    print(f"{args.policy}, {args.images} images, {args.workers} workers (median of {args.pairs}):")
    for name, values in rates.items():
        print(f"  {name}: {statistics.median(values):,.0f} images/s")


if __name__ == "__main__":
    main()
