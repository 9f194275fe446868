"""What identifies a run: its config as params, and the code that ran as tags."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sweeplab.core.vocabulary import GIT_COMMIT_TAG, GIT_DIRTY_TAG, MAX_PARAM_LENGTH


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
    return {GIT_COMMIT_TAG: commit, GIT_DIRTY_TAG: str(dirty).lower()}
