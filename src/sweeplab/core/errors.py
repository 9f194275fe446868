"""The one exception type for mistakes a user can fix: reported as one line, never a traceback."""

from __future__ import annotations

import functools
import re
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from sweeplab.core.masking import masked_text
from sweeplab.core.ranks import launched

F = TypeVar("F", bound=Callable)
FOLLOWER_GRACE_SECONDS = 5  # torchrun stops every rank within 0.1 s of one exiting


class UserError(Exception):
    """Something the user can fix (a bad value, a missing file); the message says how."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type name when it has none), to quote in one line."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def typed_line(error: BaseException, limit: int = 500) -> str:
    """`Type: first line` for a run's record, where the type says what kind of failure it was."""
    return f"{type(error).__name__}: {first_line(error)}"[:limit]


def config_error_line(error: BaseException) -> str:
    """Hydra's composition error in one line: its message, its cause's, and the options it lists."""
    text = str(error).strip()
    parts = [first_line(error)]
    if error.__cause__ is not None and str(error.__cause__).strip():
        parts.append(first_line(error.__cause__))
    listed = re.search(r"Available options in '[^']*':\n(.*?)(?:\nConfig search path|\Z)", text, re.S)
    if listed:
        options = [option.strip() for option in listed.group(1).splitlines() if option.strip()]
        parts.append(f"choose one of {', '.join(options)}")
    return ": ".join(parts)


def exit_on_user_error(func: F) -> F:
    """Turn a UserError into one line on stderr and exit code 2; bugs keep their traceback.

    Under torchrun every rank meets a config's mistakes, and rank 0 says them: another rank says its error only
    if it is still running a few seconds later, when it met it alone (a bad image in its slice of the data).
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UserError as error:
            ranks, said = launched(), "error"
            if ranks and not ranks.main:
                time.sleep(FOLLOWER_GRACE_SECONDS)
                said = f"error on rank {ranks.rank}"
            print(f"{said}: {masked_text(str(error))}", file=sys.stderr)  # a URI's credentials, a typed secret
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
