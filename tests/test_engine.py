"""The fit loop and what surrounds it: callbacks, checkpoints, optimizers, schedules, device, console."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import TensorDataset

from data_formats import class_images
from sweeplab.config.schema import AugmentConfig, MLPConfig
from sweeplab.core.errors import UserError
from sweeplab.core.vocabulary import BEST_CHECKPOINT as BEST
from sweeplab.core.vocabulary import LAST_CHECKPOINT as LAST
from sweeplab.data import augmentation_policies
from sweeplab.data.augment import BatchPreprocess
from sweeplab.data.batches import TensorBatches
from sweeplab.models import build_model
from sweeplab.training.best_epoch import BestTracker, Checkpointer, EarlyStopping
from sweeplab.training.checkpoint import load_checkpoint, load_state_file, save_checkpoint
from sweeplab.training.console import ProgressBar, print_summary, print_tracking_location, shown_epochs
from sweeplab.training.device import autocast, grad_scaler, resolve_device
from sweeplab.training.engine import Callback, DivergedError, EpochMetrics, Trainer
from sweeplab.training.optim import build_optimizer, build_scheduler

CPU = torch.device("cpu")
CLASSES = 4
SCHEDULERS = ("none", "step", "cosine", "onecycle")


def learnable(n: int, seed: int) -> TensorDataset:
    """8x8 grayscale images whose class is a bright square's position (see data_formats)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % CLASSES
    return TensorDataset(torch.from_numpy(class_images(labels, 1, 8, rng)), torch.from_numpy(labels))


def make_trainer(epochs: int = 3, lr: float = 1e-2, callbacks: list[Callback] | None = None,
                 augment: AugmentConfig | None = None, dropout: float = 0.0, **options) -> Trainer:
    torch.manual_seed(0)
    model = build_model(OmegaConf.structured(MLPConfig(hidden=[32])), (1, 8, 8), CLASSES)
    if dropout:
        model = torch.nn.Sequential(torch.nn.Dropout(dropout), model)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    train = TensorBatches(learnable(128, 0), 16, True, CPU, seed=0)
    return Trainer(
        model=model,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0),
        train_batches=train,
        val_batches=TensorBatches(learnable(64, 1), 32, False, CPU, seed=0),
        preprocess=BatchPreprocess([0.3], [0.3], augment or AugmentConfig()),
        device=CPU,
        epochs=epochs,
        callbacks=callbacks or [],
        **options,
    )


def metrics(epoch: int, val_acc: float, val_loss: float = 1.0) -> EpochMetrics:
    return EpochMetrics(epoch, 1.0, 0.5, val_loss, val_acc, 1e-3, 1.0, 100.0)


# --- the loop ------------------------------------------------------------------------------------------------------


def test_a_tiny_fit_learns() -> None:
    trainer = make_trainer(epochs=3)
    _, before = trainer.evaluate(trainer.val_batches)
    history = trainer.fit()
    assert [m.epoch for m in history] == [1, 2, 3] and trainer.state.step == 3 * 8
    assert before < 0.5 and history[-1].val_acc >= 0.9
    assert history[-1].train_loss < history[0].train_loss
    assert all(m.images_per_second > 0 and m.lr == 1e-2 for m in history)


def test_no_host_sync_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Metrics stay on the device between logging steps: an epoch of 32 steps reads back as often as one of 8.

    (With SGD: Adam reads its step counters, which live on the host whatever the device.)"""
    reads = []
    for name in ("item", "cpu", "tolist"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _original=original, **k: reads.append(1)
                            or _original(self, *a, **k))

    def reads_in_an_epoch(batch_size: int) -> int:
        trainer = make_trainer(epochs=1, log_every_n_steps=1000)
        trainer.optimizer = torch.optim.SGD(trainer.model.parameters(), lr=0.01)
        trainer.scheduler = torch.optim.lr_scheduler.ConstantLR(trainer.optimizer, factor=1.0, total_iters=0)
        trainer.train_batches = TensorBatches(learnable(128, 0), batch_size, True, CPU, seed=0)
        reads.clear()
        trainer.fit()
        return len(reads)

    assert reads_in_an_epoch(4) == reads_in_an_epoch(16)  # 32 steps, 8 steps


def test_accumulated_micro_batches_take_the_step_of_the_whole_batch() -> None:
    """trainer.accumulate_grad_batches=3: each batch of 16 in 3 micro-batches (6, 5, 5), the same update as the whole
    batch in one pass, to float rounding (with SGD, which a wrongly weighted sum of gradients would not fool)."""
    def trained(accumulate: int) -> Trainer:
        trainer = make_trainer(epochs=2, accumulate=accumulate)
        trainer.optimizer = torch.optim.SGD(trainer.model.parameters(), lr=0.1, momentum=0.9)
        trainer.scheduler = torch.optim.lr_scheduler.ConstantLR(trainer.optimizer, factor=1.0, total_iters=0)
        trainer.fit()
        return trainer

    whole, accumulated = trained(1), trained(3)
    assert whole.state.step == accumulated.state.step == 16
    for expected, parameter in zip(whole.model.parameters(), accumulated.model.parameters(), strict=True):
        torch.testing.assert_close(parameter, expected, rtol=1e-5, atol=1e-6)
    for expected, epoch in zip(whole.state.history, accumulated.state.history, strict=True):
        assert epoch.train_loss == pytest.approx(expected.train_loss, rel=1e-5)
        assert epoch.train_acc == expected.train_acc and epoch.val_acc == expected.val_acc
    assert whole.state.history[-1].train_loss < whole.state.history[0].train_loss


def test_a_step_the_gradient_scaler_skips_does_not_advance_the_schedule() -> None:
    """fp16's scaler (real, on the CPU here) skips steps whose scaled gradients overflow; so must the schedule."""
    trainer = make_trainer(epochs=1)
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1e38)  # scaled gradients overflow float32
    trainer.scale = trainer.scaler.get_scale()
    images, labels = next(iter(trainer.train_batches))
    trainer.train_step(trainer.preprocess(images, train=True), labels)
    assert trainer.scheduler.last_epoch == 0 and trainer.scaler.get_scale() < 1e38, "skipped, schedule held"
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    trainer.scale = trainer.scaler.get_scale()
    trainer.train_step(trainer.preprocess(images, train=True), labels)
    assert trainer.scheduler.last_epoch == 1, "a step taken advances the schedule"


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.steps: list[int] = []

    def on_fit_start(self, trainer: Trainer) -> None:
        self.calls.append("start")

    def on_step_end(self, trainer: Trainer, loss: float, images_per_second: float) -> None:
        self.steps.append(trainer.state.step)
        assert math.isfinite(loss) and images_per_second > 0

    def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> None:
        self.calls.append(f"epoch {metrics.epoch}")

    def on_fit_end(self, trainer: Trainer) -> None:
        self.calls.append("end")


def test_callbacks_see_every_stage_and_every_nth_step() -> None:
    recorder = Recorder()
    make_trainer(epochs=2, callbacks=[recorder], log_every_n_steps=3).fit()
    assert recorder.calls == ["start", "epoch 1", "epoch 2", "end"]
    assert recorder.steps == [3, 6, 9, 12, 15]


def test_early_stopping_stops_when_the_metric_stalls() -> None:
    tracker = BestTracker("val/acc", "max")
    trainer = make_trainer(epochs=10, lr=1e-12, callbacks=[tracker, EarlyStopping(tracker, patience=2)])
    history = trainer.fit()
    assert len(history) == 3 and tracker.best_epoch == 1


def test_an_early_stopped_run_cut_off_before_its_record_resumes_without_training_further(tmp_path: Path) -> None:
    tracker = BestTracker("val/acc", "max")
    checkpointer, stopper = Checkpointer(tmp_path, tracker, {}), EarlyStopping(tracker, patience=2)
    history = make_trainer(epochs=10, lr=1e-12, callbacks=[tracker, checkpointer, stopper]).fit()
    resumed = make_trainer(epochs=10, lr=1e-12)
    resumed.load_state_dict(load_state_file(tmp_path / LAST))
    assert resumed.fit() == history and resumed.state.epoch == 3


def test_early_stopping_waits_while_the_metric_improves() -> None:
    tracker = BestTracker("val/loss", "min")
    stopper, trainer = EarlyStopping(tracker, patience=2), SimpleNamespace(epochs=10)
    for epoch, loss in enumerate([3.0, 2.0, 2.5, 1.0, 1.5], start=1):
        tracker.on_epoch_end(trainer, metrics(epoch, 0.5, loss))
        assert not stopper.on_epoch_end(trainer, metrics(epoch, 0.5, loss))
    tracker.on_epoch_end(trainer, metrics(6, 0.5, 1.2))
    assert stopper.on_epoch_end(trainer, metrics(6, 0.5, 1.2)) and tracker.best == 1.0


def test_nan_loss_raises_diverged_error(tmp_path: Path) -> None:
    tracker = BestTracker("val/acc", "max")
    trainer = make_trainer(epochs=2, callbacks=[tracker, Checkpointer(tmp_path, tracker, {})])
    with torch.no_grad():
        trainer.model.net[1].weight.fill_(math.nan)
    with pytest.raises(DivergedError, match="loss became nan.*lower optimizer.lr"):
        trainer.fit()
    assert not list(tmp_path.iterdir()), "a diverged epoch must not be checkpointed"


def test_gradients_are_clipped() -> None:
    class GradNorm(Callback):
        norms: list[float] = []

        def on_step_end(self, trainer: Trainer, loss: float, images_per_second: float) -> None:
            grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
            self.norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

    watcher = GradNorm()
    make_trainer(epochs=1, lr=1.0, grad_clip=0.05, log_every_n_steps=1, callbacks=[watcher]).fit()
    assert len(watcher.norms) == 8 and max(watcher.norms) <= 0.05 + 1e-6


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_on_cpu(precision: str) -> None:
    history = make_trainer(epochs=2, precision=precision).fit()
    assert math.isfinite(history[-1].train_loss) and history[-1].val_acc > 0.5


def test_label_smoothing_reaches_the_loss() -> None:
    assert make_trainer(label_smoothing=0.1).loss_fn.label_smoothing == 0.1


def test_compiled_model_checkpoints_plain_keys() -> None:
    trainer = make_trainer(epochs=1)
    plain_keys = list(trainer.model.state_dict())
    trainer.model = torch.compile(trainer.model, backend="eager")
    trainer.fit()
    assert list(trainer.state_dict()["model"]) == plain_keys


# --- callbacks and checkpoints -------------------------------------------------------------------------------------


def test_checkpointer_writes_last_every_epoch_and_best_on_improvement(tmp_path: Path) -> None:
    trainer = make_trainer(epochs=1)
    tracker = BestTracker("val/acc", "max")
    checkpointer = Checkpointer(tmp_path, tracker, {"config": {"seed": 0}, "classes": ["a", "b", "c", "d"]})
    for epoch, acc in enumerate([0.5, 0.8, 0.6], start=1):
        trainer.state.epoch = epoch
        tracker.on_epoch_end(trainer, metrics(epoch, acc))
        checkpointer.on_epoch_end(trainer, metrics(epoch, acc))
    best, last = load_checkpoint(tmp_path / BEST), load_checkpoint(tmp_path / LAST)
    assert (best["epoch"], best["metrics"]["val/acc"]) == (2, 0.8)
    assert (last["epoch"], last["metrics"]["val/acc"]) == (3, 0.6)
    assert best["classes"] == ["a", "b", "c", "d"] and best["config"] == {"seed": 0}
    assert sorted(p.name for p in tmp_path.iterdir()) == [BEST, LAST], "no temporary files left behind"


def test_checkpoint_restores_the_model_weights_only(tmp_path: Path) -> None:
    trainer = make_trainer(epochs=1)
    trainer.fit()
    save_checkpoint(trainer.state_dict(), tmp_path / LAST)
    payload = torch.load(tmp_path / LAST, weights_only=True)
    fresh = make_trainer(epochs=1)
    fresh.model.load_state_dict(payload["model"])
    fresh.optimizer.load_state_dict(payload["optimizer"])
    assert fresh.evaluate(fresh.val_batches) == trainer.evaluate(trainer.val_batches)
    assert payload["history"][0]["epoch"] == 1 and payload["step"] == 8


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_schedule_state_survives_weights_only_load(tmp_path: Path, compose_train, scheduler: str) -> None:
    cfg = compose_train([f"scheduler={scheduler}", "scheduler.warmup_epochs=1"])
    trainer = make_trainer(epochs=2)
    trainer.scheduler = build_scheduler(cfg.scheduler, trainer.optimizer, 8, 2)
    trainer.fit()
    save_checkpoint(trainer.state_dict(), tmp_path / LAST)
    assert load_state_file(tmp_path / LAST)["scheduler"] == trainer.scheduler.state_dict()


class KillAt(Callback):
    """Stops training dead after optimizer step `step`, as a SIGKILL would (after the checkpoints before it)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer: Trainer) -> None:
        if trainer.state.step == self.step:
            raise SystemExit("killed")


@pytest.mark.parametrize("killed_at", [13, 17], ids=["inside an epoch", "after an epoch's checkpoint"])
def test_a_resumed_run_matches_the_uninterrupted_one_bit_for_bit(tmp_path: Path, killed_at: int) -> None:
    """Random crops, flips, dropout and MixUp draw from torch's RNG; the batch order from its own generator.

    Checkpoints every 5 steps and at epoch ends (8 steps): killed at step 13 it resumes from step 10,
    inside epoch 2; killed at 17, from epoch 2's end (step 16).
    """
    augment = AugmentConfig(random_crop_padding=1, hflip=True, mixup_alpha=0.4)
    recipe = {"augment": augment, "dropout": 0.2, "mix": augmentation_policies(augment, CLASSES).mix}
    uninterrupted = make_trainer(epochs=3, **recipe).fit()

    tracker = BestTracker("val/acc", "max")
    checkpointer = Checkpointer(tmp_path, tracker, {}, every_n_steps=5)
    with pytest.raises(SystemExit):
        make_trainer(epochs=3, callbacks=[tracker, checkpointer, KillAt(killed_at)], **recipe).fit()
    resumed = make_trainer(epochs=3, **recipe)
    resumed.load_state_dict(load_state_file(tmp_path / LAST))
    assert resumed.state.step == (10 if killed_at == 13 else 16)
    timing = {"seconds", "images_per_second"}
    assert [without(m, timing) for m in resumed.fit()] == [without(m, timing) for m in uninterrupted]


def without(metrics: EpochMetrics, keys: set[str]) -> dict:
    return {key: value for key, value in asdict(metrics).items() if key not in keys}


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so_in_one_line(tmp_path: Path, small_disk) -> None:
    path = tmp_path / LAST
    save_checkpoint({"epoch": 1}, path)
    with pytest.raises(UserError, match=r"could not write .*last.pt \(.*\): is the disk full\? .*previous last.pt is "
                                        "intact"):
        save_checkpoint({"epoch": 2, "weights": torch.zeros(100_000)}, path)
    assert load_state_file(path) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == [LAST], "no temporary file left"


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / LAST
    save_checkpoint({"epoch": 1}, path)
    with pytest.raises(Exception):  # noqa: B017 - whatever pickle raises for a lambda
        save_checkpoint({"epoch": 2, "bad": lambda: None}, path)
    assert load_state_file(path) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == [LAST]


class NotATensor:
    pass


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "not a readable checkpoint"),
        (b"garbage" * 10, "not a readable checkpoint"),
        ("truncated", "not a readable checkpoint"),
        ("pickled-object", "not a readable checkpoint"),
    ],
)
def test_unreadable_checkpoints_are_one_line_user_errors(tmp_path: Path, content, match: str) -> None:
    path = tmp_path / "bad.pt"
    if content == "truncated":
        torch.save({"model": {"w": torch.zeros(1000)}}, path)
        path.write_bytes(path.read_bytes()[:500])
    elif content == "pickled-object":
        torch.save({"model": NotATensor()}, path)  # weights_only refuses to unpickle arbitrary classes
    else:
        path.write_bytes(content)
    with pytest.raises(UserError, match=match) as error:
        load_state_file(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_plain_state_dict_is_not_a_run_checkpoint(tmp_path: Path) -> None:
    save_checkpoint({"weight": torch.zeros(2)}, tmp_path / "weights.pt")
    with pytest.raises(UserError, match="not a sweeplab checkpoint"):
        load_checkpoint(tmp_path / "weights.pt")
    with pytest.raises(UserError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "absent.pt")


# --- optimizers and schedules --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "kind"),
    [
        ("sgd", torch.optim.SGD),
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
        ("rmsprop", torch.optim.RMSprop),
    ],
)
def test_optimizers_from_config(compose_train, option: str, kind: type) -> None:
    cfg = compose_train([f"optimizer={option}", "optimizer.lr=0.05", "optimizer.weight_decay=0.001"])
    model = torch.nn.Linear(3, 2)
    optimizer = build_optimizer(cfg.optimizer, model)
    assert type(optimizer) is kind
    assert optimizer.param_groups[0]["lr"] == 0.05 and optimizer.param_groups[0]["weight_decay"] == 0.001


def test_sgd_nesterov_and_momentum_reach_the_optimizer(compose_train) -> None:
    cfg = compose_train(["optimizer=sgd", "optimizer.momentum=0.8", "optimizer.nesterov=true"])
    group = build_optimizer(cfg.optimizer, torch.nn.Linear(3, 2)).param_groups[0]
    assert group["momentum"] == 0.8 and group["nesterov"] is True


def lr_trajectory(compose_train, overrides: list[str], steps_per_epoch: int = 10, epochs: int = 3) -> list[float]:
    """The learning rate used by each optimizer step of the whole run."""
    cfg = compose_train(["optimizer=sgd", "optimizer.lr=1.0", *overrides])
    optimizer = build_optimizer(cfg.optimizer, torch.nn.Linear(1, 1))
    scheduler = build_scheduler(cfg.scheduler, optimizer, steps_per_epoch, epochs)
    lrs = []
    for _ in range(steps_per_epoch * epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_constant_schedule(compose_train) -> None:
    assert set(lr_trajectory(compose_train, ["scheduler=none"])) == {1.0}


def test_step_schedule_decays_every_step_epochs(compose_train) -> None:
    lrs = lr_trajectory(compose_train, ["scheduler=step", "scheduler.step_epochs=1", "scheduler.gamma=0.5"])
    assert lrs[0] == lrs[9] == 1.0 and lrs[10] == lrs[19] == 0.5 and lrs[20] == 0.25


def test_cosine_decays_to_min_lr(compose_train) -> None:
    lrs = lr_trajectory(compose_train, ["scheduler=cosine", "scheduler.min_lr=0.1"])
    assert lrs[0] == 1.0 and all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))
    assert lrs[-1] == pytest.approx(0.1, abs=0.01)


def test_onecycle_peaks_at_the_configured_lr(compose_train) -> None:
    lrs = lr_trajectory(compose_train, ["scheduler=onecycle", "scheduler.pct_start=0.3"])
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert lrs[peak] == pytest.approx(1.0) and peak == pytest.approx(9, abs=1)
    assert lrs[0] < 0.1 and lrs[-1] < 1e-3


@pytest.mark.parametrize("scheduler", ["none", "cosine", "step"])
def test_warmup_ramps_linearly_to_the_lr_then_hands_over(compose_train, scheduler: str) -> None:
    lrs = lr_trajectory(compose_train, [f"scheduler={scheduler}", "scheduler.warmup_epochs=1"])
    # lr/steps at the first step, lr at the first step after the warm-up (torchvision's reference recipe)
    assert lrs[:11] == pytest.approx([0.1 + 0.09 * k for k in range(11)])
    if scheduler == "cosine":
        assert lrs[-1] < 0.05


def test_warmup_longer_than_the_run_still_trains(compose_train) -> None:
    lrs = lr_trajectory(compose_train, ["scheduler.warmup_epochs=10"], steps_per_epoch=2, epochs=1)
    assert len(lrs) == 2 and all(lr > 0 for lr in lrs)


# --- device and console --------------------------------------------------------------------------------------------


def test_cpu_and_auto_resolve() -> None:
    assert resolve_device("cpu") == CPU
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize("kind", ["cuda", "mps"])
def test_absent_accelerator_is_an_error_not_a_fallback(kind: str) -> None:
    if resolve_device("auto").type == kind:
        pytest.skip(f"this machine has {kind}")
    with pytest.raises(UserError, match=f"device={kind} .*no usable {kind}"):
        resolve_device(kind)


def test_full_precision_needs_no_autocast_or_scaler() -> None:
    with autocast(CPU, "32"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast(CPU, "bf16"):
        assert torch.is_autocast_enabled("cpu")
    assert not grad_scaler(CPU, "fp16").is_enabled()


def test_summary_and_progress_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trainer = make_trainer(epochs=2, callbacks=[ProgressBar()], log_every_n_steps=2)
    history = trainer.fit()
    print_summary(history, 2, "val/acc", tmp_path, {"train": 8, "val": 4, "test": 0}, None, "train")
    out = capsys.readouterr()
    assert "2*" in out.out and str(tmp_path) in out.out.replace("\n", "")
    assert "1.00e-02" in out.out, "the lr column must not be cut short (80 columns when not a terminal)"
    assert "epoch" in out.err and "16/16" in out.err


def test_a_long_run_summary_shows_twenty_epochs_first_best_and_last_among_them(tmp_path: Path, capsys) -> None:
    history = [EpochMetrics(epoch, 0.5, 0.9, 0.4, 0.9 + epoch / 1e4, 1e-3, 0.1, 100.0) for epoch in range(1, 401)]
    assert [m.epoch for m in shown_epochs(history, 137)][:3] == [1, 22, 43] and len(shown_epochs(history, 137)) == 20
    assert {1, 137, 400} <= {m.epoch for m in shown_epochs(history, 137)} and shown_epochs(history[:20], 5) == \
        history[:20]
    print_summary(history, 400, "val/acc", tmp_path, {"train": 8, "val": 4, "test": 0}, None, "train")
    out = "".join(capsys.readouterr().out.split())  # rich wraps at 80 columns, a long path anywhere
    said = f"380 of 400 epochs not shown (first, best, last and evenly spaced ones are): every epoch is in " \
           f"{tmp_path / 'train.log'}"
    assert "".join(said.split()) in out


@pytest.mark.parametrize("uri, says", [("sqlite:///x/mlflow.db", "browse it with `sweeplab ui`"),
                                       ("http://127.0.0.1:5000", "open http://127.0.0.1:5000 in a browser")])
def test_the_closing_hint_fits_the_store(uri: str, says: str, capsys) -> None:
    print_tracking_location("0123abcd", uri)
    out = " ".join(capsys.readouterr().out.split())
    assert says in out and "--backend-store-uri" not in out
