"""Tiny data sets written in the real on-disk formats that torchvision's readers expect.

The tests read these files through the same code users run (torchvision's CIFAR10, MNIST and
ImageFolder), so the images carry a weak class signal: each class lights up its own square (and, in
colour, its own channel) under noise. A small model learns it in an epoch or two, which lets the
end-to-end tests check that training actually trains.
"""

from __future__ import annotations

import io
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_UBYTE = 0x08  # the IDX type code for unsigned bytes


def class_images(labels: np.ndarray, channels: int, size: int, rng: np.random.Generator,
                 brightness: int = 150) -> np.ndarray:
    """uint8 NxCxHxW noise in [0, 96) plus a square `brightness` brighter in the class's own cell of a 4x4 grid and
    channel (a faint one, e.g. 12, takes a model several epochs to find)."""
    images = rng.integers(0, 96, size=(len(labels), channels, size, size))
    cell = size // 4
    for i, label in enumerate(labels):
        row, col = divmod(int(label) % 16, 4)
        images[i, int(label) % channels, row * cell : (row + 1) * cell, col * cell : (col + 1) * cell] += brightness
    return np.clip(images, 0, 255).astype(np.uint8)


def balanced_labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % num_classes)


def write_cifar10(root: Path, per_batch: int = 20, test_size: int = 40, seed: int = 0) -> Path:
    """`root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}` as in the official tarball.

    Each batch is a pickled dict with `data` (uint8 N x 3072, channel-major rows of 32x32 images),
    `labels`, `batch_label` and `filenames`; `batches.meta` holds `label_names`. Keys are str, which
    is what torchvision gets when it unpickles the official Python 2 files with encoding="latin1".
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = CIFAR_TRAIN_BATCHES + ["test_batch"]
    for index, name in enumerate(names):
        n = test_size if name == "test_batch" else per_batch
        labels = balanced_labels(n, 10, rng)
        data = class_images(labels, 3, 32, rng).reshape(n, 3072)
        batch = {
            "batch_label": f"{'testing' if name == 'test_batch' else 'training'} batch {index + 1} of 5",
            "labels": labels.tolist(),
            "data": data,
            "filenames": [f"generated_{index}_{i}.png" for i in range(n)],
        }
        _pickle(batch, folder / name)
    meta = {"num_cases_per_batch": per_batch, "label_names": CIFAR_CLASSES, "num_vis": 3072}
    _pickle(meta, folder / "batches.meta")
    return folder


def write_mnist(root: Path, variant: str = "MNIST", train_size: int = 40, test_size: int = 40, seed: int = 0,
                brightness: int = 150) -> Path:
    """`root/<variant>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`, uncompressed 28x28 IDX files."""
    rng = np.random.default_rng(seed)
    raw = root / variant / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train_size), ("test", test_size)):
        labels = balanced_labels(n, 10, rng)
        images = class_images(labels, 1, 28, rng, brightness)[:, 0]
        image_file, label_file = MNIST_FILES[split]
        write_idx(raw / image_file, images)
        write_idx(raw / label_file, labels.astype(np.uint8))
    return raw


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: two zero bytes, the type code, the number of dimensions, big-endian sizes, then the bytes."""
    header = struct.pack(">BBBB", 0, 0, IDX_UBYTE, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_image_folder(
    root: Path,
    classes: tuple[str, ...] = ("ants", "bees"),
    per_class: dict[str, int] | None = None,
    seed: int = 0,
) -> Path:
    """`root/<split>/<class>/*.{png,jpg}`: RGB images of assorted sizes and both formats.

    `per_class` maps split names to images per class; leave out "val" for a train-only folder.
    """
    rng = np.random.default_rng(seed)
    for split, count in (per_class or {"train": 12, "val": 6}).items():
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                height, width = int(rng.integers(36, 60)), int(rng.integers(36, 60))
                pixels = class_images(np.array([label]), 3, max(height, width), rng)[0, :, :height, :width]
                suffix = "png" if i % 2 else "jpg"
                Image.fromarray(pixels.transpose(1, 2, 0)).save(folder / f"{name}_{i}.{suffix}")
    return root


def write_label_files(
    root: Path,
    classes: tuple[str, ...] = ("ants", "bees"),
    per_class: dict[str, int] | None = None,
    seed: int = 0,
) -> Path:
    """`root/<split>/<class>_image/<stem>.{png,jpg}` beside `root/<split>/<class>_label/<stem>.txt` holding the class
    name, the course notes' practice layout; small RGB images of assorted sizes and both formats.

    `per_class` maps split names to images per class; leave out "val" for a train-only tree.
    """
    rng = np.random.default_rng(seed)
    for split, count in (per_class or {"train": 12, "val": 6}).items():
        for label, name in enumerate(classes):
            images, labels = root / split / f"{name}_image", root / split / f"{name}_label"
            images.mkdir(parents=True, exist_ok=True)
            labels.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                height, width = int(rng.integers(18, 30)), int(rng.integers(18, 30))
                pixels = class_images(np.array([label]), 3, max(height, width), rng)[0, :, :height, :width]
                stem = f"{label * 1000 + i:07d}"
                Image.fromarray(pixels.transpose(1, 2, 0)).save(images / f"{stem}.{'png' if i % 2 else 'jpg'}")
                (labels / f"{stem}.txt").write_text(f"{name}\n")
    return root


def write_png_claiming_size(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims `width` x `height` pixels: what PIL's decompression-bomb check reads, without
    the memory a real bomb takes to make or to open."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    png = bytearray(buffer.getvalue())
    png[16:24] = struct.pack(">II", width, height)  # IHDR's data: after the signature, the chunk's length and type
    png[29:33] = struct.pack(">I", zlib.crc32(png[12:29]))  # the chunk's CRC covers its type and data
    path.write_bytes(bytes(png))
    return path


def _pickle(obj: object, path: Path) -> None:
    with path.open("wb") as file:
        pickle.dump(obj, file, protocol=2)
