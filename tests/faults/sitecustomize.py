"""Test-only fault injection: SIGKILL a run at a named moment, as a preempted machine would.

`SWEEPLAB_KILL_AT` (JSON) names the moment: {"process": "train", "call": "module:Qualified.name",
"nth": 3, "when": "before"} kills the run when the 3rd call of that function in the training process
("recorder": in the recorder) starts ("after": once it has returned). Every Python process of the
run imports this file as its sitecustomize (tests put this folder on PYTHONPATH); the kill takes the
training process and the recorder together, and nothing cleans up.

Under torchrun, "rank": 1 counts the calls of that rank only, and "error": "..." raises a UserError
with that message there instead of killing: one rank's own trouble (a bad image in its shard).
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import json
import os
import signal
import sys

SPEC = json.loads(os.environ.get("SWEEPLAB_KILL_AT") or "null")
TRAINER = "SWEEPLAB_KILL_TRAINER_PID"  # set by the first process of the run; its children inherit it


def this_process() -> str:
    return "recorder" if sys.argv and sys.argv[0].replace(os.sep, "/").endswith("sweeplab/recorder/__main__.py") \
        else "train"


def kill_the_run() -> None:
    if "error" in SPEC:
        from sweeplab.core.errors import UserError

        raise UserError(SPEC["error"])
    os.kill(int(os.environ[TRAINER]), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


class Countdown:
    def __init__(self, nth: int):
        self.left = nth

    def reached(self) -> bool:
        if this_process() != SPEC["process"] or os.environ.get("RANK", "0") != str(SPEC.get("rank", "0")):
            return False
        self.left -= 1
        return self.left == 0


def killing(function, countdown: Countdown, when: str):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if when == "before" and countdown.reached():
            kill_the_run()
        value = function(*args, **kwargs)
        if when == "after" and countdown.reached():
            kill_the_run()
        return value

    return wrapper


class PatchOnImport(importlib.abc.MetaPathFinder):
    """Wraps the named function as its module is first imported, before anyone imports the name from it."""

    def __init__(self, target: str, countdown: Countdown, when: str):
        self.module, self.qualname = target.split(":")
        self.countdown, self.when = countdown, when

    def find_spec(self, name, path, target=None):
        if name != self.module:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            *owners, attribute = self.qualname.split(".")
            owner = functools.reduce(getattr, owners, module)
            setattr(owner, attribute, killing(getattr(owner, attribute), self.countdown, self.when))

        spec.loader.exec_module = exec_module
        return spec


if SPEC:
    os.environ.setdefault(TRAINER, str(os.getpid()))
    sys.meta_path.insert(0, PatchOnImport(SPEC["call"], Countdown(SPEC["nth"]), SPEC.get("when", "before")))
