"""What sweeplab keeps about an image folder between epochs, jobs and runs: each image decoded once, and the
header check's findings.

A decode cache is one file per split folder, named by a digest of the folder's listing (paths, sizes,
mtimes), the decode settings and the format version:

    header (HEADER_BYTES: magic, version, count, shape, a JSON description) | a 'filled' byte per image | images

The images are the decoder's fixed-size uint8 CHW output, so reading one back is bit for bit what decoding
it gives. Whoever decodes an image first writes it, then its byte: epoch 1's DataLoader workers, each
opening the file by its path (a memory map pickled into a spawned worker would be copied whole). The one
process holding the file's lock fills it as `<name>.partial` and renames it into place once every image is
in; a file that is not whole when opened is rebuilt, with one warning.

The header check (every image opened far enough to read its header, sweeplab.data.sources.image_problem)
is kept as `headers-<digest of the raw listing>.json`: a second run over the same files opens none of them.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch

from sweeplab.core.atomic import write_text_atomically
from sweeplab.core.errors import UserError

log = logging.getLogger(__name__)

MAGIC = b"SWLIMAGE"
VERSION = 1
HEADER_BYTES = 4096
FIXED = struct.Struct("<8sIQIII")  # magic, version, image count, channels, height, width
PAGE = 4096
DECODED, HEADERS = "decoded-", "headers-"
ROOM_TO_SPARE = 2  # dataset.cache=auto: cache only when the free disk holds twice what the cache needs
CACHE_MODES = ("auto", True, False)


def listing_digest(samples: list[tuple[str, int]], *settings: object) -> str:
    """A digest of the files (path, size, mtime, label) and of `settings`: any change to either names another file."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(f"{VERSION}\0{settings}\n".encode())
    for path, label in samples:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0{label}\n".encode())
    return digest.hexdigest()


@functools.cache
def cache_folder(wanted: str) -> Path | None:
    """`wanted` (paths.cache_dir) when it can be written, else the user's cache dir, said once; None: neither."""
    for folder in (Path(wanted), user_cache_dir()):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            if folder != Path(wanted):
                log.info(f"paths.cache_dir={wanted} cannot be written: image folder caches go to {folder}")
            return folder
    log.warning(f"neither paths.cache_dir={wanted} nor {user_cache_dir()} can be written: image folders are not "
                "cached (set paths.cache_dir to a writable folder)")
    return None


def user_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sweeplab"


def known_problems(folder: Path | None, samples: list[tuple[str, int]], check) -> dict[str, str]:
    """`check(path)` (a problem or None) for every sample, read from the folder's kept findings when it has them."""
    kept = folder / f"{HEADERS}{listing_digest(samples)}.json" if folder else None
    if kept and kept.is_file():
        try:
            found = json.loads(kept.read_text())
            if isinstance(found, dict):
                return found
        except (OSError, ValueError):
            pass
        log.warning(f"{kept} is damaged: checking the images' headers again")
    problems = {path: problem for path, _ in samples if (problem := check(path))}
    if kept:
        try:
            write_text_atomically(kept, json.dumps(problems))
        except UserError as error:  # a full disk: the check is kept next time
            log.warning(f"{error}; the next run checks the images' headers again")
    return problems


@dataclass(frozen=True)
class Layout:
    """Where a cache file's parts start, for `count` images of `shape`."""

    count: int
    shape: tuple[int, int, int]

    @property
    def images_at(self) -> int:
        return HEADER_BYTES + -(-self.count // PAGE) * PAGE

    @property
    def size(self) -> int:
        return self.images_at + self.count * int(np.prod(self.shape))


class DecodeCache:
    """One split folder's decoded images in one file; `read(i)` is None until someone `write`s image i.

    Picklable into DataLoader workers: each process maps the file itself, by path, when it first reads.
    """

    def __init__(self, path: Path, layout: Layout, writing: bool, lock: IO | None = None):
        self.path = path
        self.layout = layout
        self.writing = writing  # filling `<path>.partial`, until finish() renames it to `path`
        self.lock = lock
        self.maps: tuple[np.ndarray, np.ndarray] | None = None
        self.mapped_in: int | None = None  # the process that mapped them

    def __getstate__(self) -> dict:
        return {**self.__dict__, "lock": None, "maps": None, "mapped_in": None}

    @property
    def file(self) -> Path:
        return partial_path(self.path) if self.writing else self.path

    def mapped(self) -> tuple[np.ndarray, np.ndarray]:
        if self.maps is None or self.mapped_in != os.getpid():
            if self.writing and not self.file.exists() and self.path.exists():
                self.writing = False  # a worker copied before the filling process renamed it into place
            mode = "r+" if self.writing else "r"
            count, shape = self.layout.count, self.layout.shape
            filled = np.memmap(self.file, np.uint8, mode, HEADER_BYTES, (count,))
            images = np.memmap(self.file, np.uint8, mode, self.layout.images_at, (count, *shape))
            self.maps, self.mapped_in = (filled, images), os.getpid()
        return self.maps

    def read(self, index: int) -> torch.Tensor | None:
        filled, images = self.mapped()
        return torch.from_numpy(np.array(images[index])) if filled[index] else None

    def write(self, index: int, image: torch.Tensor) -> None:
        if not self.writing:
            return
        filled, images = self.mapped()
        images[index] = image.numpy()
        filled[index] = 1  # after the image: a reader never takes a half-written one

    def finish(self) -> bool:
        """Rename a filled cache into place (the main process, after an epoch); True once it is complete."""
        if not self.writing:
            return True
        filled, images = self.mapped()
        if not filled.all():
            return False
        images.flush()
        filled.flush()
        os.replace(partial_path(self.path), self.path)
        self.writing, self.maps = False, None
        if self.lock:
            self.lock.close()
            lock_path(self.path).unlink(missing_ok=True)
        log.info(f"image folder decoded once, kept in {self.path}: later epochs and runs read it from there")
        return True


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def open_decode_cache(mode: object, folder: Path | None, samples: list[tuple[str, int]], shape: tuple[int, int, int],
                      description: dict) -> DecodeCache | None:
    """The complete cache of these images decoded this way, or a new one to fill; None: decode as they come."""
    if mode is False or folder is None or not samples:
        return None
    layout = Layout(len(samples), shape)
    path = folder / f"{DECODED}{listing_digest(samples, shape, sorted(description.items()))}.u8"
    if path.is_file():
        damage = damage_of(path, layout)
        if damage is None:
            return DecodeCache(path, layout, writing=False)
        log.warning(f"the image cache {path} is damaged ({damage}): decoding the images again to rebuild it")
        path.unlink(missing_ok=True)
    if mode == "auto" and not fits(folder, layout.size, description["folder"]):
        return None
    lock = lock_path(path).open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # another run is filling it: this one decodes for itself meanwhile
        lock.close()
        return None
    try:
        start_file(partial_path(path), layout, description)
    except OSError as error:  # no room: a full disk met later, by a worker writing into the map, would kill it
        partial_path(path).unlink(missing_ok=True)
        lock.close()
        log.warning(f"{description['folder']} is not cached: {path} could not be made ({error.strerror}); "
                    "free space there, or set paths.cache_dir to another disk")
        return None
    return DecodeCache(path, layout, writing=True, lock=lock)


def fits(folder: Path, size: int, images_folder: str) -> bool:
    free = shutil.disk_usage(folder).free
    if size * ROOM_TO_SPARE <= free:
        return True
    log.info(f"{images_folder} is not cached: its decoded images take {size / 2**30:.1f} GiB and {folder} has "
             f"{free / 2**30:.1f} GiB free (dataset.cache=auto keeps twice that free); dataset.cache=true caches "
             "anyway, paths.cache_dir=... puts it on another disk")
    return False


def start_file(path: Path, layout: Layout, description: dict) -> None:
    described = json.dumps({**description, "images": layout.count, "shape": list(layout.shape)}).encode()
    header = FIXED.pack(MAGIC, VERSION, layout.count, *layout.shape) + described[: HEADER_BYTES - FIXED.size]
    with path.open("wb") as file:
        file.write(header)
        os.posix_fallocate(file.fileno(), 0, layout.size)  # the space, claimed now: ENOSPC here, not in a worker


def damage_of(path: Path, layout: Layout | None = None) -> str | None:
    """Why the cache file at `path` cannot be read (for `layout`, when given); None if it is whole."""
    try:
        with path.open("rb") as file:
            fixed = file.read(FIXED.size)
        magic, version, count, *shape = FIXED.unpack(fixed)
    except (OSError, struct.error) as error:
        return f"unreadable: {error}"
    if (magic, version) != (MAGIC, VERSION):
        return "not a sweeplab image cache of this version"
    found = Layout(count, tuple(shape))  # type: ignore[arg-type]
    if layout is not None and found != layout:
        return f"{count} images of {shape}, not {layout.count} of {list(layout.shape)}"
    if path.stat().st_size != found.size:
        return f"{path.stat().st_size} bytes, not {found.size}"
    if not np.memmap(path, np.uint8, "r", HEADER_BYTES, (count,)).all():
        return "some images were never written"
    return None


def description_of(path: Path) -> dict:
    """The JSON description a cache file's header holds (the folder, its settings, images, shape)."""
    with path.open("rb") as file:
        text = file.read(HEADER_BYTES)[FIXED.size:].rstrip(b"\0")
    try:
        return json.loads(text)
    except ValueError:
        return {}


@dataclass(frozen=True)
class CacheEntry:
    """A file `sweeplab cache` lists: decoded images (complete, being filled or damaged) or a header check."""

    path: Path
    what: str
    state: str

    @property
    def size(self) -> int:
        return self.path.stat().st_blocks * 512  # what it takes on disk


def cache_entries(folder: Path) -> list[CacheEntry]:
    entries = []
    for path in sorted(folder.glob(f"{DECODED}*")) if folder.is_dir() else []:
        if path.suffix == ".lock":
            continue
        final = path.with_suffix("") if path.suffix == ".partial" else path
        described = description_of(path)
        what = (f"{described.get('images', '?')} images of {described.get('folder', '?')} at "
                f"{'x'.join(map(str, described.get('shape', [])))}")
        if path.suffix == ".partial":
            state = "being filled" if is_locked(lock_path(final)) else "left unfinished"
        else:
            state = "damaged: " + damage if (damage := damage_of(path)) else "complete"
        entries.append(CacheEntry(path, what, state))
    for path in sorted(folder.glob(f"{HEADERS}*.json")) if folder.is_dir() else []:
        entries.append(CacheEntry(path, "image header check", "complete"))
    return entries


def is_locked(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        with path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False
