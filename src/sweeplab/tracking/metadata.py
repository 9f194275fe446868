"""What identifies a run: its config as params, the code that ran as tags, and what was installed.

The code is that of two checkouts: the user's project, where the run was launched (MLflow's own source
tags, with the uncommitted changes kept when they are small), and sweeplab's source when it runs from a
checkout rather than an installed wheel: read at every run's start (a few milliseconds). The installed
packages take longer to list (70 ms) and are read once per recorder process: a sweep's jobs share them.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Mapping
from importlib.metadata import distributions, version
from typing import Any

from sweeplab.core.vocabulary import (
    GIT_COMMIT_TAG,
    GIT_DIRTY_TAG,
    MAX_PARAM_LENGTH,
    PROJECT_DIR_TAG,
    SWEEPLAB_COMMIT_TAG,
    SWEEPLAB_DIRTY_TAG,
    SWEEPLAB_VERSION_TAG,
)

MAX_DIFF_BYTES = 256 * 1024  # a larger uncommitted diff is only flagged (git.dirty), not kept


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


def code_tags(project_dir: str, code_dir: str) -> dict[str, str]:
    """The project's commit and dirty flag (MLflow's source tags), sweeplab's own, and sweeplab's version."""
    project, own = git_state(project_dir), git_state(code_dir)
    tags = {SWEEPLAB_VERSION_TAG: version("sweeplab")}
    if project:
        tags |= {GIT_COMMIT_TAG: project[0], GIT_DIRTY_TAG: str(project[1]).lower(), PROJECT_DIR_TAG: project_dir}
    if own:
        tags |= {SWEEPLAB_COMMIT_TAG: own[0], SWEEPLAB_DIRTY_TAG: str(own[1]).lower()}
    return tags


def git_state(folder: str) -> tuple[str, bool] | None:
    """The commit checked out in `folder` and whether tracked files differ from it; None outside a git checkout."""
    try:
        commit = git(folder, "rev-parse", "HEAD")
        dirty = bool(git(folder, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit, dirty


def uncommitted_diff(folder: str) -> str | None:
    """`git diff HEAD` of the project's tracked files, when it has changes and they are small enough to keep; None
    outside a checkout (one git call: the run's tags read the commit and dirty flag already)."""
    try:
        diff = git(folder, "diff", "HEAD")
    except (OSError, subprocess.CalledProcessError):
        return None
    return diff if diff and len(diff.encode()) <= MAX_DIFF_BYTES else None


def git(folder: str, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, check=True).stdout.strip()


@functools.cache
def installed_packages() -> str:
    """Every installed distribution as `name==version`, one per line, sorted: what `sweeplab diff` compares."""
    found = {(d.metadata["Name"] or "").lower(): d.version for d in distributions()}
    return "".join(f"{name}=={found[name]}\n" for name in sorted(found) if name)
