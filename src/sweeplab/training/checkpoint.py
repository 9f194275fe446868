"""Checkpoints: plain dicts of state_dicts and metadata, written atomically, read weights-only.

A checkpoint holds everything later tools need (export, predict, resume): the model's and
optimizer's state, the resolved config, the class names and the input description.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch

from sweeplab.core.atomic import could_not_write, write_atomically
from sweeplab.core.errors import UserError, first_line
from sweeplab.core.vocabulary import BEST_CHECKPOINT


def save_checkpoint(payload: dict[str, Any], path: Path) -> None:
    """Write to a temporary file, then rename: a crash or a full disk never leaves a half-written checkpoint."""
    try:
        write_atomically(path, lambda temporary: torch.save(payload, temporary))
    except RuntimeError as error:  # torch's writer reports a failed write as a RuntimeError
        raise UserError(could_not_write(path, error, then="resume the run")) from None


def copy_checkpoint(source: Path, target: Path) -> None:
    """Make `target` hold `source`'s bytes without serializing them again (vgg16 + Adam is 1.6 GB).

    A hard link where the filesystem has them: saves always rename a new file into place, so
    a later save of `source` never changes `target`.
    """

    def link(temporary: Path) -> None:
        try:
            os.link(source, temporary)
        except OSError:
            shutil.copyfile(source, temporary)

    write_atomically(target, link)


def load_state_file(path: Path, fix: str = "re-create it or pick another file") -> dict[str, Any]:
    """Load a checkpoint or state_dict without unpickling arbitrary objects; `fix` says what to do if it is damaged."""
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}: check the path")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as error:
        cause = first_line(error).split(". ")[0]  # torch's zip reader goes on about miniz after its first sentence
        raise UserError(f"{path} is not a readable checkpoint ({cause}): {fix}") from None


def load_checkpoint(path: Path) -> dict[str, Any]:
    payload = load_state_file(path)
    if not {"model", "config", "classes"} <= payload.keys():
        raise UserError(
            f"{path} is a state_dict, not a sweeplab checkpoint: pass a run's checkpoints/{BEST_CHECKPOINT}"
        )
    return payload


def serving_weights(payload: dict[str, Any]) -> dict[str, Any]:
    """The weights a run is tested, exported and predicted with: the EMA's under trainer.ema_for_best."""
    if payload["config"]["trainer"].get("ema_for_best") and "ema" in payload:
        return {key.removeprefix("module."): value for key, value in payload["ema"].items() if key != "n_averaged"}
    return payload["model"]
