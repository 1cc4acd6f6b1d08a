"""`kubetune crds`: write the CRDs from the models, or check the files in the repo have not drifted."""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path
from typing import Any

from ..api import crdgen


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "crds", help="write crds/*.yaml from the API models", description=__doc__
    )
    parser.add_argument("--out", type=Path, default=Path("crds"), help="directory of the CRD files (default: crds)")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when a file differs from the models"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    drifted = []
    for name, text in crdgen.rendered_files().items():
        path = out / name
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current == text:
            print(f"{path}: up to date")
            continue
        if args.check:
            drifted.append(path)
            diff = difflib.unified_diff(
                current.splitlines(keepends=True), text.splitlines(keepends=True), str(path), f"{path} (generated)"
            )
            sys.stderr.writelines(list(diff)[:60])
        else:
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"{path}: written")
    if drifted:
        print(
            f"{len(drifted)} CRD file(s) differ from the API models: run `kubetune crds` and commit the result",
            file=sys.stderr,
        )
        return 1
    return 0
