"""The recorder: a child process that does the work a run needs no torch for, while the run trains.

MLflow, matplotlib and onnxruntime take seconds to import, and their work (the store, figures, the
export check, model logging) would otherwise queue behind training in one interpreter. The
recorder does it beside training: it imports them while the training process imports torch, and
takes calls, in order, while the epochs run. A call names its function by its entry in remote.py's
table and passes plain values, so the training process never imports those modules (the boundary is
listed in docs/architecture.md). `submit` returns at once; `Call.result()` and `wait()` block, and
re-raise the recorder's errors here with its traceback as their cause.

Ctrl-C reaches only the training process (the recorder runs in its own session), which then tells
the recorder how the run ended and waits for it. A training process that dies (SIGKILL) takes the
recorder with it. Nothing outlives the command.
`Inline` has the same interface for runs with nothing to do in the background: calls run at once.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sweeplab.core.hydra_job import HydraJob
from sweeplab.recorder.calls import Call, Inline
from sweeplab.recorder.process import SHARED_ENV, Recorder
from sweeplab.recorder.remote import EXPORT_WARM_UP, TRACKING_WARM_UP, Remote

if TYPE_CHECKING:
    from omegaconf import DictConfig

__all__ = ["Call", "Inline", "ProcessRecorder", "Recorder", "Remote", "this_process"]


class ProcessRecorder:
    """The recorder of this process, which the process's entry points (the Hydra main's task function, the
    sweep's Hydra callbacks) hand down to whatever records.

    One per process, not per job: starting one costs seconds of imports, so a sequential sweep's jobs and the
    jobs of a reused joblib worker share it, and a sequential sweep's parent run and its children are one
    recorder's. Started on first need; closed (its calls done) when the process exits.
    """

    def __init__(self) -> None:
        self.current: Recorder | Inline | None = None

    def __reduce__(self) -> str:
        """Sent to another process (joblib pickles the Hydra task function that names it), it is that process's."""
        return "this_process"

    def get(self, in_background: bool, warm_up: Sequence[Remote] = ()) -> Recorder | Inline:
        """A recorder process if `in_background` (the sweep's this job runs for, where it can be reached; else one
        started now, unless one runs and answers), else whatever this process has."""
        if in_background and (not isinstance(self.current, Recorder) or self.current.lost):
            if self.current is not None:
                self.current.close()
            shared = os.environ.get(SHARED_ENV)
            self.current = (shared and Recorder.joined(shared)) or Recorder.started(warm_up)
            atexit.register(self.current.close)
        elif self.current is None:
            self.current = Inline()
        return self.current

    def for_job(self, cfg: DictConfig, job: HydraJob) -> Recorder | Inline:
        """A child process when the job has tracking or an export to check (a sweep's, at its end), else Inline.

        Called before torch is imported, so that the two processes import side by side.
        """
        exports = cfg.export.onnx and (not job.multirun or job.in_launching_process)
        warm_up = (TRACKING_WARM_UP if cfg.tracking.enabled else ()) + (EXPORT_WARM_UP if exports else ())
        return self.get(bool(warm_up), warm_up)


this_process = ProcessRecorder()
