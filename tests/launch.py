"""`python train.py ...` in the tests: the one helper that starts it in a process of its own, and the override
lists runs share. Its in-process twin, for checks that need no process of their own, is conftest's `train_here`.

A process of its own is for what only a process shows: signals and exit codes, torchrun, the recorder
process, servers, import times, fault injection.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "train.py"
# No record at all: no MLflow run, no export, no progress bar.
QUIET = ["trainer.progress=false", "tracking.enabled=false", "export.onnx=false"]
# Recorded in MLflow, without the export or the logged model.
UNEXPORTED = ["export.onnx=false", "tracking.log_model=false"]
# ... quickly: every metric sent as it comes, no progress bar.
QUICK = [*UNEXPORTED, "tracking.flush_seconds=0", "trainer.progress=false"]
# `command=` for one run on two processes, as `torchrun --standalone --nproc_per_node=2 train.py` runs it.
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(TRAIN)]
# Downloads fail at once instead of fetching data (a local tracking server is not reached through it either).
OFFLINE = {key: "http://127.0.0.1:9" for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}


def user_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A user's environment: none of the test run's tracking URI or Hydra switches, plus `extra`.

    A process that dies of a signal (a torchrun rank once aborted in C++ under a loaded machine, printing only
    "terminate called without an active exception") prints every thread's Python stack: PYTHONFAULTHANDLER.
    """
    inherited = {key: value for key, value in os.environ.items()
                 if key not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    return {**inherited, "PYTHONFAULTHANDLER": "1", **(extra or {})}


def train_command(*arguments: str, command: list[str] | None = None) -> list[str]:
    """No progress bar: what the test reads of the output stays lines."""
    return [*(command or [sys.executable, str(TRAIN)]), *arguments, "trainer.progress=false"]


def run_train(*arguments: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300,
              command: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run train.py (or `command`, e.g. the console script or torchrun) to its end in `cwd`."""
    return subprocess.run(train_command(*arguments, command=command), cwd=cwd, env=user_env(env),
                          capture_output=True, text=True, timeout=timeout)


def start_train(*arguments: str, cwd: Path, env: dict[str, str] | None = None, command: list[str] | None = None,
                **options) -> subprocess.Popen:
    """Start train.py in the background (to stop, kill or watch it); `options` go to Popen."""
    options.setdefault("text", True)
    return subprocess.Popen(train_command(*arguments, command=command), cwd=cwd, env=user_env(env), **options)


def rerun_printed(command: str, *extra: str, cwd: Path) -> subprocess.CompletedProcess:
    """The train.py line `sweeplab compare --command` printed, run here with `extra` (`sweep.plan=true`, `--cfg job`)
    and through this Python: torchrun's arguments are checked by the caller, the config is composed without it."""
    words = shlex.split(command)  # not run_train: an override after `--cfg job` is one argparse refuses
    return subprocess.run([sys.executable, str(TRAIN), *words[words.index("train.py") + 1:], *extra], cwd=cwd,
                          env=user_env(), capture_output=True, text=True, timeout=120)
