"""A finished Optuna search, on its sweep's parent run: Optuna's own optimization history and parameter
importances, as figures and as `importance.json` (in the recorder process, at the sweep's end)."""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from pathlib import Path

import optuna
from matplotlib import pyplot
from optuna.trial import TrialState

from sweeplab.core.errors import typed_line
from sweeplab.core.masking import masked_text
from sweeplab.core.vocabulary import SEARCH_ARTIFACTS
from sweeplab.tracking.client import DELIVERY_ERRORS, client


def log_search_insight(uri: str, parent_id: str, storage: str, study_name: str) -> None:
    """What the search learned; a failure to draw or deliver it costs these files, never the sweep."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            write_insight(optuna.load_study(study_name=study_name, storage=storage), Path(folder))
            client(uri).log_artifacts(parent_id, folder, SEARCH_ARTIFACTS)
        except (*DELIVERY_ERRORS, ValueError, RuntimeError, KeyError) as error:  # Optuna's, matplotlib's, MLflow's
            print(f"warning: the search's history and importances are missing from MLflow run {parent_id}: "
                  f"{masked_text(typed_line(error))}", file=sys.stderr)


def write_insight(study: optuna.Study, folder: Path) -> None:
    """optimization_history.png always; importance.json and param_importances.png once two finished trials
    differ in some parameter (importance is undefined before)."""
    pyplot.switch_backend("Agg")  # Optuna draws with pyplot: files only, never a window
    finished = [trial for trial in study.trials if trial.state == TrialState.COMPLETE]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # Optuna calls these plots experimental
        plots = {"optimization_history.png": optuna.visualization.matplotlib.plot_optimization_history}
        if len(finished) >= 2 and any(trial.params != finished[0].params for trial in finished):
            importances = optuna.importance.get_param_importances(study)
            (folder / "importance.json").write_text(json.dumps(importances, indent=1))
            plots["param_importances.png"] = optuna.visualization.matplotlib.plot_param_importances
        for name, plot in plots.items():
            figure = plot(study).figure
            figure.savefig(folder / name, dpi=100, bbox_inches="tight")
            pyplot.close(figure)
