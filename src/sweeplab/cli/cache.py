"""`sweeplab cache [--dir DIR] [--remove NAME... | all]`: the image folder caches, their sizes, removing them."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sweeplab.config.schema import PathsConfig
from sweeplab.core.errors import UserError
from sweeplab.core.vocabulary import CACHE_DIR

DEFAULT_DIR = Path(PathsConfig.data_dir) / CACHE_DIR  # paths.cache_dir for the default paths.data_dir


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cache",
        help="list the image folder caches (decoded images, header checks) with their sizes, or remove them",
        description=__doc__.splitlines()[0] + " Removing a cache loses nothing: the next run decodes again.",
    )
    parser.add_argument("--dir", type=Path, action="append", dest="dirs", metavar="DIR",
                        help=f"paths.cache_dir to look in (default: {DEFAULT_DIR} and the user cache dir)")
    parser.add_argument("--remove", nargs="+", metavar="NAME", help="remove these files (names as listed), or all")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from sweeplab.data.folder_cache import cache_entries, user_cache_dir

    folders = args.dirs or [DEFAULT_DIR, user_cache_dir()]
    entries = [entry for folder in folders for entry in cache_entries(folder)]
    if args.remove:
        return remove(entries, args.remove)
    if not entries:
        print(f"no image folder caches in {', '.join(map(str, folders))}")
        return 0
    table = Table(title=f"image folder caches in {', '.join(map(str, folders))}")
    table.add_column("name", no_wrap=True)  # what --remove takes
    for column in ("holds", "state", "size"):
        table.add_column(column)
    for entry in entries:
        table.add_row(entry.path.name, entry.what, entry.state, f"{entry.size / 2**20:,.1f} MiB")
    Console().print(table)
    print(f"{sum(entry.size for entry in entries) / 2**20:,.1f} MiB in all; "
          "`sweeplab cache --remove all` (or names) removes them")
    return 0


def remove(entries: list, names: list[str]) -> int:
    chosen = entries if names == ["all"] else [entry for entry in entries if entry.path.name in names]
    unknown = sorted(set(names) - {entry.path.name for entry in entries} - {"all"})
    if unknown:
        raise UserError(f"no cache named {unknown[0]} here: `sweeplab cache` lists them (pass --dir for another "
                        "paths.cache_dir)")
    busy = [entry for entry in chosen if entry.state == "being filled"]
    removed = [entry for entry in chosen if entry not in busy]
    freed = sum(entry.size for entry in removed)
    for entry in removed:
        entry.path.unlink(missing_ok=True)
    print(f"removed {len(removed)} cache file(s), {freed / 2**20:,.1f} MiB"
          + (f"; kept {len(busy)} that a running job is filling" if busy else ""))
    return 0
