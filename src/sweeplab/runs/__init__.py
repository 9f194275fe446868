"""Trained runs, read back: a run's outcome in its run dir (results.py: what resume and a sweep's table read),
how pictures become its input (preprocessing.py), its model rebuilt from a checkpoint (classifier.py), which run
a user means (resolve.py), runs side by side (run_table.py), pictures classified with a run (classify.py); and,
as Hydra callbacks, whether a run dir may be written at all (dir_guard.py) and the one run dir of torchrun's
processes (rank_zero_dir.py)."""
