"""MLflow tracking for runs and sweeps, across two processes (see sweeplab.recorder).

In the training process, light modules only (no mlflow): handle.py (a run's handle: every call goes
to the recorder), metrics.py (the metric buffer) and store.py (where runs go). In the recorder
process: session.py (runs), sweep.py (a sweep's parent run and summary), figures.py and client.py,
which import mlflow and matplotlib at their top.
"""
