"""`sweeplab predict --run RUN | --onnx FILE IMAGE...`: top-k classes of image files with a trained run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sweeplab.core.errors import UserError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="classify image files with a trained run (PyTorch) or its ONNX export (onnxruntime)",
        description=__doc__.splitlines()[0] + " Images are decoded and normalized exactly as in evaluation.",
    )
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--run", dest="run_target", metavar="RUN",
                       help="MLflow run id, run dir or checkpoint file (PyTorch backend)")
    model.add_argument("--onnx", type=Path, help="model.onnx written by `sweeplab export` (onnxruntime backend)")
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files or folders of images")
    parser.add_argument("--top-k", type=int, default=5, help="classes shown per image (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON (one list, an entry per image) for scripts")
    parser.add_argument("--uri", help="tracking store for --run <run id>, or a run dir that kept no checkpoint "
                        "(default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from sweeplab.runs.classify import image_files, onnx_classifier, predict, torch_classifier
    from sweeplab.runs.resolve import find_checkpoint

    if args.top_k < 1:
        raise UserError(f"--top-k {args.top_k} is invalid: show at least 1 class")
    if args.onnx:
        classifier = onnx_classifier(args.onnx)
    else:
        classifier = torch_classifier(find_checkpoint(args.run_target, args.uri).checkpoint)
    predictions = predict(classifier, image_files(args.images), args.top_k)
    for failed in (p for p in predictions if p.error):
        print(f"error: {failed.error}", file=sys.stderr)
    if args.json:
        print(json.dumps([p.as_dict() for p in predictions], indent=2))
    else:
        print_table(predictions, classifier.source)
    return 2 if any(p.error for p in predictions) else 0


def print_table(predictions, source: str) -> None:
    table = Table(title=f"predictions of {source}")
    # Paths are what the user looks for: never cut them to fit a narrow terminal.
    table.add_column("image", no_wrap=True, min_width=max((len(p.image) for p in predictions), default=5))
    table.add_column("class")
    table.add_column("probability", justify="right")
    for prediction in (p for p in predictions if not p.error):
        for rank, (name, probability) in enumerate(zip(prediction.classes, prediction.probabilities, strict=True)):
            table.add_row(prediction.image if rank == 0 else "", name, f"{probability:.2%}",
                          end_section=rank == len(prediction.classes) - 1)
    Console().print(table)
