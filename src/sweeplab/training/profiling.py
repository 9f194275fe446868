"""trainer.profile_steps=N (debug=profile): torch.profiler over N training steps, after two to warm up.

The trace is written to `<run dir>/profile/trace.json` (open it in chrome://tracing or Perfetto) and
logged with the run. Steps are counted at every logging step: the preset logs every step.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, schedule

from sweeplab.core.atomic import write_atomically
from sweeplab.training.engine import Callback, Trainer
from sweeplab.training.run_log import printed_to_log


class StepProfiler(Callback):
    def __init__(self, folder: Path, steps: int):
        self.folder = folder
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        self.profiler = profile(activities=activities, schedule=schedule(wait=1, warmup=1, active=steps, repeat=1),
                                on_trace_ready=self.save, record_shapes=True)

    def on_fit_start(self, trainer: Trainer) -> None:
        with printed_to_log("torch.profiler"):  # Kineto's "gpuGetDeviceCount failed" on a machine without a GPU
            self.profiler.start()

    def on_step_end(self, trainer: Trainer, loss: float, images_per_second: float) -> None:
        with printed_to_log("torch.profiler"):  # ... said when its trace starts, a step or two later
            self.profiler.step()

    def on_fit_end(self, trainer: Trainer) -> None:
        self.profiler.stop()

    def save(self, profiler: profile) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomically(self.folder / "trace.json", lambda temporary: profiler.export_chrome_trace(str(temporary)))
