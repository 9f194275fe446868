"""Why run A differs from run B: their config, code, environment, data and outcome side by side, only where they
differ, and whether B's test accuracy differs from A's by more than chance.

Each part is read from what the run recorded: its composed config (the run dir's `.hydra/config.yaml`, else
the uploaded copy: MLflow params are cut at 6,000 characters), the git state of the project it was launched
from and of sweeplab, its installed packages, its splits' digests and sizes, its per-epoch curves, and its
test split image by image (sweeplab.tracking.per_image). A run recorded before one of these existed is
compared on what it has, and the missing parts are named. `sweeplab diff` (sweeplab.cli.diff) prints it.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from omegaconf import OmegaConf

from sweeplab.config.differences import flattened
from sweeplab.core.errors import UserError, first_line
from sweeplab.core.masking import masked
from sweeplab.core.significance import ALPHA, mcnemar_p, paired_bootstrap
from sweeplab.core.vocabulary import (
    CURVE_TOLERANCE,
    ENVIRONMENT_DIR,
    GIT_COMMIT_TAG,
    GIT_DIRTY_TAG,
    HYDRA_DIR,
    OPTIMIZED_TAG,
    PACKAGES_FILE,
    PROJECT_DIFF_FILE,
    PROJECT_DIR_TAG,
    RUN_DIR_TAG,
    SWEEPLAB_COMMIT_TAG,
    SWEEPLAB_DIRTY_TAG,
    SWEEPLAB_VERSION_TAG,
    TEST_ACC,
    TEST_DIR,
    THREADS_TAG,
    TRAIN_ACC,
    TRAIN_LOSS,
    VAL_ACC,
    VAL_LOSS,
    best_metric,
)
from sweeplab.runs.resolve import run_id_of
from sweeplab.tracking.per_image import PREDICTIONS_FILE, SplitPredictions, read_split_predictions
from sweeplab.tracking.store import run_started_in

CURVES = (VAL_ACC, VAL_LOSS, TRAIN_LOSS, TRAIN_ACC)
ENVIRONMENT_TAGS = ("host", "device", "precision", THREADS_TAG, "python", "torch", "torchvision")
IGNORED_KEYS = {"paths.output_dir"}  # differs between every two runs, says nothing about them
MOVED_CLASSES = 5  # the test classes whose accuracy moved most, listed
T = TypeVar("T")


@dataclass
class RunRecord:
    """What one run recorded, as far as it did: None where it recorded nothing of that kind."""

    run: Run
    config: dict[str, Any] | None
    packages: dict[str, str] | None
    test: SplitPredictions | None
    curves: dict[str, list[float]] = field(default_factory=dict)  # per epoch, from the first
    best_epoch: int | None = None

    @property
    def short_id(self) -> str:
        return self.run.info.run_id[:8]

    def missing(self) -> list[str]:
        parts = {"its composed config (.hydra/config.yaml)": self.config, "its installed packages": self.packages,
                 "its per-image test predictions": self.test}
        return [name for name, value in parts.items() if value is None]


def find_run(client: MlflowClient, text: str) -> Run:
    """A run by its id, the unique prefix of one, or its run dir."""
    if Path(text).is_dir():
        run = run_started_in(client, Path(text).resolve())
        if run is None:
            raise UserError(f"no run recorded from {Path(text).resolve()} in {client.tracking_uri}: check --uri")
        return run
    try:
        return client.get_run(run_id_of(client, text))
    except MlflowException:
        raise UserError(f"no run {text} in {client.tracking_uri}: copy an id from `sweeplab compare`") from None


def read_record(client: MlflowClient, run: Run, scratch: Path) -> RunRecord:
    """The run's records, from its run dir where it is on this machine, else from its MLflow artifacts."""
    config = recorded_file(client, run, f"{HYDRA_DIR}/config.yaml", scratch)
    packages = recorded_file(client, run, f"{ENVIRONMENT_DIR}/{PACKAGES_FILE}", scratch)
    test = recorded_file(client, run, f"{TEST_DIR}/{PREDICTIONS_FILE}", scratch)
    best = client.get_metric_history(run.info.run_id, best_metric(run.data.tags.get(OPTIMIZED_TAG, VAL_ACC)))
    return RunRecord(
        run=run,
        config=readable(config, lambda path: flattened(masked(OmegaConf.to_container(OmegaConf.load(path))))),
        packages=readable(packages, lambda path: dict(line.split("==", 1) for line in path.read_text().splitlines()
                                                      if "==" in line)),
        test=readable(test, read_split_predictions),
        curves={name: [m.value for m in sorted(client.get_metric_history(run.info.run_id, name),
                                               key=lambda m: m.step)] for name in CURVES if name in run.data.metrics},
        best_epoch=best[-1].step if best else None,  # logged at the best epoch's step
    )


def readable(path: Path | None, read: Callable[[Path], T]) -> T | None:
    """`read(path)`, None without a file, one line for a damaged one (a diff reads files it did not write)."""
    if path is None:
        return None
    try:
        return read(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, yaml.YAMLError) as error:
        raise UserError(f"{path} is damaged ({first_line(error)}): restore it from the run's MLflow artifacts, or "
                        "diff another run") from None


def recorded_file(client: MlflowClient, run: Run, relative: str, scratch: Path) -> Path | None:
    local = Path(run.data.tags.get(RUN_DIR_TAG, "/nonexistent")) / relative
    if local.is_file():
        return local
    try:
        return Path(client.download_artifacts(run.info.run_id, relative, str(scratch / run.info.run_id)))
    except (MlflowException, OSError):
        return None


def diff_runs(client: MlflowClient, a: Run, b: Run, tolerance: float = CURVE_TOLERANCE) -> dict[str, Any]:
    """Every part in which B differs from A (empty parts left out), the paired test comparison, and what is missing."""
    with tempfile.TemporaryDirectory() as folder:
        first, second = (read_record(client, run, Path(folder)) for run in (a, b))
    data = data_changes(a, b)
    parts = {
        "runs": {"a": a.info.run_id, "b": b.info.run_id},
        "config": config_changes(first, second),
        "code": code_changes(a, b),
        "environment": environment_changes(first, second),
        "data": data,
        "outcome": outcome(first, second, tolerance),
        "test": paired_test(first, second, data),
        "missing": {record.short_id: record.missing() for record in (first, second) if record.missing()},
    }
    return {name: part for name, part in parts.items() if part}


def config_changes(a: RunRecord, b: RunRecord) -> dict[str, list[Any]]:
    if a.config is None or b.config is None:
        return {}
    keys = sorted((a.config.keys() | b.config.keys()) - IGNORED_KEYS)
    return {key: [a.config.get(key), b.config.get(key)] for key in keys if a.config.get(key) != b.config.get(key)}


def code_changes(a: Run, b: Run) -> dict[str, Any]:
    """The project's and sweeplab's commits and dirty flags where they differ, and `git diff --stat` between the
    project's two commits when its checkout is on this machine and holds both."""
    keys = (GIT_COMMIT_TAG, GIT_DIRTY_TAG, SWEEPLAB_COMMIT_TAG, SWEEPLAB_DIRTY_TAG, SWEEPLAB_VERSION_TAG)
    changes: dict[str, Any] = {key: [a.data.tags.get(key), b.data.tags.get(key)] for key in keys
                               if a.data.tags.get(key) != b.data.tags.get(key)}
    if GIT_COMMIT_TAG in changes and None not in changes[GIT_COMMIT_TAG]:
        if stat := commits_stat(a.data.tags.get(PROJECT_DIR_TAG), *changes[GIT_COMMIT_TAG]):
            changes["diff --stat"] = stat
    for run, side in ((a, "a"), (b, "b")):
        if run.data.tags.get(GIT_DIRTY_TAG) == "true":
            changes[f"uncommitted changes ({side})"] = f"{ENVIRONMENT_DIR}/{PROJECT_DIFF_FILE} of run {run.info.run_id}"
    return changes


def commits_stat(project_dir: str | None, commit_a: str, commit_b: str) -> str | None:
    if not project_dir or not Path(project_dir).is_dir():
        return None
    try:
        return subprocess.run(["git", "diff", "--stat", commit_a, commit_b], cwd=project_dir, capture_output=True,
                              text=True, check=True).stdout.rstrip() or None
    except (OSError, subprocess.CalledProcessError):
        return None  # not a checkout any more, or one without both commits


def environment_changes(a: RunRecord, b: RunRecord) -> dict[str, list[Any]]:
    """Where and with what each run computed, and the installed packages whose versions differ."""
    changes = {key: [a.run.data.tags.get(key), b.run.data.tags.get(key)] for key in ENVIRONMENT_TAGS
               if a.run.data.tags.get(key) != b.run.data.tags.get(key)}
    if a.packages is not None and b.packages is not None:
        for name in sorted(a.packages.keys() | b.packages.keys()):
            if a.packages.get(name) != b.packages.get(name):
                changes[f"package {name}"] = [a.packages.get(name), b.packages.get(name)]
    return changes


def data_changes(a: Run, b: Run) -> dict[str, list[Any]]:
    """Each split's `digest (size)` where the two runs read different data: then their scores do not compare."""
    splits_a, splits_b = splits(a), splits(b)
    return {split: [splits_a.get(split), splits_b.get(split)] for split in sorted(splits_a.keys() | splits_b.keys())
            if splits_a.get(split) != splits_b.get(split)}


def splits(run: Run) -> dict[str, str]:
    found = {}
    for item in run.inputs.dataset_inputs if run.inputs else []:
        context = next((tag.value for tag in item.tags if tag.key == "mlflow.data.context"), "")
        rows = json.loads(item.dataset.profile or "{}").get("num_rows")
        found[context] = f"{item.dataset.name}@{item.dataset.digest} ({rows} images)"
    return found


def outcome(a: RunRecord, b: RunRecord, tolerance: float) -> dict[str, Any]:
    """The curves' first differing epochs, best epochs and scores, and the test classes that moved most."""
    result: dict[str, Any] = {}
    for name in CURVES:
        if name in a.curves and name in b.curves:
            result[f"{name} curve"] = curve_difference(a.curves[name], b.curves[name], tolerance)
    optimized = a.run.data.tags.get(OPTIMIZED_TAG, VAL_ACC)
    for key in (best_metric(optimized), TEST_ACC):
        result[key] = [a.run.data.metrics.get(key), b.run.data.metrics.get(key)]
    result["best epoch"] = [a.best_epoch, b.best_epoch]
    if a.test is not None and b.test is not None and a.test.classes == b.test.classes:
        result["test classes moved most"] = moved_classes(a.test, b.test)
    return result


def curve_difference(a: list[float], b: list[float], tolerance: float) -> dict[str, Any]:
    """The first epoch (from 1) where the curves differ at all, and where they differ by more than `tolerance`."""
    pairs = list(zip(a, b, strict=False))
    first = next((epoch for epoch, (x, y) in enumerate(pairs, 1) if x != y), None)
    beyond = next((epoch for epoch, (x, y) in enumerate(pairs, 1) if abs(x - y) > tolerance), None)
    return {"epochs": [len(a), len(b)], "first different epoch": first, f"first beyond {tolerance:g}": beyond,
            "last": [a[-1] if a else None, b[-1] if b else None]}


def moved_classes(a: SplitPredictions, b: SplitPredictions) -> list[list[Any]]:
    """[class, accuracy in A, accuracy in B] of the classes whose test accuracy moved most, largest move first."""
    accuracy_a, accuracy_b = a.per_class_accuracy(), b.per_class_accuracy()
    moves = [[name, accuracy_a[name], accuracy_b[name]] for name in a.classes
             if accuracy_a[name] is not None and accuracy_a[name] != accuracy_b[name]]
    return sorted(moves, key=lambda move: -abs(move[2] - move[1]))[:MOVED_CLASSES]


def paired_test(a: RunRecord, b: RunRecord, data: dict[str, list[Any]]) -> dict[str, Any]:
    """B's test accuracy minus A's on the same images: its 95% paired bootstrap interval and the exact McNemar test;
    or why they cannot be paired."""
    if a.test is None or b.test is None:
        return {}
    if "test" in data or not (len(a.test.labels) == len(b.test.labels) and (a.test.labels == b.test.labels).all()):
        return {"refused": "the two runs' test splits differ, so their test images cannot be paired"}
    difference, low, high = paired_bootstrap(a.test.right, b.test.right)
    only_a, only_b, p = mcnemar_p(a.test.right, b.test.right)
    return {"images": len(a.test.labels), "difference": difference, "interval": [low, high], "only a right": only_a,
            "only b right": only_b, "mcnemar p": p, "distinguishable": p < ALPHA}


def verdict(test: dict[str, Any]) -> str:
    """The paired comparison in words."""
    low, high = test["interval"]
    points = f"{test['difference'] * 100:+.2f} points (95% interval {low * 100:+.2f} to {high * 100:+.2f})"
    split = (f"{test['only a right']} images only A got right, {test['only b right']} only B "
             f"(exact McNemar p = {test['mcnemar p']:.3g})")
    if test["distinguishable"]:
        return f"B - A: {points}; {split}: the difference is larger than chance explains"
    return f"B - A: {points}; {split}: not distinguishable from chance on these {test['images']} images"


def diff_lines(diff: dict[str, Any]) -> list[str]:
    """The diff to read in a terminal: a section per part that differs, `a -> b` in each."""
    lines = [f"a: run {diff['runs']['a']}", f"b: run {diff['runs']['b']}"]
    for part in ("config", "code", "environment", "data", "outcome"):
        if part in diff:
            lines += [f"{part}{HEADINGS.get(part, '')}:", *(f"  {key}: {shown(value)}" for key, value in
                                                          diff[part].items())]
    if same := [part for part in ("config", "code", "environment", "data") if part not in diff]:
        lines.append(f"the same: {', '.join(same)}" + (" (as far as both recorded them)" if "missing" in diff else ""))
    if test := diff.get("test"):
        lines.append(f"test: {test['refused']}" if "refused" in test else f"test, paired: {verdict(test)}")
    for run_id, parts in diff.get("missing", {}).items():
        lines.append(f"run {run_id} has no record of {', '.join(parts)} (an older sweeplab kept none): compared "
                     "without it")
    return lines


HEADINGS = {"config": " (a -> b)", "data": " (the runs read different data: their scores do not compare)"}


def shown(value: Any) -> str:
    """`old -> new` for a pair; a curve's summary; other values as they are."""
    if isinstance(value, list) and len(value) == 2 and not isinstance(value[0], list):
        return f"{plain(value[0])} -> {plain(value[1])}"
    if isinstance(value, dict):
        return "; ".join(f"{key} {shown(item)}" for key, item in value.items())
    if isinstance(value, list):
        return ", ".join(f"{name} {plain(old)} -> {plain(new)}" for name, old, new in value)
    return str(value).replace("\n", "\n    ")


def plain(value: Any) -> str:
    if value is None:
        return "(none)"
    return f"{value:.6g}" if isinstance(value, float) else str(value)
