"""Every function the recorder runs for the training process, in one table: the only names a call may carry.

The training process names them and never imports them (they import mlflow, matplotlib, onnxruntime);
the recorder imports each when first called or while it waits for calls. tests/test_architecture.py
resolves every entry without torch, so a renamed function fails there, not in the middle of a run.
"""

from __future__ import annotations

from enum import Enum


class Remote(str, Enum):
    # A run's MLflow run (sweeplab.tracking.session), each call keyed by the run's dir.
    START_RUN = "sweeplab.tracking.session:start_run"
    LOG_METRICS = "sweeplab.tracking.session:log_metrics"
    LOG_MISSING_EPOCHS = "sweeplab.tracking.session:log_missing_epochs"
    LOG_ARTIFACT = "sweeplab.tracking.session:log_artifact"
    LOG_FIGURES = "sweeplab.tracking.session:log_figures"
    LOG_INPUTS = "sweeplab.tracking.session:log_inputs"
    LOG_TEST_PREDICTIONS = "sweeplab.tracking.session:log_test_predictions"
    SET_TAG = "sweeplab.tracking.session:set_tag"
    END_RUN = "sweeplab.tracking.session:end_run"
    LOG_EXPORT = "sweeplab.tracking.logged_model:log_export"
    # A sweep's parent run.
    START_SWEEP = "sweeplab.tracking.sweep:start_sweep"
    REFRESH_SUMMARY = "sweeplab.tracking.sweep:refresh_summary"
    LOG_BEST_EXPORT = "sweeplab.tracking.sweep:log_best_export"
    END_SWEEP = "sweeplab.tracking.sweep:end_sweep"
    LOG_SEARCH_INSIGHT = "sweeplab.tracking.study_report:log_search_insight"
    # A job's files, after its record: its result, then what keep_checkpoints discards.
    WRITE_RESULT = "sweeplab.runs.results:write_result"
    DISCARD_CHECKPOINTS = "sweeplab.sweeps.retention:discard_checkpoints"
    # The export check (onnx, onnxruntime).
    VERIFY_ONNX = "sweeplab.export.onnx_check:verify_onnx"
    # Preparations done while the recorder waits for calls (see WARM_UP).
    WARM_UP_FIGURES = "sweeplab.tracking.figures:warm_up"
    WARM_UP_MODEL_LOGGING = "sweeplab.tracking.logged_model:warm_up"

    @property
    def module(self) -> str:
        return self.value.partition(":")[0]

    @property
    def function(self) -> str:
        return self.value.partition(":")[2]


# The calls about one run, whose first argument is its run dir: what a run keeps when the recorder is gone.
RUN_CALLS = (Remote.START_RUN, Remote.LOG_METRICS, Remote.LOG_MISSING_EPOCHS, Remote.LOG_ARTIFACT, Remote.LOG_FIGURES,
             Remote.LOG_INPUTS, Remote.LOG_TEST_PREDICTIONS, Remote.SET_TAG, Remote.END_RUN, Remote.LOG_EXPORT,
             Remote.WRITE_RESULT, Remote.DISCARD_CHECKPOINTS)

# What the recorder prepares while it waits for its first calls, in this order: each entry's module imported,
# and the WARM_UP_ functions called. MLflow's side of a run first, then drawing and model logging; the export check.
TRACKING_WARM_UP = (Remote.START_RUN, Remote.START_SWEEP, Remote.LOG_EXPORT, Remote.WARM_UP_FIGURES,
                    Remote.WARM_UP_MODEL_LOGGING)
EXPORT_WARM_UP = (Remote.VERIFY_ONNX,)
