"""Data sources read real on-disk formats through torchvision; batches and augmentation are tensor ops."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import TensorDataset

from data_formats import CIFAR_CLASSES, MNIST_FILES, write_cifar10, write_image_folder, write_mnist
from sweeplab.config.schema import AugmentConfig, DatasetConfig
from sweeplab.core.errors import UserError
from sweeplab.core.ranks import Ranks
from sweeplab.data import build_data, load_splits
from sweeplab.data.augment import BatchPreprocess
from sweeplab.data.batches import LoaderBatches, TensorBatches, make_batches
from sweeplab.data.sources import (
    folder_decoder,
    load_cifar10,
    load_digits,
    load_fake,
    load_image_folder,
    load_mnist,
    seeded_split,
)

CPU = torch.device("cpu")


# --- sources -------------------------------------------------------------------------------------------------------


def rows(*datasets: TensorDataset) -> list[bytes]:
    """Each image with its label, as bytes: the multiset two ways of splitting the same data must agree on."""
    return sorted(image.numpy().tobytes() + bytes([int(label)]) for dataset in datasets for image, label in
                  zip(*dataset.tensors, strict=True))


def test_digits_is_the_real_bundled_set_with_a_held_out_test_split() -> None:
    splits = load_digits(split_seed=0, val_fraction=0.2, test_fraction=0.2)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1150, 288, 359)
    assert splits.image_shape == (1, 8, 8) and splits.classes == [str(d) for d in range(10)]
    images, labels = splits.train.tensors
    assert images.dtype == torch.uint8 and images.max() == 255 and labels.unique().tolist() == list(range(10))
    everything = load_digits(0, 0.2)  # no test split: train and val
    assert rows(splits.train, splits.val, splits.test) == rows(everything.train, everything.val)
    optimistic = load_digits(0, 0.2, test_fraction=0.2, val_split="test")  # validation on the test split
    assert optimistic.test is None and rows(optimistic.val) == rows(splits.test)
    assert rows(optimistic.train) == rows(splits.train, splits.val)


def test_digits_split_depends_only_on_split_seed() -> None:
    first, again, other = (load_digits(seed, 0.2, 0.2) for seed in (0, 0, 1))
    for name in ("val", "test"):
        assert torch.equal(getattr(first, name).tensors[0], getattr(again, name).tensors[0])
        assert not torch.equal(getattr(first, name).tensors[0], getattr(other, name).tensors[0])


def test_val_split_test_needs_a_test_split() -> None:
    with pytest.raises(UserError, match=r"dataset.val_split=test needs a test split.*dataset.test_fraction"):
        load_digits(0, 0.2, test_fraction=0, val_split="test")


@pytest.mark.parametrize("variant", ["MNIST", "FashionMNIST"])
def test_mnist_idx_files_read_back_exactly(tmp_path: Path, variant: str) -> None:
    raw = write_mnist(tmp_path, variant, train_size=30, test_size=20)
    splits = load_mnist(str(tmp_path), variant, download=False, val_split="test")  # the official splits as they are
    assert (len(splits.train), len(splits.val)) == (30, 20) and splits.test is None
    assert splits.image_shape == (1, 28, 28) and len(splits.classes) == 10
    held_out = load_mnist(str(tmp_path), variant, download=False, split_seed=0, val_fraction=0.1)
    assert (len(held_out.train), len(held_out.val), len(held_out.test)) == (27, 3, 20)
    assert rows(held_out.test) == rows(splits.val) and rows(held_out.train, held_out.val) == rows(splits.train)
    header = 16  # magic + three sizes
    written = np.frombuffer((raw / MNIST_FILES["train"][0]).read_bytes()[header:], np.uint8).reshape(30, 1, 28, 28)
    labels = np.frombuffer((raw / MNIST_FILES["train"][1]).read_bytes()[8:], np.uint8)
    assert torch.equal(splits.train.tensors[0], torch.from_numpy(written.copy()))
    assert splits.train.tensors[1].tolist() == labels.tolist()


def test_mnist_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(UserError) as error:
        load_mnist(str(tmp_path), "FashionMNIST", download=False)
    message = str(error.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message and "paths.data_dir" in message
    for name in MNIST_FILES["train"] + MNIST_FILES["test"]:
        assert name in message


def test_mnist_truncated_file_is_a_user_error(tmp_path: Path) -> None:
    raw = write_mnist(tmp_path)
    image_file = raw / MNIST_FILES["train"][0]
    image_file.write_bytes(image_file.read_bytes()[:1000])
    with pytest.raises(UserError, match="unreadable"):
        load_mnist(str(tmp_path), "MNIST", download=False)


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(root, per_batch=8, test_size=12)
    return root


def test_cifar_read_through_torchvision_without_md5(cifar_root: Path) -> None:
    held_out = load_cifar10(str(cifar_root), download=False, verify_checksums=False)
    assert (len(held_out.train), len(held_out.val), len(held_out.test)) == (36, 4, 12)
    splits = load_cifar10(str(cifar_root), download=False, verify_checksums=False, val_split="test")
    assert (len(splits.train), len(splits.val)) == (5 * 8, 12) and rows(held_out.test) == rows(splits.val)
    assert splits.image_shape == (3, 32, 32) and splits.classes == CIFAR_CLASSES
    with (cifar_root / "cifar-10-batches-py" / "data_batch_1").open("rb") as file:
        batch = pickle.load(file, encoding="latin1")
    # Rows are channel-major 3x32x32 images; the loader must hand back exactly those, as CHW.
    expected = torch.from_numpy(batch["data"].reshape(-1, 3, 32, 32))
    assert torch.equal(splits.train.tensors[0][:8], expected)
    assert splits.train.tensors[1][:8].tolist() == batch["labels"]


def test_cifar_checksums_reject_generated_batches(cifar_root: Path) -> None:
    with pytest.raises(UserError, match="md5.*verify_checksums=false"):
        load_cifar10(str(cifar_root), download=False, verify_checksums=True)


def test_cifar_missing_files_are_named(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path, per_batch=2, test_size=2)
    (folder / "data_batch_3").unlink()
    (folder / "batches.meta").unlink()
    with pytest.raises(UserError, match=r"missing in .*cifar-10-batches-py: data_batch_3, batches\.meta"):
        load_cifar10(str(tmp_path), download=False, verify_checksums=False)


def test_cifar_damaged_batch_is_a_user_error(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path, per_batch=2, test_size=2)
    (folder / "data_batch_2").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="unreadable"):
        load_cifar10(str(tmp_path), download=False, verify_checksums=False)


def test_fake_is_seeded() -> None:
    first, again = (load_fake(3, 20, 10, 4, 1, 12) for _ in range(2))
    assert first.image_shape == (1, 12, 12) and first.classes == [f"class_{i}" for i in range(4)]
    assert torch.equal(first.train.tensors[0], again.train.tensors[0])
    assert not torch.equal(first.train.tensors[0], load_fake(4, 20, 10, 4, 1, 12).train.tensors[0])


def test_image_folder_with_val(data_dir: Path) -> None:
    splits = load_image_folder(str(data_dir / "hymenoptera_data"), 0, 0.2, image_size=40, crop_size=32)
    assert splits.classes == ["ants", "bees"]
    assert (len(splits.train), len(splits.val)) == (24, 12)
    image, label = splits.val[0]
    assert image.dtype == torch.uint8 and tuple(image.shape) == (3, 32, 32) and label == 0


def test_image_folder_without_val_is_split_by_seed(train_only_folder: Path) -> None:
    splits = load_image_folder(str(train_only_folder), 7, 0.2, image_size=24, crop_size=None)
    assert splits.classes == ["cats", "dogs", "fish"] and splits.image_shape == (3, 24, 24)
    assert (len(splits.train), len(splits.val)) == (24, 6)
    assert set(splits.train.indices).isdisjoint(splits.val.indices)
    again = load_image_folder(str(train_only_folder), 7, 0.2, image_size=24, crop_size=None)
    assert again.val.indices == splits.val.indices and splits.test is None


def test_image_folder_carves_a_test_split_or_reads_test(train_only_folder: Path, tmp_path: Path) -> None:
    splits = load_image_folder(str(train_only_folder), 7, 0.2, 24, None, test_fraction=0.2)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (19, 5, 6)
    parts = [set(splits.train.indices), set(splits.val.indices), set(splits.test.indices)]
    assert set.union(*parts) == set(range(30)) and sum(map(len, parts)) == 30
    (tmp_path / "both").mkdir()
    (tmp_path / "both" / "train").symlink_to(train_only_folder / "train")
    (tmp_path / "both" / "test").symlink_to(train_only_folder / "train")
    read = load_image_folder(str(tmp_path / "both"), 7, 0.2, 24, None, test_fraction=0.5)  # test/ wins
    assert (len(read.train), len(read.val), len(read.test)) == (24, 6, 30)


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        (lambda root: None, "no image folder at"),
        (lambda root: (root / "train").mkdir(), "Couldn't find any class folder"),
        (lambda root: write_image_folder(root, ("a", "b"), {"train": 1, "val": 0}), "Found no valid file"),
    ],
    ids=["absent", "empty-train", "empty-val"],
)
def test_image_folder_layout_errors(tmp_path: Path, setup, match: str) -> None:
    setup(tmp_path)
    with pytest.raises(UserError, match=match):
        load_image_folder(str(tmp_path), 0, 0.2, image_size=16, crop_size=None)


def test_image_folder_val_classes_must_match(tmp_path: Path) -> None:
    write_image_folder(tmp_path, ("a", "b"), {"train": 1})
    write_image_folder(tmp_path, ("a", "c"), {"val": 1})
    with pytest.raises(UserError, match="make them match"):
        load_image_folder(str(tmp_path), 0, 0.2, image_size=16, crop_size=None)


def test_image_folder_needs_a_path() -> None:
    with pytest.raises(UserError, match="dataset.path is not set"):
        load_image_folder(None, 0, 0.2, image_size=16, crop_size=None)


def test_image_folder_needs_a_size(train_only_folder: Path) -> None:
    with pytest.raises(UserError, match="dataset.image_size"):
        load_image_folder(str(train_only_folder), 0, 0.2, image_size=None, crop_size=None)


def test_a_crop_larger_than_the_image_is_refused(train_only_folder: Path) -> None:
    with pytest.raises(UserError, match="dataset.crop_size=64 is larger than dataset.image_size=24"):
        load_image_folder(str(train_only_folder), 0, 0.2, image_size=24, crop_size=64)


def test_folder_decoder_resizes_shorter_side_then_crops() -> None:
    pixels = np.zeros((30, 60, 3), np.uint8)
    pixels[:, :15] = 255  # the left quarter is cut away by the center crop
    decoded = folder_decoder(20, 16)(Image.fromarray(pixels))
    assert decoded.dtype == torch.uint8 and tuple(decoded.shape) == (3, 16, 16)
    assert decoded[:, :, 0].max() < 128


@pytest.mark.parametrize("workers", [0, 2])
def test_unreadable_image_is_one_line_naming_it(tmp_path: Path, workers: int) -> None:
    write_image_folder(tmp_path, ("a", "b"), {"train": 3, "val": 1})
    broken = tmp_path / "train" / "a" / "broken.png"
    # Its header reads, its pixels do not: found only when the epoch decodes it.
    broken.write_bytes((tmp_path / "train" / "a" / "a_1.png").read_bytes()[:200])
    splits = load_image_folder(str(tmp_path), 0, 0.2, image_size=16, crop_size=None)
    batches = make_batches(splits.train, 8, False, CPU, 0, workers)
    with pytest.raises(UserError) as error:
        list(batches)
    assert str(broken) in str(error.value) and "\n" not in str(error.value)


def test_seeded_split_keeps_at_least_one_val_item() -> None:
    data = TensorDataset(torch.arange(3))
    train, val = seeded_split(data, 0.01, 0)  # in-memory parts stay tensors
    assert len(val) == 1 and sorted(torch.cat([train.tensors[0], val.tensors[0]]).tolist()) == [0, 1, 2]


# --- batches -------------------------------------------------------------------------------------------------------


def numbered(n: int) -> TensorDataset:
    return TensorDataset(torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1), torch.arange(n))


def test_train_batches_shuffle_each_epoch_and_drop_the_ragged_end() -> None:
    batches = TensorBatches(numbered(10), 4, True, CPU, seed=0)
    assert len(batches) == 2
    epochs = [torch.cat([labels for _, labels in batches]).tolist() for _ in range(2)]
    assert all(len(seen) == 8 and len(set(seen)) == 8 for seen in epochs)
    assert epochs[0] != epochs[1]
    again = TensorBatches(numbered(10), 4, True, CPU, seed=0)
    assert torch.cat([labels for _, labels in again]).tolist() == epochs[0]


def test_eval_batches_cover_everything_in_order() -> None:
    batches = TensorBatches(numbered(10), 4, False, CPU, seed=0)
    assert len(batches) == 3
    assert torch.cat([labels for _, labels in batches]).tolist() == list(range(10))
    images, labels = next(iter(batches))
    assert images.dtype == torch.uint8 and torch.equal(images.view(-1).long(), labels)


def test_small_train_set_keeps_its_only_batch() -> None:
    assert len(TensorBatches(numbered(3), 8, True, CPU, seed=0)) == 1


def test_image_folders_go_through_a_loader(data_dir: Path) -> None:
    splits = load_image_folder(str(data_dir / "hymenoptera_data"), 0, 0.2, image_size=16, crop_size=None)
    batches = make_batches(splits.train, 10, True, CPU, 0, 0)
    assert isinstance(batches, LoaderBatches) and len(batches) == 2
    images, labels = next(iter(batches))
    assert images.dtype == torch.uint8 and tuple(images.shape) == (10, 3, 16, 16) and labels.shape == (10,)


def test_build_data_checks_mean_and_std_per_channel(data_dir: Path) -> None:
    cfg = DatasetConfig(name="fake", source={"_target_": "sweeplab.data.sources.load_fake", "seed": 0,
                        "num_train": 8, "num_val": 4, "num_classes": 2, "channels": 3, "size": 8},
                        mean=[0.5], std=[0.25], num_workers=0)
    with pytest.raises(UserError, match="one value per channel"):
        build_data(cfg, CPU, 0)
    cfg.mean, cfg.std, cfg.eval_batch_size = [0.5] * 3, [0.25] * 3, 3
    data = build_data(cfg, CPU, 0)
    assert data.image_shape == (3, 8, 8) and data.classes == ["class_0", "class_1"]
    assert (len(data.train), len(data.val)) == (1, 2)


def test_sequential_jobs_share_one_decoded_data_set() -> None:
    """A sweep's jobs in one process decode a data set once: same source config, same splits object."""
    source = {"_target_": "sweeplab.data.sources.load_fake", "seed": 0, "num_train": 8, "num_val": 4,
              "num_classes": 2, "channels": 1, "size": 8}
    first = load_splits(DatasetConfig(name="fake", source=source, batch_size=4))
    assert load_splits(DatasetConfig(name="fake", source=dict(source), batch_size=2)) is first
    assert load_splits(DatasetConfig(name="fake", source={**source, "seed": 1})) is not first


# --- augmentation --------------------------------------------------------------------------------------------------


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randint(0, 256, (64, 3, 12, 10), dtype=torch.uint8)


def test_eval_preprocess_is_normalization_only(images: torch.Tensor) -> None:
    augment = AugmentConfig(random_crop_padding=4, hflip=True, vflip=True)
    preprocess = BatchPreprocess([0.1, 0.2, 0.3], [0.5, 0.25, 0.125], augment)
    out = preprocess(images, train=False)
    mean, std = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1), torch.tensor([0.5, 0.25, 0.125]).view(1, 3, 1, 1)
    assert out.dtype == torch.float32 and out.shape == images.shape
    torch.testing.assert_close(out, (images.float() / 255 - mean) / std)
    assert torch.equal(preprocess(images, train=False), out)


@pytest.mark.parametrize(("flag", "dim"), [("hflip", 3), ("vflip", 2)])
def test_flips_flip_some_images_whole(images: torch.Tensor, flag: str, dim: int) -> None:
    preprocess = BatchPreprocess([0.0] * 3, [1.0] * 3, AugmentConfig(**{flag: True}))
    plain = preprocess(images, train=False)
    out = preprocess(images, train=True)
    flipped = [torch.equal(o, p.flip(dim - 1)) for o, p in zip(out, plain, strict=True)]
    kept = [torch.equal(o, p) for o, p in zip(out, plain, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert any(flipped) and any(kept)


def test_random_crop_shifts_each_image_within_the_padding(images: torch.Tensor) -> None:
    padding = 2
    preprocess = BatchPreprocess([0.0] * 3, [1.0] * 3, AugmentConfig(random_crop_padding=padding))
    plain = preprocess(images, train=False)
    out = preprocess(images, train=True)
    assert out.shape == plain.shape
    padded = torch.nn.functional.pad(plain, (padding,) * 4)
    height, width = plain.shape[-2:]
    offsets = []
    for o, p in zip(out, padded, strict=True):
        matches = [
            (dy, dx)
            for dy in range(2 * padding + 1)
            for dx in range(2 * padding + 1)
            if torch.equal(o, p[:, dy : dy + height, dx : dx + width])
        ]
        assert matches, "a crop is not a window of the padded image"
        offsets.append(matches[0])
    assert len(set(offsets)) > 5, "crops should land at many different offsets"


def test_training_without_augmentation_is_normalization(images: torch.Tensor) -> None:
    preprocess = BatchPreprocess([0.5] * 3, [0.5] * 3, AugmentConfig())
    assert torch.equal(preprocess(images, train=True), preprocess(images, train=False))


def test_channels_last_layout(images: torch.Tensor) -> None:
    preprocess = BatchPreprocess([0.5] * 3, [0.5] * 3, AugmentConfig(hflip=True), channels_last=True)
    for train in (True, False):
        assert preprocess(images, train=train).is_contiguous(memory_format=torch.channels_last)


def test_a_run_from_before_the_test_split_still_loads_its_data() -> None:
    """A checkpoint's dataset config as runs wrote it before test splits: its loader keys only, as they were."""
    old = OmegaConf.create({"source": {"_target_": "sweeplab.data.sources.load_digits", "split_seed": 0,
                                       "val_fraction": 0.2}})
    splits = load_splits(old)
    assert (len(splits.train), len(splits.val), splits.test) == (1438, 359, None)


class RandomlyAugmented(torch.utils.data.Dataset):
    """Each image drawn from torch's global RNG, as torchvision's random transforms draw in a DataLoader worker."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int):
        return torch.randint(0, 255, (1, 2, 2), dtype=torch.uint8), index


def epochs_of(batches, count: int, start: int = 0) -> list[list[torch.Tensor]]:
    first = [torch.cat([torch.flatten(images) for images, _ in batches.batches_from(start)])]
    return first + [torch.cat([torch.flatten(images) for images, _ in batches]) for _ in range(count - 1)]


@pytest.mark.parametrize("kind", ["tensors", "folder"])
@pytest.mark.parametrize("shuffle", [True, False], ids=["train", "eval"])
def test_torchrun_ranks_take_their_slice_of_every_batch(kind: str, shuffle: bool) -> None:
    """Under torchrun every rank draws the one-process order and takes its part of each batch: together the ranks
    see each batch of a plain run, an image (and its augmentation) once each; a resumed rank starts mid-epoch too."""
    def batches(ranks: Ranks | None = None):
        made = TensorBatches(TensorDataset(torch.arange(12).view(12, 1, 1, 1), torch.arange(12)), 4, shuffle, CPU, 0) \
            if kind == "tensors" else LoaderBatches(RandomlyAugmented(), 4, shuffle, CPU, seed=0, workers=0)
        return made.sharded(ranks) if ranks else made

    whole, ranks = list(batches()), [list(batches(Ranks(rank, 2, rank))) for rank in range(2)]
    assert len(whole) == len(ranks[0]) == len(ranks[1]) == 3
    for (images, labels), *parts in zip(whole, *ranks, strict=True):
        assert [len(part[1]) for part in parts] == [2, 2]
        assert torch.equal(labels, torch.cat([part[1] for part in parts]))
        if shuffle or kind == "tensors":  # unshuffled folder images are drawn from the global RNG as they come
            assert torch.equal(images, torch.cat([part[0] for part in parts]))
    if shuffle:
        resumed = [labels for _, labels in batches(Ranks(1, 2, 1)).batches_from(1)]
        assert all(torch.equal(a, b[1]) for a, b in zip(resumed, ranks[1][1:], strict=True))


def test_folder_batches_draw_the_same_order_and_augmentation_whatever_the_workers_and_resume() -> None:
    """Each image's random transform is seeded from the order's generator, not from the worker it lands on."""
    in_process = LoaderBatches(RandomlyAugmented(), 4, True, CPU, seed=0, workers=0)
    state = in_process.state_dict()
    expected = epochs_of(in_process, 2)
    assert not torch.equal(expected[0], expected[1]), "every epoch draws anew"
    in_workers = LoaderBatches(RandomlyAugmented(), 4, True, CPU, seed=0, workers=2)
    assert all(torch.equal(a, b) for a, b in zip(epochs_of(in_workers, 2), expected, strict=True))
    resumed = LoaderBatches(RandomlyAugmented(), 4, True, CPU, seed=0, workers=2)
    resumed.load_state_dict(state)
    from_second_batch = epochs_of(resumed, 2, start=1)  # 4 images of 2x2 a batch
    assert torch.equal(from_second_batch[0], expected[0][16:]) and torch.equal(from_second_batch[1], expected[1])
