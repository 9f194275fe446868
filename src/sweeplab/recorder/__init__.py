"""The recorder: a child process that does the work a run needs no torch for, while the run trains.

MLflow, matplotlib and onnxruntime take seconds to import, and their work (the store, figures, the
export check, model logging) would otherwise queue behind training in one interpreter. The
recorder does it beside training: it imports them while the training process imports torch, and
takes calls, in order, while the epochs run. A call names its function as "module:function" and
passes plain values, so the training process never imports those modules (the boundary is listed
in docs/architecture.md). `submit` returns at once; `Call.result()` and `wait()` block, and
re-raise the recorder's errors here with its traceback as their cause.

Ctrl-C reaches only the training process (the recorder runs in its own session), which then tells
the recorder how the run ended and waits for it. A training process that dies (SIGKILL) takes the
recorder with it. Nothing outlives the command.
`Inline` has the same interface for runs with nothing to do in the background: calls run at once.
"""

from __future__ import annotations

import atexit
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sweeplab.hydra_job import HydraJob
from sweeplab.recorder.calls import Call, Inline
from sweeplab.recorder.process import Recorder

if TYPE_CHECKING:
    from omegaconf import DictConfig

__all__ = ["Call", "Inline", "Recorder", "for_this_process", "job_recorder"]

# What the recorder prepares while it waits for calls: MLflow's side of a run, the export check.
TRACKING_MODULES = ("sweeplab.tracking.session", "sweeplab.tracking.sweep", "sweeplab.tracking.logged_model",
                    "sweeplab.tracking.figures:warm_up", "sweeplab.tracking.logged_model:warm_up")
EXPORT_MODULES = ("sweeplab.export.verify",)


_recorder: Recorder | Inline | None = None


def for_this_process(in_background: bool, warm_up: Sequence[str] = ()) -> Recorder | Inline:
    """This process's recorder: started on first need, shared by the runs of a sequential sweep, closed at exit."""
    global _recorder
    if in_background and not isinstance(_recorder, Recorder):
        if _recorder is not None:
            _recorder.close()
        _recorder = Recorder(warm_up)
        atexit.register(_recorder.close)
    elif _recorder is None:
        _recorder = Inline()
    return _recorder


def job_recorder(cfg: DictConfig, job: HydraJob) -> Recorder | Inline:
    """A child process when the run has tracking or an export to check (a sweep's, at its end), else Inline.

    Started by the Hydra main before it imports torch, so the two processes import side by side.
    """
    exports = cfg.export.onnx and (not job.multirun or job.in_launching_process)
    modules = (TRACKING_MODULES if cfg.tracking.enabled else ()) + (EXPORT_MODULES if exports else ())
    return for_this_process(bool(modules), modules)
