"""sweeplab on a GPU in one command: a markdown table of what works there and how fast, row by row as it goes.

    bash scripts/gpu-check.sh                      # on the lent GPU machine: installs .gpu-wheels/, then runs this
    python scripts/gpu_check.py --out gpu-check.md [--budget 300]

The rows: the default run (digits MLP) and the classic CNN on generated CIFAR-10 (channels_last) on device=cuda
in fp32, fp16 and bf16, each with its images/s and its host syncs per training step against the count the fit
loop is built for; `experiment=cifar10_speedrun` against a bare torch loop doing the same work on the same GPU; a
2-job joblib sweep sharing the one GPU (sweep.jobs_per_gpu=2); torchrun over nccl where two GPUs exist.

Each row is written and flushed as its step ends, so a check cut off still leaves the rows before. Every step has
its own timeout inside the whole budget; a step that fails writes its row with its one-line reason and the check
goes on (the steps' output: the .log beside the table). Tracking is off in every run: mlflow is not carried there.

Two subcommands run inside the check's own processes: `probe REPORT OVERRIDES...` runs train.py with its training
steps counting host syncs (torch.cuda.set_sync_debug_mode("warn") turns each into a warning) and its epochs' images/s,
and `bare REPORT DATA_DIR EPOCHS` is the bare loop. The test suite runs their CPU-only parts (tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "train.py"
QUIET = ["tracking.enabled=false", "trainer.progress=false"]
PRECISIONS = ("32", "fp16", "bf16")
# What the fit loop (sweeplab.training.engine) reads back each step: nothing, except fp16's scaler scale (a skipped
# step holds the schedule back). Epoch starts (the batch order) and logging steps (the loss) read once more.
EXPECTED_SYNCS_PER_STEP = {"32": 0, "bf16": 0, "fp16": 1}
SYNC_WARNING = "synchronizing CUDA operation"
GENERATED_CIFAR = ["dataset.source.verify_checksums=false", "dataset.source.download=false"]  # not the official md5s
CNN = ["dataset=cifar10", *GENERATED_CIFAR, "model=cnn", "trainer.channels_last=true", "trainer.epochs=2",
       "export.onnx=false"]
SPEEDRUN = ["experiment=cifar10_speedrun", *GENERATED_CIFAR, "export.onnx=false"]
SWEEP = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "sweep.jobs_per_gpu=2", "trainer.epochs=20",
         "export.onnx=false"]
SWEPT = "optimizer.lr=1e-3,3e-3"
TORCHRUN = ["trainer.epochs=3", "export.onnx=false"]
# conf/experiment/cifar10_speedrun.yaml and conf/dataset/cifar10.yaml, for the bare loop (the test compares them).
BARE_RECIPE = {"batch_size": 512, "eval_batch_size": 2048, "lr": 0.4, "momentum": 0.9, "weight_decay": 5e-4,
               "pct_start": 0.25, "label_smoothing": 0.2, "padding": 4, "precision": "bf16", "val_fraction": 0.1,
               "mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]}
BARE_EPOCHS = 4
MIN_STEP_SECONDS = 15  # a step given less than this is not started: it could not even import torch and train
COLUMNS = ("check", "outcome", "images/s", "host syncs a step (expected)", "seconds", "note")


class StepFailed(Exception):
    """A step that did not do its work; its message is the row's one-line reason."""


class NotRun(Exception):
    """Too little of the budget was left to start the step."""


@dataclass
class Row:
    check: str
    outcome: str
    images_per_second: str = ""
    syncs: str = ""
    seconds: float | None = None
    note: str = ""

    def markdown(self) -> str:
        seconds = "" if self.seconds is None else f"{self.seconds:.1f}"
        cells = (self.check, self.outcome, self.images_per_second, self.syncs, seconds, self.note)
        return "| " + " | ".join(cell.replace("|", "/").replace("\n", " ") for cell in cells) + " |"


@dataclass
class Step:
    check: str  # the row's first cell
    run: Callable[[Context, Step], Row]
    overrides: list[str] = field(default_factory=list)  # train.py's, beside device and data: the tests compose them
    cap: float = 60  # its seconds at most
    cifar: bool = False  # it trains on the generated CIFAR-10


class Table:
    """The markdown file, each line flushed to disk as it is written (and printed)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file: IO[str] = path.open("w")

    def line(self, text: str = "") -> None:
        self.file.write(text + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())
        print(text, flush=True)

    def header(self) -> None:
        self.line("| " + " | ".join(COLUMNS) + " |")
        self.line("|" + "---|" * len(COLUMNS))

    def row(self, row: Row) -> None:
        self.line(row.markdown())

    def close(self) -> None:
        self.file.close()


class Context:
    """Where the steps run, what they may spend, and the log their commands' output goes to."""

    def __init__(self, device: str, work: Path, log: Path, budget: float, cifar_images: int):
        self.device = device
        self.work = work
        self.log = log
        self.deadline = time.monotonic() + budget
        self.cifar_images = cifar_images
        self._cifar: Path | None = None
        self.min_step_seconds = MIN_STEP_SECONDS

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def cifar_dir(self) -> Path:
        """Generated CIFAR-10 in the real format (tests/data_formats.py), written on first use."""
        if self._cifar is None:
            sys.path.insert(0, str(REPO / "tests"))
            from data_formats import write_cifar10

            root = self.work / "data"
            write_cifar10(root, per_batch=self.cifar_images // 5, test_size=self.cifar_images // 5, seed=0)
            self._cifar = root
        return self._cifar

    def train_overrides(self, step: Step) -> list[str]:
        data = [f"paths.data_dir={self.cifar_dir()}"] if step.cifar else []
        return [f"device={self.device}", *step.overrides, *data]

    def run(self, name: str, argv: list[str], cap: float, cwd: Path | None = None) -> float:
        """`argv` to its end within min(cap, what the budget has left): its seconds, or StepFailed with its reason."""
        timeout = min(cap, self.remaining())
        if timeout < self.min_step_seconds:
            raise NotRun(f"{self.remaining():.0f} s of the budget left")
        with self.log.open("a") as log:
            log.write(f"\n===== {name}: {' '.join(argv)}\n")
            log.flush()
            started = time.monotonic()
            process = subprocess.Popen(argv, cwd=cwd or self.work, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            try:
                code = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # the run's recorder and joblib's workers too
                process.wait()
                raise StepFailed(f"timed out after {timeout:.0f} s") from None
        if code != 0:
            raise StepFailed(f"exit {code}: {last_line(self.log, name)}")
        return time.monotonic() - started


def last_line(log: Path, name: str) -> str:
    """The step's error line (sweeplab says a failure in one line starting `error`), else its last line."""
    output = log.read_text().rsplit(f"===== {name}:", 1)[-1].splitlines()[1:]
    lines = [line.strip() for line in output if line.strip()]
    errors = [line for line in lines if line.lower().startswith("error") or re.match(r"[\w.]+(Error|Exception):", line)]
    return ((errors or lines or ["no output"])[-1])[:240]


# ---- the rows ----------------------------------------------------------------------------------------------------


def python_train(*overrides: str) -> list[str]:
    return [sys.executable, str(TRAIN), *overrides, *QUIET]


def probe_command(report: Path, *overrides: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "probe", str(report), *overrides, *QUIET]


def probed_row(ctx: Context, step: Step) -> Row:
    """A training run in the probe: its images/s and host syncs a step against the fit loop's design."""
    report = ctx.work / f"{slug(step.check)}.json"
    seconds = ctx.run(step.check, probe_command(report, *ctx.train_overrides(step)), step.cap)
    probe = json.loads(report.read_text())
    outcome, syncs, note = sync_verdict(probe)
    return Row(step.check, outcome, f"{epoch_rate(probe['images_per_second']):,.0f}", syncs, seconds, note)


def sync_verdict(probe: dict) -> tuple[str, str, str]:
    """(outcome, syncs cell, note): the typical step's syncs against the expected count for the run's precision."""
    steps, expected = probe["syncs_per_step"], EXPECTED_SYNCS_PER_STEP[probe["precision"]]
    if probe["device"] != "cuda":
        return "ok", f"not counted on {probe['device']} ({expected})", f"{len(steps)} steps, {probe['precision']}"
    if probe["calibration"] != 1:
        return "syncs not countable", "", f"one .item() gave {probe['calibration']} sync warnings, not 1"
    typical = statistics.median_low(steps)
    note = f"{sum(steps)} syncs in {len(steps)} steps, {probe['precision']} (the rest: epoch starts, logging steps)"
    return ("ok" if typical == expected else "unexpected syncs"), f"{typical} ({expected})", note


def epoch_rate(rates: list[float]) -> float:
    """The median epoch after the first (cuDNN's benchmarking and the first allocations are in the first)."""
    return statistics.median(rates[1:] or rates)


def speedrun_row(ctx: Context, step: Step) -> Row:
    """experiment=cifar10_speedrun through sweeplab, then the bare loop on the same data: the ratio of images/s."""
    row = probed_row(ctx, step)
    report = ctx.work / "bare.json"
    bare_argv = [sys.executable, str(Path(__file__).resolve()), "bare", str(report), str(ctx.cifar_dir()),
                 str(BARE_EPOCHS), ctx.device]
    try:
        row.seconds = (row.seconds or 0) + ctx.run("bare loop", bare_argv, 90)
    except (StepFailed, NotRun) as error:
        row.outcome, row.note = "failed", f"the bare loop: {error}; {row.note}"
        return row
    sweeplab, bare = float(row.images_per_second.replace(",", "")), epoch_rate(json.loads(report.read_text()))
    row.images_per_second = f"{sweeplab:,.0f} vs bare {bare:,.0f}: {sweeplab / bare:.2f}x"
    return row


def sweep_row(ctx: Context, step: Step) -> Row:
    """Two joblib jobs at once on the one GPU: each holds one of its sweep.jobs_per_gpu=2 slots (lock files)."""
    sweep_dir = ctx.work / "sweep"
    seconds = ctx.run(step.check, python_train("-m", *ctx.train_overrides(step), SWEPT, f"hydra.sweep.dir={sweep_dir}"),
                      step.cap)
    devices = [job_device(job) for job in sorted(sweep_dir.glob("[0-9]*"))]
    slots = len(list((sweep_dir / ".gpu_slots").glob("*.lock")))
    note = f"jobs on {', '.join(devices) or 'none'}; {slots} of 2 GPU slots taken{' (at once)' if slots == 2 else ''}"
    ok = len(devices) == 2 and all(device.startswith("cuda") for device in devices) and slots == 2
    return Row(step.check, "ok" if ok else "unexpected", seconds=seconds, note=note)


def job_device(job_dir: Path) -> str:
    """The device a job trained on, from its log's plan line (`seed 0, on cuda:0 (bf16, 8 threads)`)."""
    for log in job_dir.glob("*.log"):
        if found := re.search(r"seed \d+, on (\S+) \(", log.read_text()):
            return found.group(1)
    return "unknown"


def torchrun_row(ctx: Context, step: Step) -> Row:
    import torch

    if ctx.device != "cuda" or torch.cuda.device_count() < 2:
        return Row(step.check, "skipped", note=f"{torch.cuda.device_count()} GPU(s) here: torchrun over nccl needs two")
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(TRAIN),
            *ctx.train_overrides(step), *QUIET]
    return Row(step.check, "ok", seconds=ctx.run(step.check, argv, step.cap))


STEPS = [
    *(Step(f"default run (digits MLP), {p}", probed_row, [f"trainer.precision={p}"]) for p in PRECISIONS),
    *(Step(f"CNN on generated CIFAR-10, channels_last, {p}", probed_row, [*CNN, f"trainer.precision={p}"], 90,
           cifar=True) for p in PRECISIONS),
    Step("experiment=cifar10_speedrun vs a bare torch loop", speedrun_row, SPEEDRUN, 120, cifar=True),
    Step("2-job joblib sweep on one GPU (sweep.jobs_per_gpu=2)", sweep_row, SWEEP, 120),
    Step("torchrun, 2 processes over nccl", torchrun_row, TORCHRUN, 120),
]


def run_step(ctx: Context, step: Step) -> Row:
    """The step's row; a failure is a row too, with its one-line reason."""
    try:
        return step.run(ctx, step)
    except NotRun as reason:
        return Row(step.check, "not run", note=f"budget spent: {reason}")
    except StepFailed as reason:
        return Row(step.check, "failed", note=str(reason))
    except Exception as error:  # a bug of the check itself must not end the check
        return Row(step.check, "failed", note=f"{type(error).__name__}: {error}"[:240])


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


# ---- the table ---------------------------------------------------------------------------------------------------


def machine_lines(device: str) -> list[str]:
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if device == "cuda" else []
    return [
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; commit: {commit()}",
        f"- device: {device}; GPUs: {', '.join(gpus) or 'none'}",
        f"- Python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda})",
        "- tracking: off in every run (tracking.enabled=false): mlflow is too large to carry to this machine",
        "- host syncs: torch.cuda.set_sync_debug_mode('warn') over the training steps; the typical (median) step",
    ]


def commit() -> str:
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else "unknown (no .git here)"


def check(out: Path, device: str, budget: float, cifar_images: int) -> None:
    started = time.monotonic()
    table = Table(out)
    table.line("# GPU check")
    table.line()
    for line in machine_lines(device):
        table.line(line)
    table.line()
    table.header()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        ctx = Context(device, Path(work), out.with_suffix(".log"), budget, cifar_images)
        for step in STEPS:
            table.row(run_step(ctx, step))
    table.line()
    table.line(f"{time.monotonic() - started:.0f} s in all, of a {budget:.0f} s budget.")
    table.close()


# ---- inside the steps' processes: the probe and the bare loop ------------------------------------------------------


class SyncCounter:
    """Host syncs per training step and images/s per epoch, from hooks on sweeplab's Trainer."""

    def __init__(self) -> None:
        self.syncs_per_step: list[int] = []
        self.images_per_second: list[float] = []
        self.device = "cpu"
        self.precision = "32"
        self.calibration: int | None = None
        self.caught: list[warnings.WarningMessage] = []
        self.seen = 0

    def install(self) -> None:
        from sweeplab.training.engine import Trainer

        train_epoch, train_step, run_epoch = Trainer.train_epoch, Trainer.train_step, Trainer.run_epoch
        counter = self

        def counted_epoch(trainer, current):
            with counter.watching(trainer):
                return train_epoch(trainer, current)

        def counted_step(trainer, inputs, labels):
            result = train_step(trainer, inputs, labels)
            counter.step_ended()
            return result

        def timed_epoch(trainer):
            metrics = run_epoch(trainer)
            counter.images_per_second.append(metrics.images_per_second)
            return metrics

        Trainer.train_epoch, Trainer.train_step, Trainer.run_epoch = counted_epoch, counted_step, timed_epoch

    @contextlib.contextmanager
    def watching(self, trainer) -> Iterator[None]:
        import torch

        self.device, self.precision = trainer.device.type, trainer.precision
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.caught, self.seen = caught, 0
            if self.device == "cuda":
                self.calibrate(torch)
                torch.cuda.set_sync_debug_mode("warn")
            try:
                yield
            finally:
                if self.device == "cuda":
                    torch.cuda.set_sync_debug_mode("default")

    def calibrate(self, torch) -> None:
        """One .item() must count as one sync, or the counts say nothing."""
        torch.cuda.set_sync_debug_mode("warn")
        torch.ones(1, device="cuda").item()
        torch.cuda.set_sync_debug_mode("default")
        self.calibration = self.syncs_since_last()

    def syncs_since_last(self) -> int:
        new = self.caught[self.seen:]
        self.seen = len(self.caught)
        return sum(SYNC_WARNING in str(warning.message) for warning in new)

    def step_ended(self) -> None:
        self.syncs_per_step.append(self.syncs_since_last())

    def report(self) -> dict:
        return {"device": self.device, "precision": self.precision, "calibration": self.calibration,
                "syncs_per_step": self.syncs_per_step, "images_per_second": self.images_per_second}


def probe(report: Path, overrides: list[str]) -> None:
    """train.py with these overrides in this process, counting; the report is written however the run ends."""
    counter = SyncCounter()
    counter.install()
    from sweeplab.cli.train import main as train_main

    sys.argv = [str(TRAIN), *overrides]
    try:
        train_main()
    finally:
        report.write_text(json.dumps(counter.report()))


def read_cifar10(data_dir: Path):
    """The pickled training batches as uint8 NCHW images and labels (what load_cifar10 reads, without torchvision)."""
    import numpy as np
    import torch

    folder = data_dir / "cifar-10-batches-py"
    batches = [pickle.loads((folder / f"data_batch_{i}").read_bytes()) for i in range(1, 6)]
    images = np.concatenate([batch["data"] for batch in batches]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([batch["labels"] for batch in batches])
    return torch.from_numpy(images), torch.from_numpy(labels).long()


def bare_speedrun(images, labels, device: str, epochs: int, recipe: dict = BARE_RECIPE) -> list[float]:
    """The speedrun's work in plain torch: torchvision's ResNet-18 in channels_last, the data on the device as uint8,
    flips and padded random crops on whole batches, nesterov SGD fused, one-cycle, label smoothing, autocast,
    validation every epoch. Images/s per epoch, counted as sweeplab counts them (training images over the epoch's
    seconds, its validation included)."""
    import torch
    import torchvision

    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    val_count = round(len(labels) * recipe["val_fraction"])
    train_x, train_y = images[order[val_count:]].to(device), labels[order[val_count:]].to(device)
    val_x, val_y = images[order[:val_count]].to(device), labels[order[:val_count]].to(device)
    model = torchvision.models.resnet18(num_classes=10).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe["lr"], momentum=recipe["momentum"], nesterov=True,
                                weight_decay=recipe["weight_decay"], fused=device == "cuda")
    steps = max(1, len(train_y) // recipe["batch_size"])  # whole batches, as sweeplab's shuffled batches
    images_per_epoch = min(steps * recipe["batch_size"], len(train_y))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe["lr"], total_steps=steps * epochs,
                                                   pct_start=recipe["pct_start"])
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=recipe["label_smoothing"])
    mean = torch.tensor(recipe["mean"], device=device).view(1, -1, 1, 1)
    std = torch.tensor(recipe["std"], device=device).view(1, -1, 1, 1)
    autocast = torch.autocast(torch.device(device).type, dtype={"fp16": torch.float16}.get(recipe["precision"],
                              torch.bfloat16), enabled=recipe["precision"] != "32")

    def normalized(batch):
        return ((batch.float().div(255) - mean) / std).contiguous(memory_format=torch.channels_last)

    def train_epoch() -> None:
        model.train()
        for index in torch.randperm(len(train_y), device=device)[: steps * recipe["batch_size"]].split(
                recipe["batch_size"]):
            x = augmented(normalized(train_x[index]), recipe["padding"])
            with autocast:
                loss = loss_fn(model(x.contiguous(memory_format=torch.channels_last)), train_y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()

    @torch.no_grad()
    def evaluate() -> float:
        model.eval()
        correct = torch.zeros((), device=device, dtype=torch.long)
        for x, y in zip(val_x.split(recipe["eval_batch_size"]), val_y.split(recipe["eval_batch_size"]), strict=True):
            with autocast:
                correct += (model(normalized(x)).argmax(1) == y).sum()
        return correct.item() / len(val_y)  # the epoch's one sync

    rates = []
    for _ in range(epochs):
        started = time.perf_counter()
        train_epoch()
        evaluate()
        rates.append(images_per_epoch / (time.perf_counter() - started))
    return rates


def augmented(x, padding: int):
    """Flip a random half, then zero-pad by `padding` and cut each image at its own offset (as sweeplab does)."""
    import torch
    import torch.nn.functional as F

    n, channels, height, width = x.shape
    x = torch.where((torch.rand(n, device=x.device) < 0.5).view(-1, 1, 1, 1), x.flip(3), x)
    padded = F.pad(x, (padding,) * 4)
    dy, dx = (torch.randint(0, 2 * padding + 1, (n, 1), device=x.device) for _ in range(2))
    rows = (dy + torch.arange(height, device=x.device)).view(n, 1, height, 1)
    cols = (dx + torch.arange(width, device=x.device)).view(n, 1, 1, width)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    channel = torch.arange(channels, device=x.device).view(1, -1, 1, 1)
    return padded[batch, channel, rows, cols]


def bare(report: Path, data_dir: Path, epochs: int, device: str) -> None:
    images, labels = read_cifar10(data_dir)
    report.write_text(json.dumps(bare_speedrun(images, labels, device, epochs)))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["probe"]:
        return probe(Path(argv[1]), argv[2:])
    if argv[:1] == ["bare"]:
        return bare(Path(argv[1]), Path(argv[2]), int(argv[3]), argv[4])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")) / "gpu-check.md")
    parser.add_argument("--budget", type=float, default=300, help="seconds for the whole check")
    parser.add_argument("--device", default="cuda", help="cpu runs the same steps on the CPU (slowly)")
    parser.add_argument("--cifar-images", type=int, default=50000, help="generated CIFAR-10 training images")
    args = parser.parse_args(argv)
    check(args.out, args.device, args.budget, args.cifar_images)


if __name__ == "__main__":
    main()
