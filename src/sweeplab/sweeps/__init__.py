"""Sweeps that survive failures and resume: the config check before launching (preflight.py), the Hydra
callbacks (hydra_callbacks.py) and the end-of-sweep table (sweep_table.py); an Optuna search as a Hydra sweeper
(optuna_search.py), the launchers' jobs kept in flight (job_pools.py), its trials' configs (trial_configs.py) and
pruning (pruning.py); a sweep planned (plan.py), its Pareto set timed again (front.py), what a finished job keeps
on disk (retention.py), one GPU per parallel job (gpu_slots.py), sweeps ended however they end (open_sweeps.py)."""
