"""Which run a user means: a checkpoint file, a run dir, a full MLflow run id, or the unique prefix of one
(the 8 characters `sweeplab compare` shows). One resolver for `compare`, `export` and `predict`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from sweeplab.core.errors import UserError, first_line
from sweeplab.core.vocabulary import BEST_CHECKPOINT, CHECKPOINTS_DIR, RUN_DIR_TAG
from sweeplab.runs.results import checkpoint_in, read_result
from sweeplab.tracking.store import check_reachable, resolve_uri, run_started_in

RUN_ID = re.compile(r"[0-9a-f]{32}")
RUN_ID_PREFIX = re.compile(r"[0-9a-f]{4,31}")
LISTED = 5  # candidates named in an ambiguous-prefix error
DOWNLOADED_RUNS = "downloaded_runs"  # where the checkpoints of runs trained elsewhere are put


@dataclass
class RunTarget:
    """A checkpoint, and the MLflow run it belongs to if the user named one."""

    checkpoint: Path
    run_id: str | None = None
    tracking_uri: str | None = None

    @property
    def run_dir(self) -> Path:
        """Where a run keeps its files: the folder above checkpoints/, else the checkpoint's own folder."""
        folder = self.checkpoint.parent
        return folder.parent if folder.name == CHECKPOINTS_DIR else folder


def run_id_of(client: MlflowClient, text: str) -> str:
    """A full run id as is; a prefix of one, if exactly one run in the store starts with it."""
    if RUN_ID.fullmatch(text):
        return text
    if not RUN_ID_PREFIX.fullmatch(text):
        raise UserError(f"{text} is not an MLflow run id: copy one (or its first 8 characters) from `sweeplab compare`")
    experiments = [e.experiment_id for e in client.search_experiments()]
    matches = [r.info.run_id for r in client.search_runs(experiments, max_results=50000)
               if r.info.run_id.startswith(text)]
    if not matches:
        raise UserError(f"no run id starts with {text} in {client.tracking_uri}: check the id or --uri")
    if len(matches) > 1:
        listed = ", ".join(matches[:LISTED]) + (", ..." if len(matches) > LISTED else "")
        raise UserError(f"run id prefix {text} matches {len(matches)} runs ({listed}): give more characters")
    return matches[0]


def find_checkpoint(target: str, tracking_uri: str | None = None) -> RunTarget:
    """A checkpoint file, a run dir (its checkpoints/best.pt) or an MLflow run id or prefix (its run dir tag)."""
    path = Path(target)
    if path.is_file():
        return RunTarget(path)
    if path.is_dir():
        check_not_a_sweep(path)
        if read_result(path) is not None and not (path / CHECKPOINTS_DIR / BEST_CHECKPOINT).is_file():
            return recorded_run_checkpoint(path.resolve(), tracking_uri)  # trainer.keep_checkpoints=none
        return RunTarget(checkpoint_in(path))
    if RUN_ID_PREFIX.fullmatch(target) or RUN_ID.fullmatch(target):
        return mlflow_run_checkpoint(target, tracking_uri)
    raise UserError(f"{target} is neither a checkpoint file, a run dir nor an MLflow run id: check it")


def recorded_run_checkpoint(run_dir: Path, tracking_uri: str | None) -> RunTarget:
    """A run dir whose checkpoints were discarded: its best.pt from the MLflow run recorded from it."""
    uri = resolve_uri(tracking_uri)
    check_reachable(uri)
    client = MlflowClient(uri)
    run = run_started_in(client, run_dir)
    if run is None:
        raise UserError(f"{run_dir} kept no checkpoint (trainer.keep_checkpoints=none) and no MLflow run in {uri} "
                        "was recorded from it: pass --uri of the store it was tracked in, or its MLflow run id")
    return RunTarget(downloaded_checkpoint(client, run.info.run_id, run_dir), run.info.run_id, uri)


def check_not_a_sweep(folder: Path) -> None:
    """A sweep dir holds its jobs' run dirs: say which to pass rather than that it has no checkpoint."""
    jobs = sorted(best.parents[1] for best in folder.glob(f"*/{CHECKPOINTS_DIR}/{BEST_CHECKPOINT}"))
    if jobs and not (folder / CHECKPOINTS_DIR).is_dir():
        raise UserError(f"{folder} is a sweep dir, not a run: pass one of its {len(jobs)} jobs' run dirs, e.g. "
                        f"{jobs[0]} (its table, or `sweeplab compare --sweep {folder}`, shows the best)")


def mlflow_run_checkpoint(text: str, tracking_uri: str | None) -> RunTarget:
    uri = resolve_uri(tracking_uri)
    check_reachable(uri)
    client = MlflowClient(uri)
    run_id = run_id_of(client, text)
    try:
        tags = client.get_run(run_id).data.tags
    except MlflowException as error:
        raise UserError(f"no MLflow run {run_id} at {uri} ({error.message}): check the id or --uri") from None
    if RUN_DIR_TAG not in tags:
        raise UserError(f"MLflow run {run_id} has no {RUN_DIR_TAG} tag (not a sweeplab run?): pass its run dir")
    run_dir = Path(tags[RUN_DIR_TAG])
    if (run_dir / CHECKPOINTS_DIR / BEST_CHECKPOINT).is_file():
        return RunTarget(checkpoint_in(run_dir), run_id, uri)
    return RunTarget(downloaded_checkpoint(client, run_id, run_dir), run_id, uri)


def downloaded_checkpoint(client: MlflowClient, run_id: str, run_dir: Path) -> Path:
    """A run trained elsewhere (or whose checkpoints were discarded): its best.pt from the run's artifacts, into
    ./downloaded_runs/<run id>/ (its export goes beside it)."""
    artifact = f"{CHECKPOINTS_DIR}/{BEST_CHECKPOINT}"
    try:
        return Path(client.download_artifacts(run_id, artifact, str(Path(DOWNLOADED_RUNS) / run_id)))
    except (MlflowException, OSError) as error:
        raise UserError(f"MLflow run {run_id} ran in {run_dir}, which holds no {artifact} here, and its {artifact} "
                        f"artifact cannot be read ({first_line(error)}): copy its run dir here and pass it") from None
