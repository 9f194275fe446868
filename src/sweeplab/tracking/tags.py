"""Names shared by runs, sweeps and the compare command (a light module: the Hydra callback imports it)."""

PARENT_RUN_ENV = "SWEEPLAB_MLFLOW_PARENT_RUN_ID"
FAILURE_TAG = "sweeplab.failure"
OVERRIDES_TAG = "sweeplab.overrides"  # the job's Hydra overrides, shell-quoted: how to reproduce it
OPTIMIZED_TAG = "sweeplab.optimized_metric"
PARENT_TAG = "mlflow.parentRunId"
SWEPT_TAG = "sweep.params"  # swept keys, shell-quoted, on a sweep's parent run
RUN_DIR_TAG = "hydra.output_dir"  # where the run wrote its checkpoints: how export/predict find them
OPTUNA_TRIAL_TAG = "optuna.trial"  # a child run's trial number in its Optuna study
OPTUNA_STUDY_TAG = "optuna.study"
SWEEP_DIR_TAG = "sweep.dir"  # on a sweep's parent and children: how a resumed sweep finds its parent run
