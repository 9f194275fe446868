"""A finished Optuna search, on its sweep's parent run: Optuna's own optimization history and parameter
importances, as figures and as `importance.json`; with several objectives, each objective's, and the Pareto front
(`pareto.csv`: its trials' params and objectives, `pareto_front.png`). In the recorder process, at the sweep's end.
"""

from __future__ import annotations

import csv
import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import optuna
from matplotlib import pyplot
from optuna.trial import FrozenTrial, TrialState

from sweeplab.core.errors import typed_line
from sweeplab.core.masking import masked_text
from sweeplab.core.vocabulary import SEARCH_ARTIFACTS
from sweeplab.tracking.client import DELIVERY_ERRORS, client


def log_search_insight(uri: str, parent_id: str, storage: str, study_name: str, metrics: list[str],
                       front: list[dict[str, Any]]) -> None:
    """What the search learned; a failure to draw or deliver it costs these files, never the sweep. `front`: the
    Pareto set's jobs (job number, objectives as their result.json has them, re-timed) where there are several."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            write_insight(optuna.load_study(study_name=study_name, storage=storage), Path(folder), metrics, front)
            client(uri).log_artifacts(parent_id, folder, SEARCH_ARTIFACTS)
        except (*DELIVERY_ERRORS, ValueError, RuntimeError, KeyError) as error:  # Optuna's, matplotlib's, MLflow's
            print(f"warning: the search's history and importances are missing from MLflow run {parent_id}: "
                  f"{masked_text(typed_line(error))}", file=sys.stderr)


def write_insight(study: optuna.Study, folder: Path, metrics: list[str], front: list[dict[str, Any]]) -> None:
    """Per objective: optimization_history[_<objective>].png, and its importances once two finished trials differ
    in some parameter (undefined before); with several objectives, the front."""
    pyplot.switch_backend("Agg")  # Optuna draws with pyplot: files only, never a window
    finished = [trial for trial in study.trials if trial.state == TrialState.COMPLETE]
    varied = len(finished) >= 2 and any(trial.params != finished[0].params for trial in finished)
    importances = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # Optuna calls these plots experimental
        # PED-ANOVA's reminder that it explains low values, for every target: `lowered` gives it low-is-good ones.
        warnings.filterwarnings("ignore", message="PedAnovaImportanceEvaluator computes")
        for index, metric in enumerate(metrics):
            suffix = "" if len(metrics) == 1 else f"_{metric.replace('/', '_')}"
            value = None if len(metrics) == 1 else (lambda trial, i=index: trial.values[i])
            save(optuna.visualization.matplotlib.plot_optimization_history(study, target=value, target_name=metric),
                 folder / f"optimization_history{suffix}.png")
            if varied:
                low = None if len(metrics) == 1 else lowered(index, study.directions[index])
                importances[metric] = optuna.importance.get_param_importances(study, target=low)  # PED-ANOVA
                save(optuna.visualization.matplotlib.plot_param_importances(study, target=low, target_name=metric),
                     folder / f"param_importances{suffix}.png")
        if len(metrics) > 1 and finished:
            save(optuna.visualization.matplotlib.plot_pareto_front(study, target_names=metrics),
                 folder / "pareto_front.png")
    if importances:
        (folder / "importance.json").write_text(json.dumps(importances if len(metrics) > 1 else importances[metrics[0]],
                                                           indent=1))
    if front:
        write_front(front, {trial.number: trial for trial in finished}, metrics, folder / "pareto.csv")


def lowered(index: int, direction: optuna.study.StudyDirection) -> Any:
    """One objective of several, as a value to make low: Optuna's importances (PED-ANOVA) ask which params do."""
    sign = -1 if direction == optuna.study.StudyDirection.MAXIMIZE else 1
    return lambda trial: sign * trial.values[index]


def write_front(front: list[dict[str, Any]], trials: dict[int, FrozenTrial], metrics: list[str], path: Path) -> None:
    """The Pareto-optimal trials: number, params, objectives."""
    rows = [{"trial": job["job"], **trials[job["job"]].params, **{m: job["objectives"][m] for m in metrics}}
            for job in front if job["job"] in trials]
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(dict.fromkeys(key for row in rows for key in row)))
        writer.writeheader()
        writer.writerows(rows)


def save(axes: Any, path: Path) -> None:
    figure = axes.figure
    figure.savefig(path, dpi=100, bbox_inches="tight")
    pyplot.close(figure)
