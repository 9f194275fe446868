"""The loop layer: the fit loop (engine.py) and what it needs around it: the device and precision, random
states, the optimizer and schedule, checkpoints, torchrun's process group, and the callbacks that watch it
(best_epoch.py, console.py, run_log.py, tensorboard.py, profiling.py). Knows nothing of Hydra or MLflow."""
