"""The course notes' label-file layout (`dataset=label_files`), on trees generated in that layout."""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from data_formats import write_label_files
from launch import QUIET
from sweeplab.core.errors import UserError
from sweeplab.data.digest import split_digest
from sweeplab.data.label_files import load_label_files
from sweeplab.data.sources import NO_TEST_SPLIT
from test_train_e2e import accuracy, assert_above_chance, assert_one_line_error, trained


@pytest.fixture(scope="module")
def with_val(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_label_files(tmp_path_factory.mktemp("with_val"), ("bees", "ants"), {"train": 12, "val": 6})


@pytest.fixture(scope="module")
def train_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_label_files(tmp_path_factory.mktemp("train_only"), seed=1, per_class={"train": 12})


def load(root: Path, **options):
    return load_label_files(str(root), options.pop("split_seed", 7), options.pop("val_fraction", 0.25), 16, None,
                            **options)


def label_text(image: str) -> str:
    """What `<x>_label/<stem>.txt` beside `<x>_image/<stem>.jpg` says."""
    path = Path(image)
    label_folder = path.parent.with_name(path.parent.name.removesuffix("_image") + "_label")
    return (label_folder / f"{path.stem}.txt").read_text().strip()


def test_classes_and_labels_come_from_the_label_files(with_val: Path) -> None:
    splits = load(with_val)
    assert splits.classes == ["ants", "bees"] and (len(splits.train), len(splits.val)) == (24, 12)
    assert splits.test is None and splits.image_shape == (3, 16, 16) and not splits.policy_applied
    for part in (splits.train, splits.val):
        assert all(splits.classes[label] == label_text(image) for image, label in part.samples)
    image, label = splits.val[0]
    assert image.dtype == torch.uint8 and tuple(image.shape) == (3, 16, 16) and label == 0
    assert len({split_digest(splits.train), split_digest(splits.val)}) == 2  # read as image folders are


def test_the_class_is_the_label_text_not_the_folder_name(tmp_path: Path) -> None:
    write_label_files(tmp_path, per_class={"train": 4})
    for label_file in (tmp_path / "train" / "bees_label").iterdir():
        label_file.write_text("  Apis mellifera \n")
    assert load(tmp_path).classes == ["Apis mellifera", "ants"]


def test_without_val_the_split_is_seeded_stable_and_disjoint(train_only: Path) -> None:
    splits = load(train_only)
    assert (len(splits.train), len(splits.val)) == (18, 6)
    assert set(splits.train.indices).isdisjoint(splits.val.indices)
    assert load(train_only).val.indices == splits.val.indices
    assert load(train_only, split_seed=8).val.indices != splits.val.indices


def test_a_test_split_is_carved_with_test_fraction_or_read_from_test(train_only: Path, tmp_path: Path) -> None:
    splits = load(train_only, test_fraction=0.25)
    parts = [set(splits.train.indices), set(splits.val.indices), set(splits.test.indices)]
    assert list(map(len, parts)) == [14, 4, 6] and set.union(*parts) == set(range(24))
    on_test = load(train_only, test_fraction=0.25, val_split="test")
    assert on_test.test is None and on_test.val.indices == splits.test.indices
    with pytest.raises(UserError, match=NO_TEST_SPLIT.split(":")[0]):
        load(train_only, val_split="test")
    shutil.copytree(train_only / "train", tmp_path / "train")
    write_label_files(tmp_path, per_class={"test": 3}, seed=2)
    read = load(tmp_path, test_fraction=0.5)  # test/ wins over the carve
    assert (len(read.train), len(read.val), len(read.test)) == (18, 6, 6)


def test_the_policy_augments_training_images_only_and_pickles(train_only: Path) -> None:
    splits = load(train_only, policy="trivialaugment")
    assert splits.policy_applied and splits.val.dataset is not splits.train.dataset
    copy = pickle.loads(pickle.dumps(splits.train))  # DataLoader workers get the data set this way
    assert copy[0][0].dtype == torch.uint8 and len(copy) == 18


def remove_one_label(root: Path) -> Path:
    label_file = min((root / "train" / "ants_label").iterdir())
    label_file.unlink()
    return label_file


def image_of(label_file: Path) -> Path:
    return next((label_file.parent.parent / "ants_image").glob(f"{label_file.stem}.*"))


def unlabelled_image(root: Path) -> Path:
    return image_of(remove_one_label(root))


def label_without_image(root: Path) -> Path:
    label_file = min((root / "train" / "ants_label").iterdir())
    image_of(label_file).unlink()
    return label_file


def rewritten_label(content: bytes) -> Callable[[Path], Path]:
    def rewrite(root: Path) -> Path:
        label_file = min((root / "train" / "ants_label").iterdir())
        label_file.write_bytes(content)
        return label_file

    return rewrite


def label_that_is_a_folder(root: Path) -> Path:
    label_file = remove_one_label(root)
    label_file.mkdir()
    return label_file


def without(removed: str, partner: str) -> Callable[[Path], Path]:
    def remove(root: Path) -> Path:
        shutil.rmtree(root / "train" / removed)
        return root / "train" / partner

    return remove


def one_class_only(root: Path) -> Path:
    shutil.rmtree(root / "train" / "bees_image")
    shutil.rmtree(root / "train" / "bees_label")
    return root / "train"


def empty_image_folder(root: Path) -> Path:
    for image in (root / "train" / "ants_image").iterdir():
        image.unlink()
    return root / "train" / "ants_image"


def unknown_val_class(root: Path) -> Path:
    write_label_files(root, ("wasps",), {"val": 1})
    return next((root / "val" / "wasps_label").iterdir())


def no_image_folders(root: Path) -> Path:
    for name in ("ants", "bees"):
        (root / "train" / f"{name}_image").rename(root / "train" / name)
        shutil.rmtree(root / "train" / f"{name}_label")
    return root / "train"


def no_train(root: Path) -> Path:
    shutil.rmtree(root / "train")
    return root


@pytest.mark.parametrize(
    ("break_tree", "says"),
    [
        pytest.param(no_train, "no label-file data set at", id="no-train"),
        pytest.param(no_image_folders, "has no <x>_image folders", id="no-image-folders"),
        pytest.param(without("bees_label", "bees_image"), "has no label folder beside it", id="no-label-folder"),
        pytest.param(without("bees_image", "bees_label"), "has no image folder beside it", id="no-image-folder"),
        pytest.param(unlabelled_image, "has no label file", id="image-without-label"),
        pytest.param(label_without_image, "labels no image", id="label-without-image"),
        pytest.param(empty_image_folder, "holds no images", id="label-folder-without-images"),
        pytest.param(rewritten_label(b" \n"), "is empty", id="empty-label"),
        pytest.param(rewritten_label(b"\xff\xfe\x00ants"), "is not a readable UTF-8 text file", id="not-utf8"),
        pytest.param(label_that_is_a_folder, "is not a readable UTF-8 text file", id="label-is-a-folder"),
        pytest.param(rewritten_label(b"ants\nbees\n"), "more than one line", id="two-lines"),
        pytest.param(one_class_only, "a classifier needs at least two", id="one-class"),
        pytest.param(unknown_val_class, "names class 'wasps'", id="val-class-not-in-train"),
    ],
)
def test_each_layout_error_is_one_line_naming_the_file(tmp_path: Path, break_tree, says: str) -> None:
    write_label_files(tmp_path, per_class={"train": 3})
    offending = break_tree(tmp_path)
    with pytest.raises(UserError) as error:
        load(tmp_path)
    message = str(error.value)
    assert says in message and str(offending) in message and "\n" not in message, message


def test_a_path_and_a_size_are_required(train_only: Path) -> None:
    with pytest.raises(UserError, match="dataset.path is not set"):
        load_label_files(None, 0, 0.2, 16, None)
    with pytest.raises(UserError, match="dataset.image_size"):
        load_label_files(str(train_only), 0, 0.2, None, None)
    with pytest.raises(UserError, match="dataset.crop_size=32 is larger"):
        load_label_files(str(train_only), 0, 0.2, 16, 32)


@pytest.mark.slow
def test_train_py_learns_label_files_and_refuses_a_broken_tree(train_here, tmp_path: Path, with_val: Path) -> None:
    overrides = ["dataset=label_files", "dataset.image_size=16", "tracking.log_model=false", *QUIET]
    # the default 2 DataLoader workers; 3 epochs of batches of 4: what it takes to learn the 24 images
    checkpoint = trained(train_here, tmp_path, f"dataset.path={with_val}", "trainer.epochs=3", "dataset.batch_size=4",
                         *overrides)
    assert checkpoint["classes"] == ["ants", "bees"] and checkpoint["input"]["shape"] == [3, 16, 16]
    assert_above_chance(accuracy(tmp_path / "run"), 2)
    broken = tmp_path / "broken"
    write_label_files(broken, per_class={"train": 3})
    offending = unlabelled_image(broken)
    failed = tmp_path / "failed"
    failed.mkdir()
    run_dir = failed / "run"
    result = train_here(f"hydra.run.dir={run_dir}", "dataset=label_files", f"dataset.path={broken}", *overrides,
                        cwd=failed)
    assert_one_line_error(result, str(offending), "has no label file")
    assert not (run_dir / "checkpoints").exists()
