"""Files written whole or not at all: a temporary file beside the target, flushed to disk, renamed over it.

A crash (SIGKILL, a full disk, a power cut) mid-write leaves the previous version in place, never half of a new
one. Every file sweeplab writes into a run dir goes through here (Hydra's own `.hydra/` and the logs aside).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from sweeplab.core.errors import UserError, first_line


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(temporary)`, then rename the temporary file to `path`; a failed write (a full disk) is one line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    try:
        write(temporary)
        flush_to_disk(temporary)
        os.replace(temporary, path)
    except OSError as error:
        raise UserError(could_not_write(path, error)) from None
    finally:
        temporary.unlink(missing_ok=True)  # only left over when writing failed


def could_not_write(path: Path, error: BaseException, then: str = "try again") -> str:
    kept = f"the previous {path.name} is intact" if path.is_file() else f"no {path.name} was written yet"
    return (f"could not write {path} ({first_line(error)}): is the disk full? Free space under {path.parent} and "
            f"{then} ({kept})")


def flush_to_disk(path: Path) -> None:
    """Its bytes on the disk before it is renamed in: a rename can reach the disk before the data it names."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_text_atomically(path: Path, text: str) -> None:
    write_atomically(path, lambda temporary: temporary.write_text(text))
