"""tracking.system_metrics=true: MLflow's system metrics for a run, sampled by the recorder while the run trains.

CPU, memory, disk and network are the machine's; of its GPUs only the run's own is sampled (a job of a parallel
sweep holds one GPU of several), as system/gpu_0_*; a run on the CPU samples none.
"""

from __future__ import annotations

import logging

import pynvml
from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

from sweeplab.core.vocabulary import GPU_UUID_TAG


def started(run_id: str, uri: str, tags: dict[str, str], resumed: bool) -> SystemMetricsMonitor:
    """A monitor sampling in a thread of the recorder until `finish()`; a resumed run's steps go on."""
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no "Started monitoring" per run
    monitor = SystemMetricsMonitor(run_id, resume_logging=resumed, tracking_uri=uri)
    for gpus in [m for m in monitor.monitors if isinstance(m, GPUMonitor)]:
        gpus.gpu_handles = [handle for handle in gpus.gpu_handles if same_gpu(handle, tags.get(GPU_UUID_TAG))]
        if not gpus.gpu_handles:
            monitor.monitors.remove(gpus)
    monitor.start()
    return monitor


def finished(monitor: SystemMetricsMonitor) -> None:
    """Stop sampling. MLflow logs the samples of each whole interval and drops those of the interval the run's end
    cuts short, so a run shorter than one interval would have none: they are logged too."""
    monitor.finish()
    unlogged = monitor.aggregate_metrics()
    if unlogged:
        monitor.publish_metrics(unlogged)
        monitor.mlflow_logger.flush()


def same_gpu(handle, uuid: str | None) -> bool:
    """NVML's handle is the GPU torch trained on (NVML says GPU-<uuid>; torch, the uuid alone)."""
    return uuid is not None and str(pynvml.nvmlDeviceGetUUID(handle)).removeprefix("GPU-") == uuid.removeprefix("GPU-")
