"""Sweeps that survive failures and resume: each job's outcome on disk (results.py), the config check before
launching (preflight.py), the Hydra callbacks (hydra_callbacks.py) and the end-of-sweep table (sweep_table.py);
an Optuna search as a Hydra sweeper (optuna_search.py), its trials' pruning (pruning.py); what a finished job
keeps on disk (retention.py), one GPU per parallel job (gpu_slots.py), sweeps ended however they end
(open_sweeps.py)."""
