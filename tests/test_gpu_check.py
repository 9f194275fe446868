"""The GPU check (scripts/gpu_check.py) without a GPU, so it cannot rot before one is lent: every train.py command it
runs composes, its probe counts a CPU run's steps, its bare loop trains the speedrun's recipe, a failed step is a
row; and the GPU slots its sweep relies on (sweep.jobs_per_gpu)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from launch import QUIET, REPO, user_env
from sweeplab.config.checks import check_ranges
from sweeplab.core.errors import UserError
from sweeplab.core.hydra_job import HydraJob
from sweeplab.sweeps.gpu_slots import SLOTS_DIR, DeviceSlots
from sweeplab.task import job as job_module
from sweeplab.task.job import gpu_slot

sys.path.insert(0, str(REPO / "scripts"))
import gpu_check  # noqa: E402


@pytest.mark.parametrize("step", gpu_check.STEPS, ids=lambda step: gpu_check.slug(step.check))
def test_every_train_command_of_the_check_composes(step: gpu_check.Step, compose_train, tmp_path: Path) -> None:
    swept = [gpu_check.SWEPT.split(",")[0]] if step.run is gpu_check.sweep_row else []  # one job of the sweep
    cfg = compose_train(["device=cuda", *step.overrides, *swept, f"paths.data_dir={tmp_path}"])
    check_ranges(cfg)
    assert cfg.device.type == "cuda"


def test_the_bare_loop_does_the_speedruns_work(compose_train) -> None:
    cfg = compose_train(gpu_check.SPEEDRUN)
    recipe = gpu_check.BARE_RECIPE
    assert (cfg.model.name, cfg.optimizer._target_, cfg.optimizer.nesterov) == ("resnet18", "torch.optim.SGD", True)
    assert (cfg.trainer.channels_last, cfg.dataset.augment.hflip, cfg.trainer.precision) == (
        True, True, recipe["precision"])
    assert {
        "batch_size": cfg.dataset.batch_size, "eval_batch_size": cfg.dataset.eval_batch_size, "lr": cfg.optimizer.lr,
        "momentum": cfg.optimizer.momentum, "weight_decay": cfg.optimizer.weight_decay,
        "pct_start": cfg.scheduler.pct_start, "label_smoothing": cfg.trainer.label_smoothing,
        "padding": cfg.dataset.augment.random_crop_padding, "precision": cfg.trainer.precision,
        "val_fraction": cfg.dataset.val_fraction, "mean": list(cfg.dataset.mean), "std": list(cfg.dataset.std),
    } == recipe
    images, labels = torch.randint(0, 256, (20, 3, 16, 16), dtype=torch.uint8), torch.arange(20) % 10
    rates = gpu_check.bare_speedrun(images, labels, "cpu", 1, {**recipe, "batch_size": 8, "precision": "32"})
    assert len(rates) == 1 and rates[0] > 0


def test_the_probe_counts_a_runs_steps_and_epochs(tmp_path: Path) -> None:
    report = tmp_path / "probe.json"
    command = gpu_check.probe_command(report, "device=cpu", "trainer.precision=32", "trainer.epochs=2",
                                      "trainer.limit_train_batches=3", "export.onnx=false", *QUIET)
    done = subprocess.run(command, cwd=tmp_path, env=user_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    probe = json.loads(report.read_text())
    assert probe | {"images_per_second": []} == {"device": "cpu", "precision": "32", "calibration": None,
                                                 "syncs_per_step": [0] * 6, "images_per_second": []}
    assert len(probe["images_per_second"]) == 2
    assert gpu_check.sync_verdict(probe)[0] == "ok"


@pytest.mark.parametrize(("precision", "per_step", "calibration", "outcome"), [
    ("fp16", [2, 1, 1, 1, 3], 1, "ok"),  # the scaler's scale, read each step
    ("bf16", [1, 0, 0, 0, 2], 1, "ok"),  # an epoch start and a logging step
    ("bf16", [1, 1, 1, 1, 1], 1, "unexpected syncs"),
    ("32", [0, 0], 0, "syncs not countable"),
])
def test_a_gpu_runs_syncs_are_judged_by_its_typical_step(precision: str, per_step: list[int], calibration: int,
                                                          outcome: str) -> None:
    probe = {"device": "cuda", "precision": precision, "calibration": calibration, "syncs_per_step": per_step}
    assert gpu_check.sync_verdict(probe)[0] == outcome


def test_a_failed_step_is_a_row_with_its_reason_and_the_check_goes_on(tmp_path: Path) -> None:
    ctx = gpu_check.Context("cpu", tmp_path, tmp_path / "check.log", budget=60, cifar_images=5)
    ctx.min_step_seconds = 0
    table = gpu_check.Table(tmp_path / "check.md")
    table.header()

    def failing(ctx, step):
        ctx.run(step.check, [sys.executable, "-c", "print('a line'); print('error: it broke'); exit(2)"], 30)

    def hanging(ctx, step):
        ctx.run(step.check, [sys.executable, "-c", "import time; time.sleep(60)"], 1)

    def buggy(ctx, step):
        raise KeyError("images_per_second")

    for run in (failing, hanging, buggy):
        table.row(gpu_check.run_step(ctx, gpu_check.Step(run.__name__, run)))
        assert (tmp_path / "check.md").read_text().count("\n") == 2 + ["failing", "hanging", "buggy"].index(
            run.__name__) + 1, "each row is on disk as soon as it is written"
    rows = (tmp_path / "check.md").read_text().splitlines()[2:]
    assert rows == ["| failing | failed |  |  |  | exit 2: error: it broke |",
                    "| hanging | failed |  |  |  | timed out after 1 s |",
                    "| buggy | failed |  |  |  | KeyError: 'images_per_second' |"]
    ctx.deadline = time.monotonic() + 5
    ctx.min_step_seconds = 15
    assert gpu_check.run_step(ctx, gpu_check.Step("late", failing)).outcome == "not run"


def test_jobs_share_each_gpu_in_slots_taken_over_the_gpus_in_turn(tmp_path: Path) -> None:
    slots = DeviceSlots(tmp_path, gpus=2, jobs_per_gpu=2)
    with slots.slot() as first, slots.slot() as second, slots.slot() as third, slots.slot() as fourth:
        assert [first, second, third, fourth] == [0, 1, 0, 1]


def test_a_job_waits_while_every_slot_of_the_gpu_is_taken(tmp_path: Path) -> None:
    slots = DeviceSlots(tmp_path, gpus=1, jobs_per_gpu=2, poll_seconds=0.01)
    got: list[int] = []

    def take_a_slot() -> None:
        with slots.slot() as gpu:
            got.append(gpu)

    with slots.slot() as first:
        with slots.slot() as second:
            waiting = threading.Thread(target=take_a_slot)
            waiting.start()
            time.sleep(0.2)
            assert (first, second, got) == (0, 0, []), "a third job waits for one of the GPU's two slots"
        waiting.join(timeout=5)
        assert got == [0]


@pytest.mark.parametrize(("device", "gpus", "jobs_per_gpu", "slots"), [
    ("cuda", 1, 2, 2),  # a single GPU shared by two jobs at once
    ("auto", 2, None, 2),  # several GPUs: one job each (as before the setting)
    ("cuda", 2, 3, 6),
    ("cuda", 1, None, None),  # a single GPU, no setting: the default GPU, any number of jobs
    ("cpu", 2, 2, None),
    ("cuda", 0, 2, None),
])
def test_a_sweep_job_holds_a_gpu_slot_where_gpus_are_shared(device: str, gpus: int, jobs_per_gpu: int | None,
                                                            slots: int | None, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    made: list[DeviceSlots] = []

    class Recorded(DeviceSlots):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(job_module, "DeviceSlots", Recorded)
    cfg = OmegaConf.create({"device": {"type": device}, "sweep": {"jobs_per_gpu": jobs_per_gpu}})
    with gpu_slot(cfg, HydraJob(multirun=True, sweep_dir=str(tmp_path))) as gpu:
        held = sorted(path.name for path in (tmp_path / SLOTS_DIR).glob("*.lock"))
        assert (gpu, len(held)) == ((0, 1) if slots else (None, 0))
    assert [slots_of.count for slots_of in made] == ([slots] if slots else [])
    assert gpu_slot(cfg, HydraJob(multirun=False)).__enter__() is None, "a single run takes no slot"


def test_jobs_per_gpu_below_one_is_refused_before_any_compute(compose_train) -> None:
    with pytest.raises(UserError, match=r"sweep.jobs_per_gpu=0 is invalid: it must be >= 1"):
        check_ranges(compose_train(["sweep.jobs_per_gpu=0"]))

