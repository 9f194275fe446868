"""Where images come from: each loader returns train/val splits of uint8 CHW images.

Data sets that fit in memory come back as `TensorDataset`s over one uint8 tensor (decoded
once); image folders come back as lazily decoded datasets read by a DataLoader. Loaders are
named by `dataset.source._target_` in the config, so adding a data set adds no registry.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Subset, TensorDataset

from sweeplab.errors import UserError, first_line


@dataclass
class Splits:
    train: Dataset
    val: Dataset
    classes: list[str]
    policy_applied: bool = False  # the training images come out of the loader augmented already

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.val[0][0].shape)  # type: ignore[return-value]  # val: never augmented


def load_digits(split_seed: int, val_fraction: float) -> Splits:
    """scikit-learn's 8x8 digits (values 0..16), rescaled to the usual 0..255 range."""
    pixels, labels = read_bundled_digits()
    images = torch.from_numpy(np.round(pixels * (255 / 16)).astype(np.uint8)).unsqueeze(1)
    full = TensorDataset(images, torch.from_numpy(labels).long())
    train, val = seeded_split(full, val_fraction, split_seed)
    return Splits(_materialize(train), _materialize(val), [str(d) for d in range(10)])


def read_bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits and labels from the file scikit-learn ships, as its load_digits reads it.

    Read here rather than through sklearn.datasets, whose import costs a second of every run.
    """
    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise UserError("scikit-learn's digits file is missing: reinstall scikit-learn (pip install scikit-learn)")
    with gzip.open(path, "rt") as file:
        table = np.loadtxt(file, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)


def load_mnist(root: str, variant: str, download: bool) -> Splits:
    """MNIST or FashionMNIST from torchvision's IDX files (`variant` is the class name)."""
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, variant)
    raw = Path(root).resolve() / variant / "raw"
    expected = [os.path.splitext(os.path.basename(url))[0] for url, _ in dataset_class.resources]
    train, val = (
        _open_torchvision(dataset_class, raw, expected, root=root, train=split, download=download)
        for split in (True, False)
    )
    return Splits(
        TensorDataset(train.data.unsqueeze(1), train.targets.long()),
        TensorDataset(val.data.unsqueeze(1), val.targets.long()),
        list(train.classes),
    )


def load_cifar10(root: str, download: bool, verify_checksums: bool) -> Splits:
    """CIFAR-10 from torchvision's python pickle batches."""
    from torchvision.datasets import CIFAR10

    dataset_class = CIFAR10 if verify_checksums else _unverified_cifar10()
    folder = Path(root).resolve() / CIFAR10.base_folder
    expected = [name for name, _ in CIFAR10.train_list + CIFAR10.test_list] + [CIFAR10.meta["filename"]]
    train, val = (
        _open_torchvision(dataset_class, folder, expected, root=root, train=split, download=download)
        for split in (True, False)
    )
    return Splits(_from_hwc(train.data, train.targets), _from_hwc(val.data, val.targets), list(train.classes))


def load_fake(seed: int, num_train: int, num_val: int, num_classes: int, channels: int, size: int) -> Splits:
    """Random images and labels from a seeded generator: for smoke tests, nothing to learn."""
    generator = torch.Generator().manual_seed(seed)

    def split(n: int) -> TensorDataset:
        images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=generator)
        return TensorDataset(images, torch.randint(0, num_classes, (n,), generator=generator))

    return Splits(split(num_train), split(num_val), [f"class_{i}" for i in range(num_classes)])


def load_image_folder(
    path: str, split_seed: int, val_fraction: float, image_size: int | None, crop_size: int | None,
    policy: str = "none",
) -> Splits:
    """`path/train/<class>/<image>` and, if present, `path/val/<class>/<image>`.

    Images are decoded by DataLoader workers to uint8 at a fixed size (resize the shorter side,
    then center crop); training images get the augmentation `policy` there too, each its own draw
    (1.45x faster than on the batches, benchmarks/augment_policy.py); the rest of the augmentation
    happens later, on whole batches.
    """
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    from sweeplab.data.policies import policy_transform

    if not path:  # imagefolder.yaml's `path: ???` cannot unset the schema's null default
        raise UserError("dataset.path is not set: point it at an image folder, e.g. dataset.path=/data/ants_bees")
    root = Path(path).resolve()
    layout = f"expected {root}/train/<class>/<image> (and optionally {root}/val/<class>/<image>)"
    if not (root / "train").is_dir():
        raise UserError(f"no image folder at {root}: {layout}; point dataset.path at it")
    if not image_size:
        raise UserError("image folders need a common size: set dataset.image_size (and dataset.crop_size)")
    if crop_size and crop_size > image_size:
        raise UserError(
            f"dataset.crop_size={crop_size} is larger than dataset.image_size={image_size}, so every image would be "
            f"padded with black: set dataset.crop_size to at most {image_size} (null crops to dataset.image_size)"
        )
    decode = folder_decoder(image_size, crop_size)
    augmented = v2.Compose([decode, policy_transform(policy)]) if policy != "none" else decode

    def folder(split: str, transform) -> ImageFolder:
        try:
            return ImageFolder(str(root / split), transform=transform, loader=read_rgb)
        except FileNotFoundError as error:
            raise UserError(f"{error}: {layout}") from None

    train = folder("train", augmented)
    if not (root / "val").is_dir():  # both parts from train/: validation's images decoded without the policy
        train_part, _ = seeded_split(train, val_fraction, split_seed)
        _, val_part = seeded_split(folder("train", decode), val_fraction, split_seed)
        return Splits(train_part, val_part, train.classes, policy_applied=policy != "none")
    val = folder("val", decode)
    if val.classes != train.classes:
        raise UserError(f"{root}/val has classes {val.classes} but {root}/train has {train.classes}: make them match")
    return Splits(train, val, train.classes, policy_applied=policy != "none")


def folder_decoder(image_size: int, crop_size: int | None):
    """PIL image -> uint8 CHW at a fixed size: resize the shorter side, then center crop."""
    from torchvision.transforms import v2

    return v2.Compose([v2.Resize(image_size), v2.CenterCrop(crop_size or image_size), v2.PILToTensor()])


def read_rgb(path: str):
    """Open any image as RGB; an unreadable file is a user error naming it."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise UserError(f"{path} is not a readable image ({error}): remove or replace it") from None


def seeded_split(dataset: Dataset, val_fraction: float, seed: int) -> tuple[Subset, Subset]:
    """The same split for the same seed, whatever the training seed is."""
    n = len(dataset)  # type: ignore[arg-type]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, round(n * val_fraction))
    return Subset(dataset, order[n_val:]), Subset(dataset, order[:n_val])


def _materialize(subset: Subset) -> TensorDataset:
    base: TensorDataset = subset.dataset  # type: ignore[assignment]
    index = torch.tensor(subset.indices)
    return TensorDataset(*(tensor[index] for tensor in base.tensors))


def _from_hwc(images: np.ndarray, labels: list[int]) -> TensorDataset:
    return TensorDataset(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels))


# What torchvision's readers raise on absent, mismatched or damaged files (and failed downloads).
_READ_ERRORS = (RuntimeError, OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError, AssertionError)


def _open_torchvision(dataset_class, folder: Path, expected: list[str], **kwargs):
    """Open a torchvision data set; when its files are missing or damaged, say which and where."""
    try:
        return dataset_class(**kwargs)
    except _READ_ERRORS as error:
        name = dataset_class.__name__
        missing = [file for file in expected if not (folder / file).exists()]
        if missing:
            how = "download failed (offline?)" if kwargs.get("download") else "download is off"
            raise UserError(
                f"{name} files missing in {folder}: {', '.join(missing)} ({how}); "
                f"put them there or set paths.data_dir to the folder that holds them"
            ) from None
        if "corrupted" in str(error) or isinstance(error, URLError):
            # Present but failing the md5 check: torchvision says so, or tried to re-download them.
            raise UserError(
                f"{name} files in {folder} do not match the official md5 sums: "
                "re-download them, or set dataset.source.verify_checksums=false for a re-packed copy"
            ) from None
        raise UserError(f"{name} files in {folder} are unreadable ({first_line(error)}): re-download them") from None


def _unverified_cifar10():
    """torchvision's CIFAR10 reading code, minus the md5 check (for re-packed or generated batches)."""
    from torchvision.datasets import CIFAR10

    class UnverifiedCIFAR10(CIFAR10):
        train_list = [[name, None] for name, _ in CIFAR10.train_list]
        test_list = [[name, None] for name, _ in CIFAR10.test_list]
        meta = {**CIFAR10.meta, "md5": None}

    return UnverifiedCIFAR10
