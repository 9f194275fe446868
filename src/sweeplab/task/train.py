"""One training run, top to bottom: config -> data, model, optimizer, device -> fit -> record -> export.

`python train.py` runs `run_job(cfg, job, train, recorder)` (sweeplab.cli.train): sweeplab.task.job
does what a job needs around training (skip a finished run, resume a cut-off one, keep a sweep job's
failure inside it) and calls `train` with the job, whether to resume, and this process's recorder.
The MLflow record, the figures and the export check happen in the recorder process, beside training
(sweeplab.recorder): a run waits for them before it returns, except in a sequential sweep, whose next
job trains while this one's record completes. A sweep
exports only its best job, at its end (sweeplab.sweeps.hydra_callbacks).

Under torchrun every rank runs this: each trains on its slice of every batch in DistributedDataParallel,
rank 0 reads the run dir (a resume, the best checkpoint) for all, and only rank 0 writes, tracks and
exports (sweeplab.runs.rank_zero_dir turns those off for the others).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from sweeplab.config.checks import check_ranges, check_world_size
from sweeplab.config.differences import changed_keys
from sweeplab.core.errors import UserError
from sweeplab.core.hydra_job import HydraJob
from sweeplab.core.ranks import Ranks, launched
from sweeplab.core.vocabulary import (
    BEST_CHECKPOINT,
    CHECKPOINTS_DIR,
    EARLY_STOP_TAG,
    EXPORT_DIR,
    LAST_CHECKPOINT,
    MODEL_LATENCY_IQR_MS,
    MODEL_LATENCY_MS,
    MODEL_PARAMS,
    PROFILE_DIR,
    PRUNED_TAG,
    RUN_COSTS,
    TENSORBOARD_DIR,
    TEST_ACC,
    TEST_LOSS,
    best_metric,
    ema_twin,
    metric_mode,
    objectives,
    selected_metric,
)
from sweeplab.data import Data, build_data, limited, sharded
from sweeplab.export.onnx import export_classifier
from sweeplab.export.verdict import verified
from sweeplab.models import (
    build_model,
    check_batch_statistics,
    convolutional,
    follow_pretrained_input,
    to_channels_last,
)
from sweeplab.recorder import Inline, Recorder
from sweeplab.runs.classifier import image_classifier
from sweeplab.runs.preprocessing import Preprocessing
from sweeplab.runs.results import Scores
from sweeplab.tracking.handle import (
    GRID_IMAGES,
    DatasetRecord,
    FigureData,
    TrackedRun,
    environment_tags,
    metric_rows,
    tracked_run,
)
from sweeplab.tracking.metrics import MetricLogger
from sweeplab.tracking.per_image import SplitPredictions
from sweeplab.tracking.store import resolve_uri
from sweeplab.training.best_epoch import BestTracker, Checkpointer, EarlyStopping
from sweeplab.training.checkpoint import load_checkpoint, load_state_file, serving_weights
from sweeplab.training.console import ProgressBar, print_summary, print_tracking_location
from sweeplab.training.device import configure_backends, gpu_uuid, resolve_device, resolve_precision
from sweeplab.training.distributed import join, read_by_main
from sweeplab.training.engine import Callback, EpochMetrics, Trainer
from sweeplab.training.latency import latency_ms, parameter_count
from sweeplab.training.optim import build_optimizer, build_scheduler
from sweeplab.training.profiling import StepProfiler
from sweeplab.training.rng import seed_everything
from sweeplab.training.run_log import EpochLog, log_plan

log = logging.getLogger(__name__)


def train(cfg: DictConfig, job: HydraJob, resume: bool, recorder: Recorder | Inline) -> Scores:
    """Train as configured; return the best value of `optimized_metric` (what sweepers optimize) and the
    best checkpoint's score on the test split, measured once after training.

    `resume` continues an interrupted run in its run dir: from its last checkpoint if it wrote one,
    in the MLflow run it had started.
    """
    check_ranges(cfg)
    follow_pretrained_input(cfg)
    ranks = join()
    if ranks:
        check_world_size(cfg, ranks)
    run_dir = Path(cfg.paths.output_dir)
    resumed = read_by_main(resume_state, cfg, run_dir / CHECKPOINTS_DIR / LAST_CHECKPOINT) if resume else None
    if resumed:
        train_on_threads_of(resumed)
    seed_everything(cfg.seed + (ranks.rank if ranks else 0))  # each rank augments its own way
    device = resolve_device(cfg.device.type, ranks.local_rank if ranks else job.gpu)
    configure_backends(device, cfg.trainer.deterministic)
    precision = resolve_precision(cfg.trainer.precision, device)
    environment = environment_tags(str(device), precision, str(torch.__version__), torch.get_num_threads(),
                                   gpu_uuid(device))
    with tracked_run(cfg, job, recorder, environment, resume) as tracking:
        data = limited(build_data(cfg.dataset, device, cfg.seed), cfg.trainer)
        if tracking and not resume:
            tracking.log_inputs(dataset_records(cfg, data))
        log_plan(cfg, job.overrides, data.sizes, str(device), precision, torch.get_num_threads())
        model = build_model(cfg.model, data.image_shape, len(data.classes)).to(device)
        check_batch_statistics(model, cfg.model.name, cfg.dataset.batch_size // world_size_of(ranks)
                               // cfg.trainer.accumulate_grad_batches)
        if use_channels_last(cfg, model):
            model = to_channels_last(model)
            data.preprocess.memory_format = torch.channels_last
        metric = selected_metric(cfg.optimized_metric, cfg.trainer.ema_for_best)
        tracker = BestTracker(metric, metric_mode(metric))
        trial = search_trial(job, metric)
        callbacks = [*build_callbacks(cfg, data, tracker, run_dir, tracking, ranks), *([trial] if trial else [])]
        if job.in_launching_process and not cfg.trainer.deterministic:
            callbacks.append(ShareCores(recorder))
        batches = sharded(data, ranks) if ranks else data  # what this process trains and evaluates on
        trainer = build_trainer(cfg, model, batches, device, precision, callbacks, ranks)
        if resumed:
            restore(trainer, tracker, resumed, run_dir)
        if tracking:
            tracking.training = True
        history = trainer.fit()
        pruned_at = trial.pruned_at if trial else None
        best = read_by_main(load_checkpoint, run_dir / CHECKPOINTS_DIR / BEST_CHECKPOINT)
        model.load_state_dict(serving_weights(best))
        test = trainer.evaluate(batches.test, model) if batches.test is not None else None
        costs = run_costs(cfg, model, data)
        if not ranks or ranks.main:
            print_summary(history, tracker.best_epoch, tracker.metric, run_dir, data.sizes, test,
                          cfg.dataset.val_split, data.limits)
        if tracking:
            if pruned_at:
                tracking.set_tag(PRUNED_TAG, str(pruned_at))
            elif trainer.state.epoch < trainer.epochs:
                tracking.set_tag(EARLY_STOP_TAG, f"after epoch {trainer.state.epoch} of {trainer.epochs}")
            record_results(cfg, tracking, model, data, history, tracker, run_dir, test, costs)
            if data.test is not None:  # every test image on rank 0, in the split's order (torchrun's ranks shard it)
                tracking.log_test_predictions(SplitPredictions(*map(np.asarray, trainer.predict(data.test, model)),
                                                              data.classes))
        if cfg.export.onnx and not job.multirun:  # a sweep exports its best job only, at its end
            export_best(cfg, model, data, best, run_dir, recorder, tracking)
        # A sequential sweep's job leaves its record to complete beside the next job, and so does not name its
        # MLflow run either (its id would wait for the recorder): the sweep names its parent run at its end.
        if not job.in_launching_process:
            recorder.wait()  # what the recorder could not do is this run's failure
            if tracking and recorder.lost is None:
                print_tracking_location(tracking.run_id, resolve_uri(cfg.tracking.uri))
    several = len(objectives(cfg.optimized_metric)) > 1
    return Scores(tracker.best, test[1] if test else None, pruned_at,
                  objective_values(cfg, tracker, costs) if several else None)


class ShareCores(Callback):
    """While the recorder works beside training (a sequential sweep's previous job), train on one core fewer.

    torch's threads wait for the slowest of them at every op: one that shares its core with the recorder
    slows every step (measured: a sweep of the default run 1.15x faster this way on 2 cores). The thread
    count changes the last bits of some sums, and when the recorder is busy depends on timing: so single
    runs, and runs under trainer.deterministic, keep theirs (a run is reproducible bit for bit).
    """

    def __init__(self, recorder: Recorder | Inline):
        self.recorder = recorder
        self.threads = torch.get_num_threads()

    def on_fit_start(self, trainer: Trainer) -> None:
        self.share()

    def on_step_end(self, trainer: Trainer, loss: float, images_per_second: float) -> None:
        self.share()  # every trainer.log_every_n_steps steps: a long epoch gets its cores back soon

    def on_epoch_end(self, trainer: Trainer, metrics: EpochMetrics) -> None:
        self.share()

    def on_fit_end(self, trainer: Trainer) -> None:
        torch.set_num_threads(self.threads)

    def share(self) -> None:
        threads = max(1, self.threads - 1) if self.recorder.busy() else self.threads
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)


def search_trial(job: HydraJob, metric: str) -> Callback | None:
    """An Optuna search's trial, reported to after every epoch and pruned by its study (Optuna: in searches only)."""
    if job.study is None:
        return None
    from sweeplab.sweeps.pruning import trial_pruning

    return trial_pruning(job, metric)


def use_channels_last(cfg: DictConfig, model: nn.Module) -> bool:
    """As configured; by default for convolutional networks, which oneDNN (CPU) and cuDNN run fastest in NHWC."""
    return cfg.trainer.channels_last if cfg.trainer.channels_last is not None else convolutional(model)


def resume_state(cfg: DictConfig, checkpoint: Path) -> dict | None:
    """The interrupted run's last checkpoint (None: cut off before its first one, so it starts over), checked to
    hold this config and to have trained on as many processes."""
    if not checkpoint.is_file():
        return None
    state = load_state_file(checkpoint, fix="delete it to train this run again from the start")
    run = checkpoint.parents[1]
    changed = changed_keys(state.get("config", {}), OmegaConf.to_container(cfg, resolve=True))
    if changed:
        listed = ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changed.items())
        raise UserError(f"{run} was trained with another config ({listed}): resume it with the "
                        "config it started with, or start a new run in another hydra.run.dir")
    trained_on, world_size = state.get("world_size", 1), world_size_of(launched())
    if trained_on != world_size:
        launcher = f"torchrun --nproc_per_node={trained_on} train.py" if trained_on > 1 else "python train.py"
        raise UserError(f"{run} was trained on {trained_on} process(es), not {world_size}: resume it with "
                        f"`{launcher} ... hydra.run.dir={run}` (each rank's shard and random state depend on it)")
    return state


def world_size_of(ranks: Ranks | None) -> int:
    return ranks.world_size if ranks else 1


def train_on_threads_of(state: dict) -> None:
    """The thread count the run trained with, put back: that count changes the last bits of sums."""
    threads = state.get("threads", torch.get_num_threads())
    if threads != torch.get_num_threads():
        log.info(f"resuming on {threads} torch threads, as the run started (not {torch.get_num_threads()})")
        torch.set_num_threads(threads)


def restore(trainer: Trainer, tracker: BestTracker, state: dict, run_dir: Path) -> None:
    """Weights, optimizer, schedule, random states, the epoch so far and the best epoch so far."""
    trainer.load_state_dict(state)
    for metrics in trainer.state.history:
        tracker.on_epoch_end(trainer, metrics)
    if trainer.state.current:
        log.info(f"Resuming {run_dir} inside epoch {trainer.state.epoch + 1} of {trainer.epochs}, after batch "
                 f"{trainer.state.current.batches} of {trainer.steps_per_epoch} (step {trainer.state.step})")
    else:
        log.info(f"Resuming {run_dir} after epoch {trainer.state.epoch} of {trainer.epochs}")


def build_callbacks(
    cfg: DictConfig, data: Data, tracker: BestTracker, run_dir: Path, tracking: TrackedRun | None, ranks: Ranks | None
) -> list[Callback]:
    metadata = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "classes": data.classes,
        "input": {"shape": list(data.image_shape), "mean": list(cfg.dataset.mean), "std": list(cfg.dataset.std)},
        "threads": torch.get_num_threads(),  # a resume trains on as many (sweeplab.task.train.train_on_threads_of)
        "world_size": world_size_of(ranks),  # ... and on as many processes (sweeplab.task.train.resume_state)
    }
    checkpointer = Checkpointer(run_dir / CHECKPOINTS_DIR, tracker, metadata, cfg.trainer.checkpoint_every_n_steps,
                                writes=not ranks or ranks.main)
    callbacks: list[Callback] = [tracker, checkpointer, EpochLog()]
    if cfg.trainer.early_stopping_patience:
        callbacks.append(EarlyStopping(tracker, cfg.trainer.early_stopping_patience))
    if cfg.trainer.progress:
        callbacks.append(ProgressBar())
    if tracking:
        callbacks.append(MetricLogger(tracking, cfg.tracking.flush_seconds))
    if cfg.tracking.tensorboard:
        from sweeplab.training.tensorboard import TensorBoardLogger  # optional: the tensorboard package takes a second

        callbacks.append(TensorBoardLogger(run_dir / TENSORBOARD_DIR, next(iter(data.val))[0], data.preprocess))
    if cfg.trainer.profile_steps:
        callbacks.append(StepProfiler(run_dir / PROFILE_DIR, cfg.trainer.profile_steps))
    return callbacks


def dataset_records(cfg: DictConfig, data: Data) -> list[DatasetRecord]:
    source = OmegaConf.to_container(cfg.dataset.source, resolve=True)
    return [DatasetRecord(cfg.dataset.name, split, digest, data.sizes[split], source)  # type: ignore[arg-type]
            for split, digest in data.splits.digests.items()]  # hashed here, for tracked runs only


def build_trainer(cfg: DictConfig, model: nn.Module, data: Data, device: torch.device, precision: str,
                  callbacks: list[Callback], ranks: Ranks | None) -> Trainer:
    optimizer = build_optimizer(cfg.optimizer, model, device)
    trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if ranks else model  # rank 0's weights on every rank, gradients averaged over ranks
    return Trainer(
        model=torch.compile(trained) if cfg.trainer.compile else trained,
        optimizer=optimizer,
        scheduler=build_scheduler(cfg.scheduler, optimizer, len(data.train), cfg.trainer.epochs),
        train_batches=data.train,
        val_batches=data.val,
        preprocess=data.preprocess,
        device=device,
        epochs=cfg.trainer.epochs,
        precision=precision,
        grad_clip=cfg.trainer.grad_clip,
        accumulate=cfg.trainer.accumulate_grad_batches,
        ranks=ranks,
        label_smoothing=cfg.trainer.label_smoothing,
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        ema=moving_average(model, cfg.trainer.ema_decay),
        mix=data.mix,
        callbacks=callbacks,
    )


def moving_average(model: nn.Module, decay: float | None) -> AveragedModel | None:
    """trainer.ema_decay: an exponential moving average of the weights and buffers (BatchNorm's statistics too)."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True) if decay else None


def run_costs(cfg: DictConfig, model: nn.Module, data: Data) -> dict[str, float]:
    """What the model costs to run: its parameters, always; its batch-1 latency where an objective or trainer.latency
    asks for it (timed here, on the run's device)."""
    costs = {MODEL_PARAMS: float(parameter_count(model))}
    if cfg.trainer.latency or MODEL_LATENCY_MS in objectives(cfg.optimized_metric):
        image = data.preprocess(first_images(data.val, 1), train=False)
        costs[MODEL_LATENCY_MS], costs[MODEL_LATENCY_IQR_MS] = latency_ms(model, image)
    return costs


def objective_values(cfg: DictConfig, tracker: BestTracker, costs: dict[str, float]) -> dict[str, float]:
    """Each objective's value: a cost as measured, a metric as the best epoch had it (its EMA twin's with
    trainer.ema_for_best)."""
    return {name: costs[name] if name in RUN_COSTS else tracker.best_metrics[ema_twin(name, cfg.trainer.ema_for_best)]
            for name in objectives(cfg.optimized_metric)}


def record_results(cfg: DictConfig, tracking: TrackedRun, model: nn.Module, data: Data, history: list[EpochMetrics],
                   tracker: BestTracker, run_dir: Path, test: tuple[float, float] | None,
                   costs: dict[str, float]) -> None:
    """The best epoch's value, test score, costs, figures and checkpoint, in the MLflow run (drawn and uploaded by
    the recorder)."""
    tests = {TEST_LOSS: test[0], TEST_ACC: test[1]} if test else {}
    tracking.log_metrics(metric_rows({best_metric(tracker.metric): tracker.best, **tests, **costs},
                                     tracker.best_epoch))
    images, labels, predictions = validation_predictions(model, data)
    tracking.log_figures(FigureData([asdict(m) for m in history], labels, predictions, images, data.classes))
    tracking.log_artifact(run_dir / CHECKPOINTS_DIR / BEST_CHECKPOINT, CHECKPOINTS_DIR)
    for wanted, folder in ((cfg.tracking.tensorboard, TENSORBOARD_DIR), (cfg.trainer.profile_steps, PROFILE_DIR)):
        if wanted:
            tracking.log_artifact(run_dir / folder, folder)


@torch.no_grad()
def validation_predictions(model: nn.Module, data: Data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first validation images (uint8), and every validation label and prediction."""
    model.eval()
    labels, predictions, images = [], [], None
    for batch, batch_labels in data.val:
        predictions.append(model(data.preprocess(batch, train=False)).argmax(dim=1))
        labels.append(batch_labels)
        images = batch[:GRID_IMAGES] if images is None else images
    return images.cpu().numpy(), torch.cat(labels).cpu().numpy(), torch.cat(predictions).cpu().numpy()


def export_best(cfg: DictConfig, model: nn.Module, data: Data, best: dict, run_dir: Path,
                recorder: Recorder | Inline, tracking: TrackedRun | None) -> None:
    """The best epoch's classifier to ONNX, checked on validation images; its files reach MLflow pass or fail."""
    images = first_images(data.val, cfg.export.num_images)
    classifier = image_classifier(model, list(cfg.dataset.mean), list(cfg.dataset.std))
    export = export_classifier(classifier, Preprocessing.from_checkpoint(best), images, run_dir / EXPORT_DIR)
    verified(export, cfg.export.tolerance, torch.get_num_threads(), recorder, tracking.log_export if tracking else None,
             log_model=cfg.tracking.log_model, registered_name=cfg.tracking.register_model)


def first_images(batches, count: int) -> torch.Tensor:
    taken = []
    for images, _ in batches:
        taken.append(images[: count - sum(len(t) for t in taken)])
        if sum(len(t) for t in taken) >= count:
            break
    return torch.cat(taken)
