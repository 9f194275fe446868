"""Where images come from: each loader returns train/val/test splits of uint8 CHW images.

Validation is carved from the training data with `split_seed` (not the training seed, so seed
replicates share their splits); the test split (an official one, a `test/` folder, or a seeded
carve) is never seen before the best checkpoint is scored on it. `val_split=test` validates on
the test split instead, the optimistic habit of the course notes, and then there is no test score.

Data sets that fit in memory come back as `TensorDataset`s over one uint8 tensor (decoded
once); image folders come back as lazily decoded datasets read by a DataLoader. Loaders are
named by `dataset.source._target_` in the config, so adding a data set adds no registry.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import logging
import os
import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Subset, TensorDataset

from sweeplab.core.errors import UserError, first_line
from sweeplab.data.digest import split_digest
from sweeplab.data.folder_cache import DecodeCache, cache_folder, known_problems, open_decode_cache

log = logging.getLogger(__name__)
# A folder with more unreadable images than this share is refused (a broken copy, the wrong folder); fewer are skipped.
MOST_UNREADABLE = 0.1
LISTED = 3  # unreadable files named in the one line about them

NO_TEST_SPLIT = ("dataset.val_split=test needs a test split and this data set has none: set dataset.test_fraction "
                 "(or add a test/ folder), or keep dataset.val_split=train")


@dataclass
class Splits:
    train: Dataset
    val: Dataset
    classes: list[str]
    test: Dataset | None = None  # None: the run gets no test score
    policy_applied: bool = False  # the training images come out of the loader augmented already

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.val[0][0].shape)  # type: ignore[return-value]  # val: never augmented

    @functools.cached_property  # a sequential sweep's jobs share these splits (sweeplab.data.load_splits)
    def digests(self) -> dict[str, str]:
        return {name: split_digest(split) for name, split in self.named() if split is not None}

    def named(self) -> tuple[tuple[str, Dataset | None], ...]:
        return ("train", self.train), ("val", self.val), ("test", self.test)


def load_digits(split_seed: int, val_fraction: float, test_fraction: float = 0.0, val_split: str = "train") -> Splits:
    """scikit-learn's 8x8 digits (values 0..16), rescaled to the usual 0..255 range."""
    pixels, labels = read_bundled_digits()
    images = torch.from_numpy(np.round(pixels * (255 / 16)).astype(np.uint8)).unsqueeze(1)
    full = TensorDataset(images, torch.from_numpy(labels).long())
    pool, test = seeded_split(full, test_fraction, split_seed) if test_fraction else (full, None)
    return with_validation(pool, test, [str(d) for d in range(10)], split_seed, val_fraction, val_split)


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


def load_mnist(root: str, variant: str, download: bool, split_seed: int = 0, val_fraction: float = 0.1,
               val_split: str = "train") -> Splits:
    """MNIST or FashionMNIST from torchvision's IDX files (`variant` is the class name)."""
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, variant)
    raw = Path(root).resolve() / variant / "raw"
    expected = [os.path.splitext(os.path.basename(url))[0] for url, _ in dataset_class.resources]
    train, test = (
        _open_torchvision(dataset_class, raw, expected, root=root, train=split, download=download)
        for split in (True, False)
    )
    return with_validation(
        TensorDataset(train.data.unsqueeze(1), train.targets.long()),
        TensorDataset(test.data.unsqueeze(1), test.targets.long()),
        list(train.classes), split_seed, val_fraction, val_split,
    )


def load_cifar10(root: str, download: bool, verify_checksums: bool, split_seed: int = 0, val_fraction: float = 0.1,
                 val_split: str = "train") -> Splits:
    """CIFAR-10 from torchvision's python pickle batches."""
    from torchvision.datasets import CIFAR10

    dataset_class = CIFAR10 if verify_checksums else _unverified_cifar10()
    folder = Path(root).resolve() / CIFAR10.base_folder
    expected = [name for name, _ in CIFAR10.train_list + CIFAR10.test_list] + [CIFAR10.meta["filename"]]
    train, test = (
        _open_torchvision(dataset_class, folder, expected, root=root, train=split, download=download)
        for split in (True, False)
    )
    return with_validation(_from_hwc(train.data, train.targets), _from_hwc(test.data, test.targets),
                           list(train.classes), split_seed, val_fraction, val_split)


def load_fake(seed: int, num_train: int, num_val: int, num_classes: int, channels: int, size: int,
              num_test: int = 0) -> Splits:
    """Random images and labels from a seeded generator: for smoke tests, nothing to learn."""
    generator = torch.Generator().manual_seed(seed)

    def split(n: int) -> TensorDataset:
        images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=generator)
        return TensorDataset(images, torch.randint(0, num_classes, (n,), generator=generator))

    train, val, test = split(num_train), split(num_val), split(num_test) if num_test else None
    return Splits(train, val, [f"class_{i}" for i in range(num_classes)], test)


def with_validation(pool: Dataset, test: Dataset | None, classes: list[str], split_seed: int, val_fraction: float,
                    val_split: str) -> Splits:
    """Validation carved from `pool` and `test` kept for the end; or, with val_split=test, validation on `test`."""
    if val_split == "test":  # optimistic, and no test score
        if test is None:
            raise UserError(NO_TEST_SPLIT)
        return Splits(pool, test, classes)
    train, val = seeded_split(pool, val_fraction, split_seed)
    return Splits(train, val, classes, test)


def load_image_folder(
    path: str, split_seed: int, val_fraction: float, image_size: int | None, crop_size: int | None,
    policy: str = "none", test_fraction: float = 0.0, val_split: str = "train", cache: object = False,
    cache_dir: str | None = None,
) -> Splits:
    """`path/train/<class>/<image>` and, if present, `path/val/...` and `path/test/...`; a split that is
    absent is carved from train/ (test only with `test_fraction`), with validation's and test's images
    decoded without the augmentation policy.

    Images are decoded by DataLoader workers to uint8 at a fixed size (resize the shorter side,
    then center crop); training images get the augmentation `policy` there too, each its own draw
    (1.45x faster than on the batches, benchmarks/augment_policy.py); the rest of the augmentation
    happens later, on whole batches. Each image is decoded once and kept (`cache`, in `cache_dir`: see
    sweeplab.data.folder_cache).
    """
    from torchvision.datasets import ImageFolder

    if not path:  # imagefolder.yaml's `path: ???` cannot unset the schema's null default
        raise UserError("dataset.path is not set: point it at an image folder, e.g. dataset.path=/data/ants_bees")
    root = Path(path).resolve()
    layout = f"expected {root}/train/<class>/<image> (and optionally val/ and test/ beside train/, alike)"
    if not (root / "train").is_dir():
        raise UserError(f"no image folder at {root}: {layout}; point dataset.path at it")
    images = FolderDecoding(checked_size(image_size, crop_size), crop_size, cache, cache_dir)

    class ContainedFolder(ImageFolder):
        make_dataset = staticmethod(contained_samples)

    classes: list[str] = []

    def folder(split: str) -> FolderImages | None:
        if split != "train" and not (root / split).is_dir():
            return None
        try:
            found = ContainedFolder(str(root / split), loader=read_rgb)
        except FileNotFoundError as error:
            raise UserError(f"{error}: {layout}") from None
        if split != "train" and found.classes != classes:
            raise UserError(f"{root}/{split} has classes {found.classes} but {root}/train has {classes}: "
                            "make them match")
        classes[:] = found.classes
        return images.of(found.samples, found.classes, root / split)

    plain = folder("train")  # what carved val/test images are read through
    if len(classes) < 2:
        count = f"{len(plain)} image{'' if len(plain) == 1 else 's'}"
        raise UserError(f"{root}/train holds one class folder ({classes[0]}/, {count}) and a classifier "
                        "needs at least two: add a folder of images for each other class beside it")
    train = plain.augmented(policy)  # the same checked files and cache, with the policy as well
    return carve_splits(train, plain, folder("val"), folder("test"), classes, split_seed, val_fraction,
                        test_fraction, val_split)


def contained_samples(directory: str, class_to_idx: dict[str, int], extensions: tuple[str, ...] | None = None,
                      is_valid_file=None, allow_empty: bool = False) -> list[tuple[str, int]]:
    """ImageFolder's listing (its make_dataset), following no link out of its class folder, into a loop, or to a
    folder listed already: through one, a class's images would be listed again, or under another class with its
    label. Links that stay inside their class folder are followed; those skipped are named in one warning."""
    from torchvision.datasets.folder import has_file_allowed_extension

    valid = is_valid_file or (lambda path: has_file_allowed_extension(path, extensions))
    samples, skipped = [], []
    for name, index in sorted(class_to_idx.items()):
        top = os.path.join(directory, name)
        inside, seen = os.path.realpath(top), set()
        for folder, subfolders, files in os.walk(top, followlinks=True):
            real = os.path.realpath(folder)
            if real in seen or os.path.commonpath([real, inside]) != inside:
                skipped.append(folder)
                subfolders.clear()
                continue
            seen.add(real)
            subfolders.sort()
            for file in sorted(files):
                path = os.path.join(folder, file)
                if not valid(path):
                    continue
                if os.path.commonpath([os.path.realpath(path), inside]) == inside:
                    samples.append((path, index))
                else:
                    skipped.append(path)
    labelled = {label for _, label in samples}
    empty = [name for name, index in class_to_idx.items() if index not in labelled]
    if empty and not allow_empty:  # torchvision's own words
        raise FileNotFoundError(f"Found no valid file for the classes {', '.join(sorted(empty))}")
    if skipped:
        log.warning(f"skipping {len(skipped)} link(s) in {directory} that leave their class folder or reach one "
                    "listed already: "
                    f"{'; '.join(skipped[:LISTED])}{'; ...' if len(skipped) > LISTED else ''}")
    return samples


def checked_size(image_size: int | None, crop_size: int | None) -> int:
    """`image_size`, which must be set, and at least `crop_size`."""
    if not image_size:
        raise UserError("images read from files need a common size: set dataset.image_size (and dataset.crop_size)")
    if crop_size and crop_size > image_size:
        raise UserError(
            f"dataset.crop_size={crop_size} is larger than dataset.image_size={image_size}, so every image would be "
            f"padded with black: set dataset.crop_size to at most {image_size} (null crops to dataset.image_size)"
        )
    return image_size


def carve_splits(
    train: Dataset, plain: Dataset, val: Dataset | None, test: Dataset | None, classes: list[str],
    split_seed: int, val_fraction: float, test_fraction: float, val_split: str,
) -> Splits:
    """Validation and test as given, or else carved from `train` (test only with `test_fraction`);
    carved images are read through `plain`, the training images without the augmentation policy."""
    pool = list(range(len(train)))
    if test is None and test_fraction:
        pool, held = seeded_indices(pool, test_fraction, split_seed)
        test = Subset(plain, held)
    if val_split == "test":  # validation on the test split: optimistic, and no test score
        if test is None:
            raise UserError(NO_TEST_SPLIT)
        val, test = test, None
    elif val is None:
        pool, held = seeded_indices(pool, val_fraction, split_seed)
        val = Subset(plain, held)
    kept = train if len(pool) == len(train) else Subset(train, pool)
    return Splits(kept, val, classes, test, policy_applied=plain is not train)


@dataclass(frozen=True)
class FolderDecoding:
    """How a loader's folders are decoded (a fixed size) and kept (dataset.cache in paths.cache_dir)."""

    image_size: int
    crop_size: int | None
    cache: object = False  # auto, True or False
    cache_dir: str | None = None

    def of(self, samples: list[tuple[str, int]], classes: list[str], folder: Path) -> FolderImages:
        """The readable images of `samples` in `folder` (sweeplab.data.sources.readable_samples), read through the
        folder's decode cache when there is one."""
        kept_in = cache_folder(self.cache_dir) if self.cache_dir else None
        samples = readable_samples(samples, classes, folder, kept_in)
        size = self.crop_size or self.image_size
        settings = {"folder": str(folder), "image_size": self.image_size, "crop_size": self.crop_size}
        decoded = open_decode_cache(self.cache, kept_in, samples, (3, size, size), settings)
        return FolderImages(samples, folder, folder_decoder(self.image_size, self.crop_size), decoded)


class FolderImages(Dataset):
    """(image path, class index) samples, decoded when read (in DataLoader workers, so picklable): from the decode
    cache when it holds the image, else by `decode` (and then kept there), then `augment`ed if a policy is set.

    `samples` and `root` (the split's folder) as torchvision's ImageFolder has them, which split digests read.
    """

    def __init__(self, samples: list[tuple[str, int]], root: Path, decode: Callable, cache: DecodeCache | None = None,
                 augment: Callable | None = None):
        self.samples = samples
        self.root = str(root)
        self.decode = decode
        self.cache = cache
        self.augment = augment

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        image = self.cache.read(index) if self.cache else None
        if image is None:
            image = self.decode(read_rgb(path))
            if self.cache:
                self.cache.write(index, image)
        return (self.augment(image) if self.augment else image), label

    def augmented(self, policy: str) -> FolderImages:
        """These images with the augmentation `policy` applied to each (itself for none)."""
        if policy == "none":
            return self
        from sweeplab.data.policies import policy_transform

        return FolderImages(self.samples, Path(self.root), self.decode, self.cache, policy_transform(policy))


def folder_decoder(image_size: int, crop_size: int | None):
    """PIL image -> uint8 CHW at a fixed size: resize the shorter side, then center crop."""
    from torchvision.transforms import v2

    return v2.Compose([v2.Resize(image_size), v2.CenterCrop(crop_size or image_size), v2.PILToTensor()])


def read_rgb(path: str):
    """Open any image as RGB; an unreadable file is a user error naming it."""
    try:
        with Image.open(path) as image:
            return eight_bit(image).convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise UserError(f"{path} is not a readable image ({error}): remove or replace it") from None


def eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit (or 32-bit integer) grayscale picture scaled to 8 bits; PIL's own conversion clips every value above
    255 to white. Any other picture as it is."""
    if image.mode not in ("I", "I;16", "I;16B", "I;16L"):
        return image
    values = np.asarray(image, dtype=np.float64)
    return Image.fromarray(np.clip(np.round(values / 257), 0, 255).astype(np.uint8), mode="L")


def readable_samples(samples: list[tuple[str, int]], classes: list[str], folder: Path,
                     kept_in: Path | None = None) -> list[tuple[str, int]]:
    """`samples` without the files PIL cannot open as an image of a safe size (found once, then kept in
    `kept_in` for the next run over the same files).

    A few such files (one corrupt download in thousands) are skipped with one warning naming them,
    so that a long run does not stop on them mid-epoch; more than MOST_UNREADABLE of them, or a class
    left without images, stop the run: that is a broken copy or the wrong folder, not bad luck.
    """
    problems = known_problems(kept_in, samples, image_problem)
    if not problems:
        return samples
    kept = [(path, label) for path, label in samples if path not in problems]
    named = "; ".join(f"{path} ({problem})" for path, problem in list(problems.items())[:LISTED])
    more = f"; and {len(problems) - LISTED} more" if len(problems) > LISTED else ""
    count = f"{len(problems)} unreadable image{'s' if len(problems) > 1 else ''} of the {len(samples)} in {folder}"
    emptied = set(range(len(classes))) - {label for _, label in kept}
    if len(problems) > MOST_UNREADABLE * len(samples) or emptied:
        raise UserError(f"{count}: {named}{more}: replace or remove the files named (a run skips unreadable images "
                        f"only while they are at most {MOST_UNREADABLE:.0%} of a folder and every class keeps some)")
    log.warning(f"skipping {count}: {named}{more}; replace or remove the files named to train on every image")
    return kept


def image_problem(path: str) -> str | None:
    """Why PIL cannot open `path` as an image, or refuses its size as a decompression bomb; None if it can.

    Only the header is read (about 0.2 ms a file): decoding every image up front would cost an epoch.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # PIL's "maybe a bomb" is one here
            with Image.open(path):
                return None
    except (OSError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        return first_line(error)


def seeded_split(dataset: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """(the rest, a `fraction` of it); in-memory data sets stay one tensor each (batched without a DataLoader)."""
    rest, part = seeded_indices(list(range(len(dataset))), fraction, seed)  # type: ignore[arg-type]
    return _subset(dataset, rest), _subset(dataset, part)


def seeded_indices(indices: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(the rest, a `fraction` of `indices`, at least one): the same for the same seed, whatever the training seed."""
    order = torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed)).tolist()
    n_part = max(1, round(len(indices) * fraction))
    if n_part >= len(indices):
        raise UserError(f"{len(indices)} images are too few to split a share of {fraction} off and keep any to "
                        "train on: add images, or give the split its own folder (val/, test/)")
    return [indices[i] for i in order[n_part:]], [indices[i] for i in order[:n_part]]


def _subset(dataset: Dataset, indices: list[int]) -> Dataset:
    if isinstance(dataset, TensorDataset):
        index = torch.tensor(indices, dtype=torch.long)
        return TensorDataset(*(tensor[index] for tensor in dataset.tensors))
    return Subset(dataset, indices)


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
