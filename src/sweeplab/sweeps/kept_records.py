"""A job's records when its recorder is gone (killed, out of memory, stopped, or not answering a stop in time).

What the job asked of it that needs nothing but files (its result.json, the checkpoints keep_checkpoints discards)
is done in this process; MLflow's records are kept in the run dir's pending file (sweeplab.tracking.pending),
which the run delivers when it resumes. One line a run dir says so, and how.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sweeplab.recorder import Recorder
from sweeplab.recorder.calls import RecorderGone
from sweeplab.recorder.remote import RUN_CALLS, Remote
from sweeplab.runs.results import write_result
from sweeplab.sweeps.retention import discard_checkpoints
from sweeplab.tracking.pending import keep_pending, undelivered_records
from sweeplab.tracking.per_image import write_test_split

DONE_HERE = {Remote.WRITE_RESULT: write_result, Remote.DISCARD_CHECKPOINTS: discard_checkpoints,
             Remote.LOG_TEST_PREDICTIONS: write_test_split}


def keep_undelivered(recorder: Recorder, how_to_deliver: Callable[[str], str]) -> list[RecorderGone]:
    """Every call about a run the recorder never answered, by run dir: done here or kept."""
    calls: dict[str, list[tuple[Remote, tuple]]] = {}
    for call in recorder.undelivered():
        if call.target in RUN_CALLS:  # a sweep's own records are written again at its end
            calls.setdefault(call.args[0], []).append((call.target, call.args))
    said = []
    for run_dir, made in calls.items():
        for target, args in made:
            if target in DONE_HERE:
                DONE_HERE[target](*args)
        records = undelivered_records(made)
        uri = records.pop("uri", None)
        if not any(records.values()):  # only files, done here
            continue
        path = keep_pending(Path(run_dir), uri=uri, **records)
        said.append(RecorderGone(f"{recorder.lost}: {len(records['metrics'])} metrics and "
                                 f"{len(records['artifacts'])} artifacts of {run_dir} kept in {path}; deliver them "
                                 f"with {how_to_deliver(run_dir)} (a finished run trains no further)"))
    return said
