"""`sweeplab confirm`: more seeds for a finished sweep's best configurations, into its sweep dir and MLflow parent run.

It runs the sweep's own command again (kept in its sweep dir's multirun.yaml, from the folder it was started in)
with `sweep.confirm.top` and `sweep.confirm.seeds` (sweeplab.sweeps.confirm): the top configurations by their mean
each get seeds until they have that many finished, a grid's as jobs numbered after its own, a search's as trials of
its study. The sweep's table then shows every configuration over its seeds, and its best (exported, and named by
the parent run's sweep.best_config) is chosen by mean.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from sweeplab.core.errors import UserError
from sweeplab.core.overrides import typed_hydra_overrides
from sweeplab.core.vocabulary import MULTIRUN_RECORD, RESULT_FILE, SWEEP_DIR_TAG
from sweeplab.tracking.store import check_reachable, resolve_uri

CONFIRM_KEYS = "sweep.confirm."


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("confirm", help="run more seeds of a sweep's best configurations",
                                   description=__doc__)
    parser.add_argument("--sweep", "-s", required=True,
                        help="the sweep: its sweep dir (multirun/...), its MLflow parent run id or prefix, or latest")
    parser.add_argument("--top", type=int, default=3, help="how many configurations, the best by mean (default 3)")
    parser.add_argument("--seeds", type=int, default=5,
                        help="finished seeds each has afterwards, those it has included (default 5)")
    parser.add_argument("--plan", action="store_true", help="print the jobs it would run, and run nothing")
    parser.add_argument("--uri", help="tracking store, for --sweep by run (default: $MLFLOW_TRACKING_URI, else "
                                      "sqlite:///./mlflow.db)")
    parser.set_defaults(run=run)


def run(args) -> int:
    if args.top < 1 or args.seeds < 1:
        raise UserError(f"--top {args.top} --seeds {args.seeds}: confirm at least 1 configuration with at least 1 seed")
    arguments, folder = confirm_arguments(sweep_dir_of(args.sweep, args.uri), args.top, args.seeds)
    arguments += ["sweep.plan=true"] if args.plan else []
    print(f"Running in {folder}: python train.py {shlex.join(arguments)}", flush=True)
    return subprocess.run([sys.executable, "-m", "sweeplab.cli.train", *arguments], cwd=folder).returncode


def sweep_dir_of(sweep: str, uri: str | None) -> Path:
    """The sweep dir a user means: a folder as it is; a parent run (its id, a prefix, or latest) by its tag."""
    if Path(sweep).is_dir():
        return Path(sweep).resolve()
    from mlflow import MlflowClient  # only for a sweep named by its run

    from sweeplab.runs.run_table import sweep_parent

    uri = resolve_uri(uri)
    check_reachable(uri)
    client = MlflowClient(uri)
    parent = sweep_parent(client, [e.experiment_id for e in client.search_experiments()], sweep)
    return Path(client.get_run(parent).data.tags[SWEEP_DIR_TAG])


def confirm_arguments(sweep_dir: Path, top: int, seeds: int) -> tuple[list[str], Path]:
    """train.py's arguments: `-m`, the sweep's overrides, its dir and the confirmation; and the folder it ran in."""
    record = sweep_dir / MULTIRUN_RECORD
    confirm = [f"hydra.sweep.dir={sweep_dir}", f"{CONFIRM_KEYS}top={top}", f"{CONFIRM_KEYS}seeds={seeds}"]
    if not record.is_file() and any(sweep_dir.glob(f"*/{RESULT_FILE}")):
        raise UserError(f"{sweep_dir} keeps no {MULTIRUN_RECORD} (an older sweeplab's searches kept none): run the "
                        f"sweep's own command again with {' '.join(confirm)}")
    if not record.is_file():
        raise UserError(f"{sweep_dir} holds no {MULTIRUN_RECORD}, which a sweep keeps its command in: pass a sweep dir "
                        "(multirun/<date>/<time>), not a run dir")
    kept = OmegaConf.load(record).hydra
    task = [override for override in kept.overrides.task if not override.startswith(CONFIRM_KEYS)]
    return ["-m", *task, *typed_hydra_overrides(list(kept.overrides.hydra)), *confirm], Path(kept.runtime.cwd)
