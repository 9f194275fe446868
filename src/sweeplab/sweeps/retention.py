"""What a finished job keeps on disk (trainer.keep_checkpoints): a VGG16 checkpoint with Adam's state is over 1 GB.

Called through the recorder, after the job's result.json says FINISHED: a job cut off before then still
resumes from its last.pt. Imports no torch (the recorder never does).
"""

from __future__ import annotations

from pathlib import Path

from sweeplab.core.vocabulary import BEST_CHECKPOINT, CHECKPOINTS_DIR, KEEP_BEST, KEEP_NONE, LAST_CHECKPOINT
from sweeplab.runs.results import ENDED, sweep_results

DISCARDED = {KEEP_BEST: (LAST_CHECKPOINT,), KEEP_NONE: (LAST_CHECKPOINT, BEST_CHECKPOINT)}


def discard_checkpoints(run_dir: str, keep: str) -> None:
    for name in DISCARDED.get(keep, ()):
        (Path(run_dir) / CHECKPOINTS_DIR / name).unlink(missing_ok=True)


def discard_sweep_checkpoints(sweep_dir: Path) -> None:
    """keep_checkpoints=none in a sweep: its finished jobs kept best.pt for the export of its best job, done now."""
    for result in sweep_results(sweep_dir):
        if result.status in ENDED:
            discard_checkpoints(str(sweep_dir / str(result.job)), KEEP_NONE)
