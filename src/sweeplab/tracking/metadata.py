"""What identifies a run: its config as params, and where/how it ran as tags."""

from __future__ import annotations

import platform
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MAX_PARAM_LENGTH = 6000  # MLflow's limit on one param value


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> {"optimizer.lr": "0.001", ...}; lists stay one value, over-long values are cut.

    A cut value ends with "...": the complete config is always in the .hydra/ artifacts.
    """
    params: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            params.update(flatten(value, f"{name}."))
        else:
            text = str(value)
            params[name] = text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."
    return params


def git_state(folder: Path) -> dict[str, str]:
    """Commit and dirty flag of the code that ran; empty outside a git checkout."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"mlflow.source.git.commit": commit, "git.dirty": str(dirty).lower()}


def environment_tags(device: str) -> dict[str, str]:
    import torch
    import torchvision

    return {
        "host": socket.gethostname(),
        "device": device,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torch.threads": str(torch.get_num_threads()),  # fewer than the cores when parallel jobs share them
    }
