"""MLflow tracking for runs and sweeps.

Kept free of imports: `train.py --help` and the Hydra config path import this package (the
sweep callback is named in conf/train.yaml), and mlflow takes seconds to import. Each module
imports mlflow where it is used.
"""
