"""The pending-records file, `mlflow_pending.json` in a run dir: what a run's MLflow record still lacks.

Written by the recorder when the tracking server went away mid-run (sweeplab.tracking.session), and by the
training process when the recorder itself is gone (killed, out of memory) or did not answer a stop in time
(sweeplab.task.job): the metrics, artifacts, tags and final status not delivered. Read back when the run resumes
(its MLflow run reopened, the records delivered first) or by `python -m sweeplab.tracking.upload`. Light: no
mlflow here, the training process writes it too. Written atomically, merged with what the file held before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sweeplab.core.atomic import write_text_atomically
from sweeplab.core.errors import UserError, first_line
from sweeplab.core.masking import masked_tags
from sweeplab.core.vocabulary import ONNX_ARTIFACTS, PENDING_FILE, TEST_DIR
from sweeplab.recorder.remote import Remote
from sweeplab.tracking.handle import metric_rows

KEYS = {"tracking_uri", "run_id", "run_dir", "metrics", "artifacts", "tags", "status"}


def keep_pending(run_dir: Path, *, uri: str | None = None, run_id: str | None = None, status: str | None = None,
                 metrics: list | None = None, artifacts: list | None = None, tags: dict | None = None) -> Path:
    """Add to the run dir's pending file (created if absent); what it held before stays."""
    path = run_dir / PENDING_FILE
    held = read_pending(path) if path.is_file() else {"tracking_uri": uri, "run_id": run_id, "run_dir": str(run_dir),
                                                      "metrics": [], "artifacts": [], "tags": {}, "status": None}
    held["tracking_uri"] = held["tracking_uri"] or uri
    held["run_id"] = held["run_id"] or run_id
    held["status"] = status or held["status"]
    held["metrics"] += [list(row) for row in metrics or []]
    held["artifacts"] += [list(item) for item in artifacts or []]
    held["tags"] |= tags or {}
    write_text_atomically(path, json.dumps(held, indent=1))
    return path


def read_pending(path: Path) -> dict[str, Any]:
    """The file's contents, checked before anything is sent: a damaged file is kept, never half delivered."""
    if not path.is_file():
        raise UserError(f"no pending-upload file at {path}: pass the mlflow_pending.json a run wrote")
    try:
        pending = json.loads(path.read_text())
    except (ValueError, OSError) as error:  # not JSON, not UTF-8, unreadable
        raise UserError(f"{path} is damaged ({first_line(error)}): restore it from a copy; the run's own files beside "
                        "it are untouched") from None
    missing = (KEYS - {"run_dir"}) - pending.keys() if isinstance(pending, dict) else KEYS
    if missing:
        raise UserError(f"{path} is not a pending upload sweeplab wrote (no {', '.join(sorted(missing))}): pass the "
                        "mlflow_pending.json a run wrote")
    return {"run_dir": str(path.parent), **pending}


def undelivered_records(calls: list[tuple[Remote, tuple]]) -> dict[str, Any]:
    """A run's calls the recorder never answered, as pending records (figures and the export check need the
    recorder's libraries: a resumed run draws and checks again)."""
    records: dict[str, Any] = {"metrics": [], "artifacts": [], "tags": {}, "status": None}
    for target, args in calls:
        if target == Remote.START_RUN:  # the run's tags: where the recorder died before the run existed
            records["uri"] = args[1].uri
            records["tags"] |= masked_tags(args[1].tags)
        elif target == Remote.LOG_METRICS:
            records["metrics"] += args[1]
        elif target == Remote.LOG_MISSING_EPOCHS:
            records["metrics"] += [row for epoch, values in args[1].items() for row in metric_rows(values, epoch)]
        elif target == Remote.LOG_EXPORT:
            records["metrics"] += metric_rows(args[1].metrics, 0)
            records["artifacts"] += [[file, ONNX_ARTIFACTS] for file in args[1].files]
        elif target == Remote.LOG_ARTIFACT:
            records["artifacts"].append([args[1], args[2]])
        elif target == Remote.LOG_TEST_PREDICTIONS:  # written by the run itself (sweeplab.sweeps.kept_records)
            records["artifacts"].append([str(Path(args[0]) / TEST_DIR), TEST_DIR])
        elif target == Remote.SET_TAG:
            records["tags"][args[1]] = args[2]
        elif target == Remote.END_RUN:
            records["status"] = args[1]
    return records
