"""Trained runs, read back: how pictures become a run's input (preprocessing.py), its model rebuilt from a
checkpoint (classifier.py), which run a user means (resolve.py), runs side by side (run_table.py), pictures
classified with a run (classify.py); and, as Hydra callbacks, whether a run dir can be written (dir_guard.py)
and the one run dir of torchrun's processes (rank_zero_dir.py)."""
