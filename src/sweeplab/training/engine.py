"""The fit loop: train an epoch, evaluate on held-out data, tell the callbacks; nothing else.

It knows nothing of Hydra, MLflow or the terminal: everything that watches training (progress
bars, checkpoints, early stopping, tracking) is a `Callback`. Metrics are accumulated on the
device and read back only at logging steps and epoch ends, so the GPU is never stalled per batch.
`state_dict()` holds everything, random states and the epoch so far included, to continue from any
step as if training had never stopped.

Under torchrun (`ranks`) the model is DistributedDataParallel's and each rank's batches are its shard of
every batch: the loop adds only the sums of its epoch metrics over ranks, at the epoch's end, and every
rank's random states to its state_dict.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel

from sweeplab.core.errors import UserError
from sweeplab.core.ranks import Ranks
from sweeplab.core.vocabulary import (
    EPOCH_SECONDS,
    IMAGES_PER_SECOND,
    LR,
    TRAIN_ACC,
    TRAIN_LOSS,
    VAL_ACC,
    VAL_EMA_ACC,
    VAL_EMA_LOSS,
    VAL_LOSS,
)
from sweeplab.training import distributed
from sweeplab.training.device import autocast, grad_scaler
from sweeplab.training.rng import restore_rng_states, rng_states


class DivergedError(UserError):
    """The loss became NaN or infinite: this run cannot recover (its lr or clipping can)."""


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float
    images_per_second: float
    val_ema_loss: float | None = None  # the weights' moving average on the same validation data, if kept
    val_ema_acc: float | None = None

    def as_dict(self) -> dict[str, float]:
        """By the names runs log them under and `optimized_metric` uses (val/acc, train/loss, ...)."""
        values = {
            TRAIN_LOSS: self.train_loss, TRAIN_ACC: self.train_acc, VAL_LOSS: self.val_loss, VAL_ACC: self.val_acc,
            LR: self.lr, EPOCH_SECONDS: self.seconds, IMAGES_PER_SECOND: self.images_per_second,
        }
        if self.val_ema_acc is not None:
            values |= {VAL_EMA_LOSS: self.val_ema_loss, VAL_EMA_ACC: self.val_ema_acc}
        return values


class Callback:
    """Hooks the loop calls; return True from on_epoch_end to stop training."""

    def on_fit_start(self, trainer: Trainer) -> None: ...

    def on_step_end(self, trainer: Trainer, loss: float, images_per_second: float) -> None:
        """Every trainer.log_every_n_steps steps, with the step's loss (read from the device then)."""

    def on_train_batch_end(self, trainer: Trainer) -> None:
        """After every optimizer step; nothing is read from the device for it."""

    def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> bool | None: ...

    def on_fit_end(self, trainer: Trainer) -> None: ...


@dataclass
class TrainingState:
    """What changes as training runs (the Trainer's other fields are its setup, fixed once built)."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    history: list[EpochMetrics] = field(default_factory=list)
    current: EpochSoFar | None = None  # the epoch being trained; None between epochs
    stopped: bool = False  # a callback ended training early (early stopping, pruning): a resume trains no further


@dataclass
class Trainer:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_batches: Iterable
    val_batches: Iterable
    preprocess: Any  # uint8 batch, train flag -> float batch
    device: torch.device
    epochs: int
    precision: str = "32"
    grad_clip: float | None = None
    label_smoothing: float = 0.0
    log_every_n_steps: int = 50
    ema: AveragedModel | None = None  # updated after every step
    mix: Any = None  # float batch, labels -> mixed batch, soft targets (sweeplab.data.augment.BatchMixing)
    accumulate: int = 1  # each batch as this many micro-batches, their gradients summed: one step, less memory
    ranks: Ranks | None = None  # torchrun's processes, when this is one of them
    callbacks: list[Callback] = field(default_factory=list)
    state: TrainingState = field(default_factory=TrainingState)

    def __post_init__(self) -> None:
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=self.label_smoothing)
        self.scaler = grad_scaler(self.device, self.precision)
        self.scale = self.scaler.get_scale() if self.scaler.is_enabled() else None  # read without a sync: not used yet

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_batches)  # type: ignore[arg-type]

    def fit(self) -> list[EpochMetrics]:
        self._notify("on_fit_start")
        try:
            while self.state.epoch < self.epochs and not self.state.stopped:
                metrics = self.run_epoch()
                self.state.history.append(metrics)
                stops = [callback.on_epoch_end(self, metrics) for callback in self.callbacks]
                self.state.stopped = any(stops)
        finally:
            self._notify("on_fit_end")
        return self.state.history

    def run_epoch(self) -> EpochMetrics:
        started = time.perf_counter()
        current = self.state.current = self.state.current or self.start_epoch()
        images_before = current.totals.count  # a run resumed mid-epoch times only what it trains itself
        train_loss, train_acc = self.train_epoch(current)
        self.state.current = None
        val_loss, val_acc = self.evaluate(self.val_batches)
        ema_loss, ema_acc = self.evaluate(self.val_batches, self.ema.module) if self.ema else (None, None)
        self.state.epoch += 1
        seconds = time.perf_counter() - started
        return EpochMetrics(self.state.epoch, train_loss, train_acc, val_loss, val_acc, current.lr, seconds,
                            (current.totals.count - images_before) / seconds, ema_loss, ema_acc)

    def start_epoch(self) -> EpochSoFar:
        """Before the epoch draws its batch order: that order's state is what a mid-epoch checkpoint saves."""
        return EpochSoFar(self.train_batches.state_dict(), self.optimizer.param_groups[0]["lr"], _Totals(self.device))

    def train_epoch(self, current: EpochSoFar) -> tuple[float, float]:
        self.model.train()
        window_start, window_images = time.perf_counter(), 0
        for images, labels in self.train_batches.batches_from(current.batches):
            inputs, targets = self.preprocess(images, train=True), labels
            if self.mix:
                inputs, targets = self.mix(inputs, labels)  # soft targets: accuracy against the dominant label
            loss, logits = self.train_step(inputs, targets)
            current.totals.add(loss, logits, labels if targets is labels else targets.argmax(dim=1))
            current.batches += 1
            window_images += len(labels)
            if self.state.step % self.log_every_n_steps == 0:
                loss_value = _finite(loss.item(), self.state.step)
                rate = window_images / (time.perf_counter() - window_start)
                for callback in self.callbacks:
                    callback.on_step_end(self, loss_value, rate)
                window_start, window_images = time.perf_counter(), 0
            self._notify("on_train_batch_end")
        loss, acc = current.totals.means(self.ranks)
        return _finite(loss, self.state.step), acc

    def train_step(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.optimizer.zero_grad(set_to_none=True)
        if self.accumulate > 1:
            loss, logits = self.accumulated_gradients(inputs, labels)
        else:
            with autocast(self.device, self.precision):
                logits = self.model(inputs)
                loss = self.loss_fn(logits, labels)
            self.scaler.scale(loss).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if not self.scaler_skipped():
            self.scheduler.step()
        if self.ema:
            self.ema.update_parameters(self.plain_model)
        self.state.step += 1
        return loss.detach(), logits.detach()

    def accumulated_gradients(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's gradient as the sum of its micro-batches' (each loss weighted by its share of the batch), so
        the step is the whole batch's; DDP averages over ranks once, after the last micro-batch."""
        losses, logits = [], []
        count = min(self.accumulate, len(labels))  # a short last batch: fewer micro-batches, none empty
        parts = list(zip(inputs.tensor_split(count), labels.tensor_split(count), strict=True))
        for index, (part_inputs, part_labels) in enumerate(parts):
            last = index == len(parts) - 1
            with self.model.no_sync() if self.ranks and not last else contextlib.nullcontext():
                with autocast(self.device, self.precision):
                    part_logits = self.model(part_inputs)
                    loss = self.loss_fn(part_logits, part_labels) * (len(part_labels) / len(labels))
                self.scaler.scale(loss).backward()
            losses.append(loss.detach())
            logits.append(part_logits.detach())
        return torch.stack(losses).sum(), torch.cat(logits)

    def scaler_skipped(self) -> bool:
        """fp16's scaler skips a step whose gradients overflowed (and lowers its scale): the schedule waits too.

        Reading the scale is one small host sync a step, for fp16 only; bf16 and fp32 have no scaler.
        """
        if self.scale is None:
            return False
        before, self.scale = self.scale, self.scaler.get_scale()
        return self.scale < before

    @torch.no_grad()
    def evaluate(self, batches: Iterable, model: nn.Module | None = None) -> tuple[float, float]:
        """The model's (or `model`'s) loss and accuracy. Evaluation runs the plain model: a compiled one would
        recompile for eval mode and a short last batch."""
        model = model or self.plain_model
        model.eval()
        totals = _Totals(self.device)
        for images, labels in batches:
            with autocast(self.device, self.precision):
                logits = model(self.preprocess(images, train=False))
                loss = nn.functional.cross_entropy(logits, labels)
            totals.add(loss, logits, labels)
        return totals.means(self.ranks)

    @torch.no_grad()
    def predict(self, batches: Iterable, model: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Every label and predicted class of `batches`, in their order, as `evaluate` computes them (same precision),
        read back to the host once at the end."""
        model = model or self.plain_model
        model.eval()
        labels, predictions = [], []
        for images, batch_labels in batches:
            with autocast(self.device, self.precision):
                predictions.append(model(self.preprocess(images, train=False)).argmax(dim=1))
            labels.append(batch_labels)
        return torch.cat(labels).cpu(), torch.cat(predictions).cpu()

    @property
    def plain_model(self) -> nn.Module:
        """The model without torch.compile's or DDP's wrapper: what is evaluated, saved and averaged."""
        model = getattr(self.model, "_orig_mod", self.model)
        return model.module if isinstance(model, DistributedDataParallel) else model

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly where it stopped, between epochs or inside one."""
        return {
            "model": self.plain_model.state_dict(),  # later tools rebuild the plain model: its keys
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.state.epoch,
            "step": self.state.step,
            "stopped": self.state.stopped,
            "history": [asdict(m) for m in self.state.history],
            **({"ema": self.ema.state_dict()} if self.ema else {}),
            "order": self.state.current.order if self.state.current else self.train_batches.state_dict(),
            "rng": distributed.everyone(rng_states()) if self.ranks else rng_states(),  # a list: one per rank
            **({"epoch_so_far": self.state.current.state_dict()} if self.state.current else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict()`'s output: the next epoch is the one after it."""
        self.plain_model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.state = TrainingState(state["epoch"], state["step"], [EpochMetrics(**m) for m in state["history"]],
                                   stopped=state.get("stopped", False))
        if self.ema:
            self.ema.load_state_dict(state["ema"])
        if "rng" in state:  # checkpoints written before random states were saved resume with another data order
            self.train_batches.load_state_dict(state["order"])
            restore_rng_states(state["rng"][self.ranks.rank] if self.ranks else state["rng"])
        if "epoch_so_far" in state:
            self.state.current = EpochSoFar.from_state(state["epoch_so_far"], state["order"], self.device)

    def _notify(self, hook: str) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self)


@dataclass
class EpochSoFar:
    """The epoch being trained: what a checkpoint written inside it needs to finish it as if never stopped."""

    order: dict  # the training batches' order state at the epoch's start
    lr: float  # at the epoch's start: what the epoch reports
    totals: _Totals
    batches: int = 0  # trained on so far

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self.lr, "batches": self.batches, **self.totals.state_dict()}

    @classmethod
    def from_state(cls, state: dict[str, Any], order: dict, device: torch.device) -> EpochSoFar:
        totals = _Totals(device)
        totals.load_state_dict(state)
        return cls(order, state["lr"], totals, state["batches"])


class _Totals:
    """Loss and correct-prediction sums kept on the device (no sync per batch)."""

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.count = 0

    def state_dict(self) -> dict[str, Any]:
        return {"loss_sum": self.loss_sum, "correct": self.correct, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss_sum.copy_(state["loss_sum"])
        self.correct.copy_(state["correct"])
        self.count = state["count"]

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.loss_sum += loss.float() * len(labels)
        self.correct += (logits.argmax(dim=1) == labels).sum()
        self.count += len(labels)

    def means(self, ranks: Ranks | None = None) -> tuple[float, float]:
        """Over every rank's batches, under torchrun (one exchange)."""
        loss_sum, correct, count = self.loss_sum.item(), self.correct.item(), self.count
        if ranks:
            sums = torch.tensor([loss_sum, correct, count], dtype=torch.float64, device=self.loss_sum.device)
            loss_sum, correct, count = distributed.total(sums).tolist()
        if not count:
            return math.nan, math.nan
        return loss_sum / count, correct / count


def _finite(loss: float, step: int) -> float:
    if not math.isfinite(loss):
        raise DivergedError(f"loss became {loss} at step {step}: lower optimizer.lr or set trainer.grad_clip")
    return loss
