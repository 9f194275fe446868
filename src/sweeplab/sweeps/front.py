"""An accuracy-against-latency sweep's Pareto set, timed again one job after another once the sweep has ended.

Jobs timed beside each other (a parallel sweep's workers) or beside the recorder time each other's noise too,
which must not pick the front: each job on the front has its model rebuilt from its best checkpoint and timed
alone, here, on the device it trained on, and its result.json takes the new latency (what the table, the
parent run's pareto.csv and the export read). The MLflow run keeps the latency its job measured.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from sweeplab.core.pareto import pareto_set
from sweeplab.core.vocabulary import BEST_CHECKPOINT, CHECKPOINTS_DIR, FINISHED, MODEL_LATENCY_MS
from sweeplab.runs.results import JobResult, write_result

log = logging.getLogger(__name__)


def front(results: list[JobResult]) -> list[JobResult]:
    """The finished jobs no other beats on every objective (none where optimized_metric names one)."""
    names = next((list(result.objectives) for result in results if result.objectives), [])
    rows = [result.objectives if result.status == FINISHED and result.objectives else {} for result in results]
    return [results[index] for index in sorted(pareto_set(rows, names))] if names else []


def retime_front(sweep_dir: Path, results: list[JobResult]) -> None:
    """The front's latencies timed again, one job after another, where the jobs ran on this machine (its devices
    are theirs); nothing where no objective is a latency."""
    timed = [result for result in front(results) if MODEL_LATENCY_MS in (result.objectives or {})]
    if timed:
        retime(sweep_dir, timed)


def retime(sweep_dir: Path, timed: list[JobResult]) -> None:
    """Torch: in a parallel sweep's launching process only now."""
    import torch

    from sweeplab.runs.classifier import rebuild_model
    from sweeplab.training.checkpoint import load_checkpoint
    from sweeplab.training.device import resolve_device
    from sweeplab.training.latency import latency_ms

    for result in timed:
        run_dir = sweep_dir / str(result.job)
        payload = load_checkpoint(run_dir / CHECKPOINTS_DIR / BEST_CHECKPOINT)
        device = resolve_device(payload["config"]["device"]["type"])
        model = rebuild_model(payload).to(device)
        image = torch.zeros(1, *payload["input"]["shape"], device=device)  # its values do not change its cost
        milliseconds, _ = latency_ms(model, image)
        write_result(str(run_dir), replace(result, objectives={**result.objectives, MODEL_LATENCY_MS: milliseconds}))
    log.info(f"The Pareto set timed again, one job after another: jobs {', '.join(str(r.job) for r in timed)}")

