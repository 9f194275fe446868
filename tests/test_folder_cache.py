"""Image folders decoded once: the cache changes no batch, a second run opens no image it opened before, and a
cache that is not whole is rebuilt with one warning (sweeplab.data.folder_cache)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from sweeplab.cli.main import main
from sweeplab.data import folder_cache, sources
from sweeplab.data.batches import LoaderBatches, make_batches
from sweeplab.data.folder_cache import DECODED, HEADERS, cache_entries
from sweeplab.data.label_files import load_label_files
from sweeplab.data.sources import load_image_folder

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def fresh_cache_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """No test reads another's caches, nor the user's; cache_folder says its fallback once per process."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    folder_cache.cache_folder.cache_clear()
    yield
    folder_cache.cache_folder.cache_clear()


def folder_splits(data_dir: Path, cache_dir: Path, cache: object = True, policy: str = "trivialaugment"):
    return load_image_folder(str(data_dir / "hymenoptera_data"), 0, 0.2, image_size=20, crop_size=16, policy=policy,
                             cache=cache, cache_dir=str(cache_dir))


def epochs(splits, epochs: int = 2, workers: int = 2) -> list[torch.Tensor]:
    """Every training batch (images and labels) of `epochs` epochs, then the validation images."""
    train = make_batches(splits.train, 8, True, CPU, 0, workers)
    val = make_batches(splits.val, 8, False, CPU, 0, workers)
    batches = []
    for _ in range(epochs):
        batches += [torch.cat([images.flatten(), labels]) for images, labels in train]
        batches += [images for images, _ in val]
    return batches


def decoded_files(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob(f"{DECODED}*.u8"))


def test_the_cache_changes_no_batch_and_later_runs_read_it_whole(data_dir: Path, tmp_path: Path) -> None:
    """Workers fill it in the first epochs; a later run reads every image back: the batches are those of no cache,
    policy augmentation and all (each image's transform is seeded by the order, not by where it was decoded)."""
    expected = epochs(folder_splits(data_dir, tmp_path / "none", cache=False))
    assert not (tmp_path / "none").glob(f"{DECODED}*") or not decoded_files(tmp_path / "none")
    filling = folder_splits(data_dir, tmp_path / "cache")
    assert all(torch.equal(a, b) for a, b in zip(epochs(filling), expected, strict=True))
    assert len(decoded_files(tmp_path / "cache")) == 2  # train/ and val/, each complete and renamed into place
    assert not list((tmp_path / "cache").glob("*.partial"))
    reading = folder_splits(data_dir, tmp_path / "cache")
    assert reading.train.cache is not None and not reading.train.cache.writing
    assert all(torch.equal(a, b) for a, b in zip(epochs(reading), expected, strict=True))


def test_a_second_run_opens_no_image(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Header checks and decoding both come from the caches: counted on PIL's open, the one door to the files."""
    epochs(folder_splits(data_dir, tmp_path, policy="none"), workers=0)
    opened = []
    real_open = sources.Image.open
    monkeypatch.setattr(sources.Image, "open", lambda path, *args: opened.append(path) or real_open(path, *args))
    epochs(folder_splits(data_dir, tmp_path, policy="none"), epochs=1, workers=0)
    assert opened == []
    assert len(list(tmp_path.glob(f"{HEADERS}*.json"))) == 2


@pytest.mark.parametrize("damage", ["magic", "truncated", "unwritten"])
def test_a_damaged_cache_is_rebuilt_with_one_warning(data_dir: Path, tmp_path: Path, damage: str, caplog) -> None:
    expected = epochs(folder_splits(data_dir, tmp_path, policy="none"), workers=0)
    train_file = max(decoded_files(tmp_path), key=lambda path: path.stat().st_size)
    data = bytearray(train_file.read_bytes())
    if damage == "magic":
        data[:8] = b"NOTMAGIC"
    elif damage == "truncated":
        data = data[:-100]
    else:
        data[folder_cache.HEADER_BYTES] = 0  # the first image's 'filled' byte
    train_file.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="sweeplab"):
        rebuilt = folder_splits(data_dir, tmp_path, policy="none")
    warnings = [record.message for record in caplog.records if "is damaged" in record.message]
    assert len(warnings) == 1 and train_file.name in warnings[0]
    assert all(torch.equal(a, b) for a, b in zip(epochs(rebuilt, workers=0), expected, strict=True))
    assert folder_cache.damage_of(train_file) is None


def test_an_unfinished_cache_left_by_a_killed_run_is_started_again(data_dir: Path, tmp_path: Path) -> None:
    splits = folder_splits(data_dir, tmp_path, policy="none")
    train = LoaderBatches(splits.train, 8, True, CPU, 0, 0)
    next(iter(train))  # one batch decoded, then the run is gone
    states = {entry.path.name: entry.state for entry in cache_entries(tmp_path)}
    partial = splits.train.cache.path.name + ".partial"
    assert states[partial] == "being filled"
    for cache in (splits.train.cache, splits.val.cache):
        cache.lock.close()  # what the killed process's exit does
    assert {entry.path.name: entry.state for entry in cache_entries(tmp_path)}[partial] == "left unfinished"
    again = folder_splits(data_dir, tmp_path, policy="none")
    assert again.train.cache.writing
    epochs(again, workers=0)
    assert [entry.state for entry in cache_entries(tmp_path) if entry.path.name.startswith(DECODED)] == ["complete"] * 2


def test_auto_caches_only_what_fits_the_disk_twice(data_dir: Path, tmp_path: Path, monkeypatch, caplog) -> None:
    usage = folder_cache.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(folder_cache.shutil, "disk_usage", lambda path: usage._replace(free=20_000))
    with caplog.at_level(logging.INFO, logger="sweeplab"):
        splits = folder_splits(data_dir, tmp_path, cache="auto")
    assert splits.train.cache is None and "dataset.cache=true caches anyway" in caplog.text
    assert folder_splits(data_dir, tmp_path, cache=True).train.cache is not None


def test_an_unwritable_cache_dir_falls_back_to_the_user_cache_dir(data_dir: Path, tmp_path: Path, caplog) -> None:
    (tmp_path / "a-file").write_text("")
    with caplog.at_level(logging.INFO, logger="sweeplab"):
        splits = folder_splits(data_dir, tmp_path / "a-file" / "cache")
    assert splits.train.cache.path.parent == tmp_path / "user-cache" / "sweeplab"
    assert caplog.text.count("cannot be written") == 1


def test_label_files_are_cached_too(tmp_path: Path) -> None:
    from data_formats import write_label_files

    root = write_label_files(tmp_path / "practice")
    load = lambda: load_label_files(str(root), 0, 0.2, 16, None, cache=True, cache_dir=str(tmp_path / "c"))  # noqa: E731
    expected = epochs(load(), workers=0)
    assert all(torch.equal(a, b) for a, b in zip(epochs(load(), workers=0), expected, strict=True))
    assert len(decoded_files(tmp_path / "c")) == 2


def test_sweeplab_cache_lists_and_removes(data_dir: Path, tmp_path: Path, capsys) -> None:
    epochs(folder_splits(data_dir, tmp_path, policy="none"), workers=0)
    assert main(["cache", "--dir", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    assert "complete" in listed and "24 images of" in listed and "MiB in all" in listed
    with pytest.raises(SystemExit) as refused:
        main(["cache", "--dir", str(tmp_path), "--remove", "nothing-such"])
    assert refused.value.code != 0
    assert "no cache named nothing-such" in capsys.readouterr().err
    assert main(["cache", "--dir", str(tmp_path), "--remove", "all"]) == 0
    assert "removed 4 cache file(s)" in capsys.readouterr().out and cache_entries(tmp_path) == []


def test_no_room_for_the_cache_is_one_warning_and_the_images_are_decoded(data_dir: Path, tmp_path: Path, small_disk,
                                                                          caplog) -> None:
    """The cache's space is claimed when it is made: a full disk is found there, not by a worker writing the map."""
    with caplog.at_level(logging.WARNING, logger="sweeplab"):
        splits = load_image_folder(str(data_dir / "hymenoptera_data"), 0, 0.2, image_size=64, crop_size=None,
                                   cache=True, cache_dir=str(tmp_path))
    assert splits.train.cache is None and "is not cached" in caplog.text
    assert not list(tmp_path.glob(f"{DECODED}*.partial"))
    assert len(epochs(splits, epochs=1, workers=0)) == 5  # 3 training batches of 8 and 2 validation batches
