"""`sweeplab export <run id | run dir | checkpoint>`: ONNX export with verified parity, after the fact."""

from __future__ import annotations

import argparse
from pathlib import Path

from sweeplab.config.schema import ExportConfig
from sweeplab.core.vocabulary import EXPORT_DIR, ONNX_ARGMAX_AGREEMENT, ONNX_MAX_ABS_DIFF, ONNX_NUM_IMAGES


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    defaults = ExportConfig()
    parser = subparsers.add_parser(
        "export",
        help="export a trained run to ONNX and verify it against PyTorch",
        description=__doc__.splitlines()[0] + " Works on a CPU machine for runs trained on a GPU.",
    )
    parser.add_argument("target", help="MLflow run id, run dir (outputs/...) or checkpoint file")
    parser.add_argument("--out", type=Path, help="folder for model.onnx (default: <run dir>/export)")
    parser.add_argument("--tolerance", type=float, default=defaults.tolerance,
                        help="largest allowed |logit difference| (default: %(default)g)")
    parser.add_argument("--num-images", type=int, default=defaults.num_images,
                        help="validation images to verify on (default: %(default)s)")
    parser.add_argument("--data-dir", type=Path,
                        help="where the run's data is on this machine (default: the run's paths.data_dir)")
    parser.add_argument("--random-inputs", action="store_true",
                        help="verify on random images, for machines without the run's data (a weaker check)")
    parser.add_argument("--uri", help="tracking store for a run id (default: $MLFLOW_TRACKING_URI, else "
                        "sqlite:///./mlflow.db); the results are logged back to that run")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from sweeplab.export.from_checkpoint import export_and_verify
    from sweeplab.runs.resolve import find_checkpoint
    from sweeplab.training.console import results_console

    target = find_checkpoint(args.target, args.uri)
    out_dir = args.out or target.run_dir / EXPORT_DIR
    record = None
    if target.run_id:  # the results go back to the MLflow run the user named
        from sweeplab.tracking.logged_model import log_export_to_run

        def record(export_record) -> None:
            log_export_to_run(target.tracking_uri, target.run_id, str(target.run_dir), export_record)

    report = export_and_verify(target.checkpoint, out_dir, args.tolerance, args.num_images, args.random_inputs,
                               args.data_dir, record)
    checked = "random images" if args.random_inputs else "validation images"
    lines = [
        f"Exported {target.checkpoint} to {report.files[0]}",
        f"  verified on {report.metrics[ONNX_NUM_IMAGES]:.0f} {checked}: max |logit difference| "
        f"{report.metrics[ONNX_MAX_ABS_DIFF]:.2g}, argmax agreement {report.metrics[ONNX_ARGMAX_AGREEMENT]:.0%}",
        *(f"  with {file}" for file in report.files[1:]),
    ]
    results_console.print("\n".join(lines), soft_wrap=True, markup=False, highlight=False)
    return 0
