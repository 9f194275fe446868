"""Calls to the recorder, and their answers: what the training process holds while the recorder works.

`Inline` is the recorder's interface for runs with nothing to do in the background: calls run here, at once.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

from sweeplab.core.errors import UserError
from sweeplab.recorder.remote import Remote

NOT_YET = object()


class Answers(Protocol):
    def wait_for(self, call: Call | None) -> None: ...


class RemoteTraceback(Exception):
    """The recorder's traceback, attached as the cause of an error re-raised in the training process."""


class RecorderGone(UserError):
    """The recorder process died or stopped answering: what it had not done is kept by the run (its pending file),
    delivered when the run resumes."""


class Call:
    """A submitted call: its value or error once the recorder answered."""

    def __init__(self, owner: Answers, target: Remote, args: tuple = ()):
        self.owner = owner
        self.target = target
        self.args = args  # kept until answered: what a run keeps for later if the recorder is gone
        self.value: Any = NOT_YET
        self.error: BaseException | None = None
        self.seen = False  # its error was raised to someone: wait() does not raise it again

    def result(self) -> Any:
        self.owner.wait_for(self)
        self.seen = True
        if self.error is not None:
            raise self.error
        return self.value


class Inline:
    """The recorder's interface, run in this process: for runs with no tracking and no export."""

    lost: str | None = None  # never: it is this process

    def __init__(self) -> None:
        self.failed: list[Call] = []

    def submit(self, target: Remote, *args: Any) -> Call:
        call = Call(self, target, args)
        try:
            call.value = resolve(target)(*args)
        except Exception as error:
            call.error = error
            self.failed.append(call)
        return call

    def busy(self) -> bool:
        return False

    def wait_for(self, call: Call | None) -> None:
        """Inline calls are done when submitted."""

    def wait(self, raise_errors: bool = True, timeout: float | None = None) -> list[BaseException]:
        return unseen_errors(self.failed, raise_errors)

    def undelivered(self) -> list[Call]:
        return []

    def close(self) -> None:
        self.wait()


def unseen_errors(failed: list[Call], raise_errors: bool) -> list[BaseException]:
    """The errors nobody has seen yet; raised, the first that is a call's own (the recorder being gone is not the
    run's failure: the run keeps what it could not record, sweeplab.sweeps.kept_records)."""
    unseen = [call for call in failed if not call.seen]
    for call in unseen:
        call.seen = True
    failed.clear()
    own = [call for call in unseen if not isinstance(call.error, RecorderGone)]
    if own and raise_errors:
        raise own[0].error  # type: ignore[misc]
    return [call.error for call in unseen]  # type: ignore[misc]


def resolve(target: Remote) -> Callable:
    """A table entry -> its function (imported now); nothing outside the table is ever called."""
    target = Remote(target)
    return getattr(importlib.import_module(target.module), target.function)


