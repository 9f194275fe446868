"""The task Hydra runs for every job: `run_job` (job.py: skip, resume, contain a sweep job's failure, write its
result) around `train` (train.py: config -> data, model, optimizer, device -> fit -> test -> record -> export)."""
