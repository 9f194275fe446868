"""The names layer: what every other package shares and nothing of sweeplab's is imported for. The run
vocabulary, user errors, masked secrets, interrupts, atomic files, the Hydra job and torchrun's ranks as plain
values, overrides read back, rows of runs and their aggregation over seeds. Light: no torch, no mlflow."""
