"""Where the time of one `python train.py` goes: a timeline of both processes, the trainer and the recorder.

    python benchmarks/timeline.py [hydra overrides...]        # e.g. trainer.progress=false

Runs train.py's own entry point in this process with a stopwatch on the stages (imports, data,
model, epochs, the record, the export, the wait, the exit) and on every call the recorder process
answers: the recorder is a fresh interpreter, which gets the same stopwatch through a
sitecustomize module put on its PYTHONPATH. Nothing in sweeplab is changed: the stages are its own
functions, wrapped. Prints one line per event, in seconds since the command started.
"""

from __future__ import annotations

import atexit
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

START = float(os.environ.setdefault("TIMELINE_START", str(time.time())))
CHILD = __name__ != "__main__"
SITE = Path(tempfile.mkdtemp(prefix="timeline-")) if not CHILD else None


def stamp(what: str, started: float | None = None) -> None:
    now = time.time() - START
    span = f"{started - START:6.2f} -> " if started is not None else " " * 10
    print(f"[{'recorder' if CHILD else 'trainer '}] {span}{now:6.2f}  {what}", file=sys.stderr, flush=True)


def timed(owner, name: str, label: str | None = None) -> None:
    function = getattr(owner, name)

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        started = time.time()
        try:
            return function(*args, **kwargs)
        finally:
            stamp(label or name, started)

    setattr(owner, name, wrapper)


def watch_recorder() -> None:
    from sweeplab.recorder import process

    def answer(target, args, original=process._answer):
        started = time.time()
        try:
            return original(target, args)
        finally:
            stamp(target.rpartition(":")[2], started)

    process._answer = answer
    timed(process, "warm", "warm-up")


def watch_trainer() -> None:
    import sweeplab.recorder as recorder
    from sweeplab.recorder import process

    stamp("sweeplab's entry point imported")
    import sweeplab.sweeps.hydra_callbacks as callbacks

    timed(callbacks, "check_sweep", "check the sweep's config")
    timed(callbacks, "export_best_job", "export the sweep's best job")
    timed(callbacks.SweepRecord, "on_multirun_start", "the sweep's MLflow parent run asked for")
    timed(recorder.ProcessRecorder, "for_job", "a job starts (its recorder)")
    timed(callbacks.SweepRecord, "on_job_end", "a job's end (its summary asked for)")
    timed(callbacks.SweepRecord, "on_multirun_end", "the sweep's end: record, export, parent run")
    timed(callbacks.SweepGuard, "on_multirun_end", "the sweep's table")
    timed(process.Recorder, "wait", "wait for the recorder")
    timed(process.Recorder, "close", "close the recorder")
    atexit.register(stamp, "interpreter exit starts")


def watch_train_module() -> None:
    import sweeplab.task.train as train
    from sweeplab.training.engine import Trainer

    stamp("imported sweeplab.task.train (torch)")
    for name in ("build_data", "build_model", "build_trainer", "record_results", "export_best"):
        timed(train, name)
    timed(Trainer, "fit", "fit (every epoch)")


def watch_deferred_import(module_name: str, then) -> None:
    """Call `then()` once `module_name` is first imported (train.py imports sweeplab.task.train, and torch, late)."""
    import builtins

    real_import = builtins.__import__

    def hooked(name, *args, **kwargs):
        module = real_import(name, *args, **kwargs)
        if name == module_name and builtins.__import__ is hooked:
            builtins.__import__ = real_import
            then()
        return module

    builtins.__import__ = hooked


def instrument_recorder_processes() -> None:
    """Every Python started from here imports this script first; only the recorder process installs its watch."""
    (SITE / "sitecustomize.py").write_text(
        "import sys\n"
        "if 'sweeplab.recorder' in sys.orig_argv:\n"
        f"    sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "    import timeline\n"
    )
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")]))


if CHILD:
    watch_recorder()

if __name__ == "__main__":
    stamp("interpreter up")
    instrument_recorder_processes()
    watch_trainer()
    watch_deferred_import("sweeplab.task.train", watch_train_module)
    from sweeplab.cli.train import main

    main()
