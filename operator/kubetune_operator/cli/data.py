"""`kubetune validate-data FILE`: check a training file the way the trainer will, before uploading it.

Prints every problem as `FILE:LINE: message` (capped by --max-errors), then one summary line, and
exits 1 when the file has any problem. The trainer's own validator runs, so a file this command
accepts is a file the DataDownload stage accepts.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_MAX_ERRORS = 50


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "validate-data",
        help="check a JSONL or Parquet training file: every error with its line number",
        description=__doc__,
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="a .jsonl or .parquet file")
    parser.add_argument(
        "--max-errors",
        type=int,
        default=DEFAULT_MAX_ERRORS,
        metavar="N",
        help=f"list at most N errors, count the rest (default {DEFAULT_MAX_ERRORS})",
    )
    parser.add_argument(
        "--training-method",
        choices=("sft", "dpo"),
        default=None,
        help="also check the file fits this trainingMethod (preference pairs need dpo, other formats sft); "
        "default: any format",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: the operator image has no ML stack, and only this command needs the validator.
    from kubetune_trainer.contract import TrainingMethod  # noqa: PLC0415
    from kubetune_trainer.data import DataLimits, validate_file  # noqa: PLC0415

    path: Path = args.file
    if args.max_errors < 1:
        print("kubetune validate-data: --max-errors must be at least 1")
        return 2
    method = TrainingMethod(args.training_method) if args.training_method else None
    report = validate_file(path, limits=DataLimits(max_errors=args.max_errors), method=method)
    for error in report.errors:
        print(error.located(str(path)))
    if report.errors_omitted:
        print(f"{path}: ... and {report.errors_omitted} more error(s) not shown (raise --max-errors to see them)")
    print(report.summary())
    return 0 if report.ok else 1
