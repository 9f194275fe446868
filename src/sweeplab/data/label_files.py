"""The course notes' practice layout, read as train/val/test splits of uint8 CHW images.

`DIR/<split>/<x>_image/<stem>.jpg` holds the images and `DIR/<split>/<x>_label/<stem>.txt` beside it
each one's class name, as text: the class is what the label file says, not the folder's `<x>`. Classes
are sorted by name and indexed once, from train/, for every split. train/ is required; val/ and test/
are read when present, else carved from train/ as `load_image_folder` carves them. Images and label
files that do not pair up stop the run with one line naming the file; unreadable images are skipped or
refused as in image folders (sweeplab.data.sources.readable_samples).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from sweeplab.core.errors import UserError, first_line
from sweeplab.data.sources import FolderDecoding, FolderImages, Splits, carve_splits, checked_size

IMAGES, LABELS = "_image", "_label"
# What torchvision's ImageFolder reads (torchvision.datasets.folder.IMG_EXTENSIONS); other files are skipped.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
LAYOUT = "expected {root}/train/<x>_image/<stem>.jpg beside {root}/train/<x>_label/<stem>.txt holding its class name"


class LabelledFile(NamedTuple):
    image: Path
    label_file: Path
    name: str  # the class name the label file holds


def load_label_files(
    path: str | None, split_seed: int, val_fraction: float, image_size: int | None, crop_size: int | None,
    policy: str = "none", test_fraction: float = 0.0, val_split: str = "train", cache: object = False,
    cache_dir: str | None = None,
) -> Splits:
    """The splits of `path`, decoded (and kept) as image folders are (sweeplab.data.sources.load_image_folder): a
    fixed size, and the augmentation `policy` on training images only, in the DataLoader workers."""
    root = data_root(path)
    images = FolderDecoding(checked_size(image_size, crop_size), crop_size, cache, cache_dir)
    labelled = read_split(root / "train")
    classes = class_names(labelled, root / "train")

    def given(split: str) -> FolderImages | None:
        folder = root / split
        return images.of(indexed(read_split(folder), classes, root), classes, folder) if folder.is_dir() else None

    plain = images.of(indexed(labelled, classes, root), classes, root / "train")  # for carved splits
    return carve_splits(plain.augmented(policy), plain, given("val"), given("test"), classes, split_seed,
                        val_fraction, test_fraction, val_split)


def data_root(path: str | None) -> Path:
    if not path:  # label_files.yaml's `path: ???` cannot unset the schema's null default
        raise UserError("dataset.path is not set: point it at a label-file data set, e.g. dataset.path=/data/practice")
    root = Path(path).resolve()
    if not (root / "train").is_dir():
        raise UserError(f"no label-file data set at {root}: {LAYOUT.format(root=root)}; point dataset.path at it")
    return root


def read_split(folder: Path) -> list[LabelledFile]:
    """Every image of `folder`'s `<x>_image` folders with its label, in a fixed order (seeded splits rely on it)."""
    return [labelled for images, labels in folder_pairs(folder) for labelled in read_pair(images, labels)]


def folder_pairs(folder: Path) -> list[tuple[Path, Path]]:
    """(`<x>_image`, `<x>_label`) folders of a split, sorted by `<x>`; a folder without its partner is an error."""
    children = [child for child in folder.iterdir() if child.is_dir()]
    images = {child.name.removesuffix(IMAGES): child for child in children if child.name.endswith(IMAGES)}
    labels = {child.name.removesuffix(LABELS): child for child in children if child.name.endswith(LABELS)}
    for stem, label_folder in sorted(labels.items()):
        if stem not in images:
            raise UserError(f"{label_folder} has no image folder beside it: put its images in "
                            f"{folder / (stem + IMAGES)}, or remove {label_folder}")
    for stem, image_folder in sorted(images.items()):
        if stem not in labels:
            raise UserError(f"{image_folder} has no label folder beside it: add {folder / (stem + LABELS)} "
                            "with a <stem>.txt holding each image's class name")
    if not images:
        raise UserError(f"{folder} has no <x>_image folders: {LAYOUT.format(root=folder.parent)}")
    return [(images[stem], labels[stem]) for stem in sorted(images)]


def read_pair(image_folder: Path, label_folder: Path) -> list[LabelledFile]:
    """The images of `image_folder`, each with its class from `label_folder/<stem>.txt`; every file paired."""
    images = sorted(file for file in visible(image_folder)
                    if file.suffix.lower() in IMAGE_EXTENSIONS and file.is_file())
    label_files = {file.stem: file for file in visible(label_folder) if file.suffix.lower() == ".txt"}
    if not images:
        raise UserError(f"{image_folder} holds no images for the label files in {label_folder}: "
                        f"add the images ({', '.join(IMAGE_EXTENSIONS)}), or remove both folders")
    unlabelled = [image for image in images if image.stem not in label_files]
    if unlabelled:
        raise UserError(f"{unlabelled[0]} has no label file{and_more(unlabelled)}: add "
                        f"{label_folder / (unlabelled[0].stem + '.txt')} holding its class name, or remove the image")
    orphans = sorted(label_files.keys() - {image.stem for image in images})
    if orphans:
        raise UserError(f"{label_files[orphans[0]]} labels no image{and_more(orphans)}: add its image to "
                        f"{image_folder}, or remove the label file")
    return [LabelledFile(image, label_files[image.stem], read_label(label_files[image.stem])) for image in images]


def visible(folder: Path) -> list[Path]:
    # Hidden files are skipped: macOS leaves `._<name>.jpg` metadata files beside copied files.
    return [file for file in folder.iterdir() if not file.name.startswith(".")]


def and_more(files: list) -> str:
    return f" (and {len(files) - 1} more in that folder)" if len(files) > 1 else ""


def read_label(label_file: Path) -> str:
    """The one class name a label file holds, surrounding blanks stripped."""
    try:
        text = label_file.read_text(encoding="utf-8-sig").strip()  # -sig: Windows editors start files with a BOM
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{label_file} is not a readable UTF-8 text file ({first_line(error)}): "
                        "replace it with one holding the image's class name") from None
    if not text:
        raise UserError(f"{label_file} is empty: write the image's class name in it")
    if len(text.splitlines()) > 1:
        raise UserError(f"{label_file} holds more than one line: leave just the image's class name in it")
    return text


def class_names(labelled: list[LabelledFile], folder: Path) -> list[str]:
    classes = sorted({sample.name for sample in labelled})
    if len(classes) < 2:
        raise UserError(f"the label files in {folder} name one class only ({classes[0]!r}) and a classifier needs "
                        "at least two: add images and label files of another class")
    return classes


def indexed(labelled: list[LabelledFile], classes: list[str], root: Path) -> list[tuple[str, int]]:
    """(image path, class index) with the training classes' indices; a class train/ lacks is an error."""
    index = {name: i for i, name in enumerate(classes)}
    for sample in labelled:
        if sample.name not in index:
            raise UserError(f"{sample.label_file} names class {sample.name!r}, which no label file in {root}/train "
                            f"names (classes: {', '.join(classes)}): fix the label, or add training images of it")
    return [(str(sample.image), index[sample.name]) for sample in labelled]
