"""Sweeps that survive failures and resume: each job's outcome on disk, checked and summarized by Hydra callbacks."""

# Our Optuna sweeper (hydra_plugins/sweeplab_optuna_sweeper): it numbers jobs by trial and resumes studies.
OPTUNA_SWEEPER = "hydra_plugins.sweeplab_optuna_sweeper.sweeper.ResumableOptunaSweeper"
