"""`kubetune validate`: check FineTuneJob and BaseModelTemplate manifests before `kubectl apply`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from ..api.errors import FieldError, InvalidResourceError, validate
from ..api.resources import BaseModelTemplate, FineTuneJob

MODELS: dict[str, type[FineTuneJob] | type[BaseModelTemplate]] = {
    "FineTuneJob": FineTuneJob,
    "BaseModelTemplate": BaseModelTemplate,
}


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "validate", help="check kubetune manifests, naming every bad field", description=__doc__
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="YAML manifests")
    parser.set_defaults(run=run)


def check_document(source: str, document: Any) -> list[FieldError]:
    """Every problem in one manifest, each with its field path; [] when valid."""
    kind = document.get("kind") if isinstance(document, dict) else None
    model = MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        allowed = ", ".join(MODELS)
        return [FieldError(f"{source}: kind", repr(kind), f"must be one of {allowed}")]
    try:
        validate(model, document, kind=model.__name__)
    except InvalidResourceError as invalid:
        return [FieldError(f"{source}: {e.path}", e.value, e.message) for e in invalid.errors]
    return []


def run(args: argparse.Namespace) -> int:
    failures = 0
    for path in args.files:
        try:
            documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
        except (OSError, yaml.YAMLError) as error:
            print(f"{path}: cannot read: {error}", file=sys.stderr)
            failures += 1
            continue
        for index, document in enumerate(documents):
            source = f"{path}#{index}" if len(documents) > 1 else str(path)
            errors = check_document(source, document)
            failures += bool(errors)
            for problem in errors:
                print(problem, file=sys.stderr)
            if not errors:
                print(f"{source}: valid {document['kind']} {document['metadata'].get('name', '')}")
    return 1 if failures else 0
