"""Sweeps that survive failures and resume: each job's outcome on disk (results.py), the wrapper around every
job (job.py), the config check before launching (preflight.py), the Hydra callbacks (callbacks.py) and the
end-of-sweep table (table.py)."""
