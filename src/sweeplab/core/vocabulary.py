"""The run vocabulary: the names that runs, sweeps, tracking and the commands share, in one place.

Statuses, metric names, MLflow tags, the files and folders of a run dir and of its MLflow
artifacts, and the limits of MLflow's API. A leaf module (nothing of sweeplab's imported): every layer may use it.
"""

from collections.abc import Sequence

# How a run or a sweep job ends: MLflow's RunStatus names, also what result.json says.
FINISHED, FAILED, KILLED, RUNNING = "FINISHED", "FAILED", "KILLED", "RUNNING"
PRUNED = "PRUNED"  # result.json only: an Optuna trial its pruner stopped (its MLflow run ends FINISHED, tagged)
NOT_STARTED = "NOT_STARTED"  # a grid's job an interrupted sweep never reached, or that sweep.timeout kept from starting

# Metrics. Per epoch:
TRAIN_LOSS, TRAIN_ACC, VAL_LOSS, VAL_ACC = "train/loss", "train/acc", "val/loss", "val/acc"
VAL_EMA_LOSS, VAL_EMA_ACC = "val_ema/loss", "val_ema/acc"  # the weights' moving average (trainer.ema_decay)
LR, EPOCH_SECONDS, IMAGES_PER_SECOND = "lr", "epoch_seconds", "images_per_second"
# Every trainer.log_every_n_steps steps:
STEP_LOSS, STEP_IMAGES_PER_SECOND = "train/step_loss", "train/step_images_per_second"
# Once, after training: the best checkpoint on the test split (never seen by any choice).
TEST_LOSS, TEST_ACC = "test/loss", "test/acc"
# Once a run, what its model costs: its parameters, always; its batch-1 latency, when measured.
MODEL_PARAMS, MODEL_LATENCY_MS = "model/params", "model/latency_ms"
MODEL_LATENCY_IQR_MS = "model/latency_iqr_ms"  # the latency's spread: its timed calls' interquartile range
RUN_COSTS = (MODEL_PARAMS, MODEL_LATENCY_MS)
# What `optimized_metric` may name: the value sweepers get, early stopping watches and best.pt keeps; a list of
# several adds costs to weigh against it (an accuracy-against-cost search).
OPTIMIZABLE = (VAL_ACC, VAL_LOSS, TRAIN_ACC, TRAIN_LOSS)
# What `sweeplab compare` shows unless told:
COMPARED = (VAL_ACC, TEST_ACC, VAL_LOSS, TRAIN_LOSS, EPOCH_SECONDS)
CURVE_TOLERANCE = 1e-4  # sweeplab diff: curves closer count as the same up to rounding (threads change last bits)
# A run's export check (see sweeplab.export.onnx_check):
ONNX_MAX_ABS_DIFF, ONNX_ARGMAX_AGREEMENT = "onnx/max_abs_diff", "onnx/argmax_agreement"
ONNX_NUM_IMAGES, ONNX_RANDOM_INPUTS = "onnx/num_images", "onnx/random_inputs"


def best_metric(metric: str) -> str:
    """The metric each run logs at its end: the best value of `metric` over its epochs."""
    return f"best/{metric}"


def objectives(optimized_metric: str | Sequence[str]) -> list[str]:
    """`optimized_metric` as a list: one metric, or several for an accuracy-against-cost search."""
    return [optimized_metric] if isinstance(optimized_metric, str) else [str(metric) for metric in optimized_metric]


def selected_metric(optimized_metric: str | Sequence[str], ema_for_best: bool) -> str:
    """What picks the best epoch: the first of the objectives measured every epoch (the config's checks make sure
    there is one), or its EMA twin (val/acc -> val_ema/acc) with ema_for_best."""
    return ema_twin(next(name for name in objectives(optimized_metric) if name not in RUN_COSTS), ema_for_best)


def ema_twin(metric: str, ema_for_best: bool) -> str:
    """val/acc -> val_ema/acc with ema_for_best: the weights' average is what is judged and kept then."""
    return metric.replace("val/", "val_ema/") if ema_for_best else metric


def metric_mode(metric: str) -> str:
    """Losses and costs are minimised, everything else (accuracies) maximised."""
    return "min" if metric.endswith("loss") or metric in RUN_COSTS else "max"


# MLflow tags: a run's identity and where it came from.
PARENT_TAG = "mlflow.parentRunId"
GIT_COMMIT_TAG = "mlflow.source.git.commit"  # the user's project: the checkout the run was launched from
GIT_DIRTY_TAG = "git.dirty"
SWEEPLAB_COMMIT_TAG = "sweeplab.git.commit"  # sweeplab's own source, when it runs from a checkout
SWEEPLAB_DIRTY_TAG = "sweeplab.git.dirty"
SWEEPLAB_VERSION_TAG = "sweeplab.version"
PROJECT_DIR_TAG = "sweeplab.project_dir"  # where the run was launched: the checkout its commit is of
FAILURE_TAG = "sweeplab.failure"
OVERRIDES_TAG = "sweeplab.overrides"  # the job's Hydra overrides, shell-quoted: how to reproduce it
HYDRA_OVERRIDES_TAG = "sweeplab.hydra_overrides"  # ... a sweep's own hydra.* overrides (launcher, sweeper), too
TORCHRUN_TAG = "sweeplab.torchrun"  # torchrun's arguments, for a run trained under it
OPTIMIZED_TAG = "sweeplab.optimized_metric"  # the metric that picks the best epoch
OBJECTIVES_TAG = "sweeplab.objectives"  # all of optimized_metric's, comma-separated, when it names several
MODEL_LOGGING_ERROR_TAG = "sweeplab.model_logging_error"
EARLY_STOP_TAG = "sweeplab.early_stopped"  # the epoch trainer.early_stopping_patience stopped it at
RUN_DIR_TAG = "hydra.output_dir"  # where the run wrote its checkpoints: how export/predict find them
THREADS_TAG = "torch.threads"  # fewer than the cores when parallel jobs share them
GPU_UUID_TAG = "gpu.uuid"  # which physical GPU a CUDA run trained on (its system metrics are that one's)
# ... of a sweep's children and parent:
JOB_TAG = "sweep.job"
SWEEP_DIR_TAG = "sweep.dir"  # on a sweep's parent and children: how a resumed sweep finds its parent run
SWEPT_TAG = "sweep.params"  # swept keys, shell-quoted, on a sweep's parent run
SWEEP_JOBS_TAG, SWEEP_FAILED_JOBS_TAG = "sweep.jobs", "sweep.failed_jobs"
BEST_CHILD_TAG = "best_child_run_id"
SWEEP_STOPPED_TAG = "sweep.stopped"  # why a sweep stopped before running everything (a budget, failures)
SWEEP_BEST_CONFIG_TAG = "sweep.best_config"  # with seeds swept: the best configuration by mean, its overrides
EXPORTED_JOB_TAG = "sweeplab.exported_job"  # the job whose model a sweep exported and logged
OPTUNA_TRIAL_TAG = "optuna.trial"  # a child run's trial number in its Optuna study
OPTUNA_STUDY_TAG = "optuna.study"
PRUNED_TAG = "sweeplab.pruned"  # a pruned trial's MLflow run: the last epoch it trained
PRUNED_AT = "sweeplab.pruned_at"  # ... and its Optuna trial's user attribute: the job's word to the sweeper
CONFIRM_SEED = "sweeplab.confirm_seed"  # an Optuna trial that confirms a configuration (sweep.confirm): its seed
# How a sweep's jobs, in other processes, learn their parent run's id, and when the sweep started (sweep.timeout).
PARENT_RUN_ENV = "SWEEPLAB_MLFLOW_PARENT_RUN_ID"
SWEEP_STARTED_ENV = "SWEEPLAB_SWEEP_STARTED"
# Our Optuna sweeper (hydra_plugins/sweeplab_optuna_sweeper): it numbers jobs by trial and resumes studies.
OPTUNA_SWEEPER = "hydra_plugins.sweeplab_optuna_sweeper.sweeper.SweeplabOptunaSweeper"
SWEEPLAB_GRID = "hydra_plugins.sweeplab_grid_sweeper.sweeper.SweeplabGridSweeper"  # what -m runs unless told

# A run dir (outputs/<date>/<time>/, or multirun/<date>/<time>/<job>/):
HYDRA_DIR = ".hydra"  # Hydra's config.yaml and overrides.yaml
MULTIRUN_RECORD = "multirun.yaml"  # what Hydra writes in a sweep dir: how a sweep dir is told from a run dir
MASKED_HYDRA_DIR = ".hydra_masked"  # ... with secrets masked: what MLflow gets, when .hydra holds any
CHECKPOINTS_DIR = "checkpoints"
LAST_CHECKPOINT, BEST_CHECKPOINT = "last.pt", "best.pt"
KEEP_ALL, KEEP_BEST, KEEP_NONE = "all", "best", "none"  # trainer.keep_checkpoints
KEPT_CHECKPOINTS = (KEEP_ALL, KEEP_BEST, KEEP_NONE)
RESULT_FILE = "result.json"  # the job's outcome: what resume and the end-of-sweep table read
SEARCH_FILE = "search.json"  # in a search's sweep dir: its study, trials, seconds spent, and why it stopped early
PENDING_FILE = "mlflow_pending.json"  # what a tracking outage kept back
FIGURES_DIR = "figures"
EXPORT_DIR = "export"
ONNX_FILE = "model.onnx"
ONNX_INPUT, ONNX_OUTPUT = "images", "logits"  # an exported model's input and output names
TENSORBOARD_DIR = "tensorboard"
PROFILE_DIR = "profile"  # trainer.profile_steps' trace
ENVIRONMENT_DIR = "environment"  # what was installed, and the project's uncommitted changes (sweeplab diff)
PACKAGES_FILE, PROJECT_DIFF_FILE = "packages.txt", "project.diff"
TEST_DIR = "test"  # the test split's per-image predictions and per-class accuracies (sweeplab diff)
# ... and the artifact folders of its MLflow run (besides .hydra, checkpoints, figures, tensorboard):
ONNX_ARTIFACTS = "onnx"
MODEL_ARTIFACT = "model"  # the logged MLflow model
SUMMARY_ARTIFACTS = "summary"  # on a sweep's parent
SEARCH_ARTIFACTS = "search"  # on an Optuna search's parent: its history and parameter importances

# MLflow's limits.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_PARAM_LENGTH = 6000

CACHE_DIR = ".sweeplab-cache"  # paths.cache_dir under paths.data_dir: image folders' caches
