"""Command-line entry points: `sweeplab-train` (Hydra) and `sweeplab <command>`."""
