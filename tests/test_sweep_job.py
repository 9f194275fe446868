"""A sweep job's pieces without running one: failure reasons, thread shares, result files, GPU slots."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from sweeplab.core.errors import UserError
from sweeplab.core.hydra_job import job_threads, usable_cores
from sweeplab.core.vocabulary import FAILED, FINISHED, OPTUNA_SWEEPER
from sweeplab.recorder.process import Recorder
from sweeplab.recorder.remote import TRACKING_WARM_UP
from sweeplab.runs.results import JobResult, check_same_job, read_result, write_result
from sweeplab.sweeps.gpu_slots import SLOTS_DIR
from sweeplab.sweeps.hydra_callbacks import unfinished_line, unstarted_trials
from sweeplab.task.job import failure_reason
from sweeplab.training.engine import DivergedError


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
         "out of memory (CUDA out of memory. Tried to allocate 2.00 GiB): lower dataset.batch_size"),
        (MemoryError(), "out of memory (MemoryError): lower dataset.batch_size"),
        (DivergedError("loss became nan at step 3: lower optimizer.lr"), "loss became nan at step 3"),
        (UserError("dataset.path is required"), "dataset.path is required"),
        (KeyError("boom"), "KeyError: 'boom'"),
    ],
)
def test_failure_reasons_are_one_line_with_the_fix(error: Exception, reason: str) -> None:
    assert failure_reason(error).startswith(reason)
    assert "\n" not in failure_reason(error)


def test_parallel_jobs_share_the_cores() -> None:
    cores = usable_cores()
    assert job_threads(OmegaConf.create({"n_jobs": 2})) == max(1, cores // 2)
    assert job_threads(OmegaConf.create({"n_jobs": -1})) in (1, None)  # every core busy: one thread each
    assert job_threads(OmegaConf.create({"cpus_per_task": 8, "tasks_per_node": 1})) == 8  # submitit asks for them
    assert job_threads(OmegaConf.create({})) is None  # the basic launcher: one job at a time, every core


def test_a_result_file_round_trips_and_guards_its_dir(tmp_path: Path) -> None:
    write_result(tmp_path, JobResult(FINISHED, ["optimizer.lr=0.1", "model=cnn"], "val/acc", value=0.9, job=3))
    result = read_result(tmp_path)
    assert result.objective == 0.9 and result.job == 3
    check_same_job(result, ["model=cnn", "optimizer.lr=0.1"], tmp_path, multirun=True)  # order does not matter
    check_same_job(result, ["model=cnn", "optimizer.lr=0.1", "trainer.progress=false", "export.onnx=false"], tmp_path,
                   multirun=False)  # what a resume may change
    with pytest.raises(UserError, match=r"already holds a different job \(model, seed differ; it ran "):
        check_same_job(result, ["model=mlp", "optimizer.lr=0.1", "seed=1"], tmp_path, multirun=True)
    with pytest.raises(UserError, match=r"already holds a different run \(model differ.*resume it with the overrides"):
        check_same_job(result, ["model=mlp", "optimizer.lr=0.1"], tmp_path, multirun=False)
    assert math.isnan(JobResult(FAILED, [], "val/acc", value=0.5).objective), "a failed trial is NaN to Optuna"


HOLD_A_SLOT = """
import json, sys, time
from pathlib import Path
from sweeplab.sweeps.gpu_slots import DeviceSlots
with DeviceSlots(Path(sys.argv[1]), 2, poll_seconds=0.05).slot() as slot:
    start = time.time()
    time.sleep(float(sys.argv[2]))
    print(json.dumps([slot, start, time.time()]))
"""


def test_overlapping_jobs_never_share_a_gpu_slot_and_a_killed_job_gives_its_back(tmp_path: Path) -> None:
    """Five processes for two simulated GPUs, one of them SIGKILLed while it holds its slot."""
    killed = subprocess.Popen([sys.executable, "-c", HOLD_A_SLOT, str(tmp_path), "60"])
    while not (tmp_path / SLOTS_DIR).is_dir():
        time.sleep(0.05)
    time.sleep(0.5)
    killed.kill()
    killed.wait()
    jobs = [subprocess.Popen([sys.executable, "-c", HOLD_A_SLOT, str(tmp_path), "0.5"], stdout=subprocess.PIPE,
                             text=True) for _ in range(4)]
    held = [json.loads(job.communicate(timeout=60)[0]) for job in jobs]
    assert sorted(slot for slot, _, _ in held) == [0, 0, 1, 1], "both slots used, the killed job's included"
    for slot, start, end in held:
        overlapping = [other for other in held if other[0] == slot and other[1] < end and start < other[2]]
        assert len(overlapping) == 1, f"slot {slot} was held twice at once"


def test_a_search_stopped_by_ctrl_c_counts_the_trials_it_never_started(tmp_path: Path) -> None:
    search = OmegaConf.create({"hydra": {"sweeper": {"_target_": OPTUNA_SWEEPER, "n_trials": 20}}})
    results = [JobResult(FINISHED, [], "val/acc", 0.9, job=0), JobResult("KILLED", [], "val/acc", job=1)]
    line = unfinished_line(results[1:], len(results), f"re-run the same command with hydra.sweep.dir={tmp_path}",
                           unstarted_trials(search, results))
    assert line.startswith("error: 19 of 20 jobs did not finish: 1 stopped (reasons in the table) and 18 trials never "
                           f"started; re-run the same command with hydra.sweep.dir={tmp_path}")
    grid = OmegaConf.create({"hydra": {"sweeper": {"_target_": "hydra_plugins.sweeplab_grid_sweeper.sweeper.X"}}})
    assert unstarted_trials(grid, results) == 0, "a grid names its jobs that never started itself"


def test_a_recorder_warming_up_is_busy_though_no_call_waits_and_an_idle_one_is_not() -> None:
    """What ShareCores reads: a sequential sweep's job trains on one core fewer while its recorder imports MLflow."""
    recorder = Recorder.started(TRACKING_WARM_UP)
    try:
        recorder.sharing()  # connected, as a sweep's launching process is at once
        time.sleep(0.5)
        assert recorder.busy() and not recorder.pending, "its imports use a core that no call accounts for"
        deadline = time.monotonic() + 60
        while recorder.busy() and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(0.5)
        assert not recorder.busy(), "idle, it waits for calls without using a core"
    finally:
        recorder.close()
