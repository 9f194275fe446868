"""Generated FashionMNIST and CIFAR-10 in the real on-disk formats, for the course-notes baselines.

    python benchmarks/notes/generate_data.py DIR [--train 60000 --test 10000 --cifar-train 50000 --cifar-test 10000]

Writes, with the writers the tests use (tests/data_formats.py):

- DIR/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte: uncompressed 28x28 uint8 IDX files,
  read by `torchvision.datasets.FashionMNIST(DIR, train=..., download=False)` (download=True finds them too);
- DIR/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}: pickled batches as in the official
  tarball, read by torchvision's CIFAR10 with the md5 check off (their sums are not the official ones):
  sweeplab with `dataset.source.verify_checksums=false`, the notes' script with an unverified subclass.

Images are noise plus a bright square in a class's own cell (and, in colour, its own channel), so models
learn them and test accuracy means something. Seeded: the same arguments write the same bytes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2] / "tests"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="data root (paths.data_dir for sweeplab, --data for the notes)")
    parser.add_argument("--train", type=int, default=60000, help="FashionMNIST training images")
    parser.add_argument("--test", type=int, default=10000, help="FashionMNIST test images")
    parser.add_argument("--cifar-train", type=int, default=50000, help="CIFAR-10 training images (5 batches)")
    parser.add_argument("--cifar-test", type=int, default=10000, help="CIFAR-10 test images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.cifar_train % 5:
        parser.error(f"--cifar-train must be a multiple of 5 (five equal batches), got {args.cifar_train}")

    sys.path.insert(0, str(TESTS))
    from data_formats import write_cifar10, write_mnist

    start = time.perf_counter()
    raw = write_mnist(args.dir, "FashionMNIST", train_size=args.train, test_size=args.test, seed=args.seed)
    print(f"FashionMNIST: {args.train} train, {args.test} test -> {raw}")
    folder = write_cifar10(args.dir, per_batch=args.cifar_train // 5, test_size=args.cifar_test, seed=args.seed + 1)
    print(f"CIFAR-10: {args.cifar_train} train, {args.cifar_test} test -> {folder}")
    print(f"generated in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
