"""`kubetune validate`: check FineTuneJob and BaseModelTemplate manifests before `kubectl apply`.

A FineTuneJob is checked as the API models read it, then against its template as the operator
resolves it: the template named (by name or alias) must exist, and the job's values must be
within its limits. The templates are the shipped catalog (or --templates DIR), plus any
BaseModelTemplate in the files validated. `model: auto` chooses its template from the model's
config.json, which only `kubetune check` or the operator's preflight reads: its limits are
checked then.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..api.errors import FieldError, InvalidResourceError, validate
from ..api.manifest_yaml import ManifestYamlError, read_documents
from ..api.resources import BaseModelTemplate, FineTuneJob
from ..api.spec import AUTO_TEMPLATE
from ..resolve.catalog import Catalog, load_catalog
from ..resolve.resolution import Unresolved, resolve_job
from ..settings import OperatorSettings

MODELS: dict[str, type[FineTuneJob] | type[BaseModelTemplate]] = {
    "FineTuneJob": FineTuneJob,
    "BaseModelTemplate": BaseModelTemplate,
}


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "validate",
        help="check kubetune manifests, naming every bad field",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="YAML manifests")
    parser.add_argument(
        "--templates",
        "--catalog",
        dest="templates",
        type=Path,
        metavar="DIR",
        help="directory of BaseModelTemplate YAML that jobs are checked against (default: the shipped catalog)",
    )
    parser.set_defaults(run=run)


@dataclass(frozen=True)
class Document:
    source: str
    """`file`, or `file#index` when the file holds several documents."""
    body: Any


def check_document(source: str, document: Any) -> list[FieldError]:
    """Every problem the API models find in one manifest, each with its field path; [] when valid."""
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


def check_against_templates(source: str, job: FineTuneJob, catalog: Catalog) -> tuple[list[str], str]:
    """(problems, note): the job resolved against `catalog` as the operator resolves it."""
    if job.spec.model == AUTO_TEMPLATE:
        checked = f"kubetune check {job.spec.from_hf_model}" if job.spec.from_hf_model else "kubetune check ORG/NAME"
        return [], f"model: auto; the template is chosen from the model's config.json: `{checked}` shows which"
    resolution = resolve_job(
        job.spec,
        job_name=job.metadata.name,
        namespace=job.metadata.namespace or "default",
        templates=catalog.templates,
        settings=OperatorSettings(),
    )
    if resolution.problem is None:
        assert resolution.job is not None
        return [], f"template {resolution.job.template.name}"
    problems = [f"{source}: {line}" for line in resolution.field_errors]
    if resolution.problem == Unresolved.TEMPLATE_NOT_FOUND:
        known = ", ".join(catalog.names()) or "none"
        problems.append(
            f"{source}: spec.model: the templates are {known}; `kubetune templates list` shows them "
            "(--templates DIR checks against yours)"
        )
    return problems, ""


def run(args: argparse.Namespace) -> int:
    failures = 0
    documents: list[Document] = []
    for path in args.files:
        try:
            found = read_documents(path)
        except ManifestYamlError as unreadable:
            print(unreadable, file=sys.stderr)
            failures += 1
            continue
        documents.extend(
            Document(f"{path}#{index}" if len(found) > 1 else str(path), body) for index, body in enumerate(found)
        )
    catalog = _catalog(args.templates, documents)
    if catalog is None:
        return 2
    for document in documents:
        errors = [str(e) for e in check_document(document.source, document.body)]
        note = ""
        if not errors and document.body["kind"] == "FineTuneJob":
            job = validate(FineTuneJob, document.body, kind="FineTuneJob")
            errors, note = check_against_templates(document.source, job, catalog)
        failures += bool(errors)
        for problem in errors:
            print(problem, file=sys.stderr)
        if not errors:
            name = document.body["metadata"].get("name", "")
            print(f"{document.source}: valid {document.body['kind']} {name}" + (f" ({note})" if note else ""))
    return 1 if failures else 0


def _catalog(directory: Path | None, documents: list[Document]) -> Catalog | None:
    """The templates jobs are checked against: the catalog, plus the valid templates among `documents`."""
    try:
        catalog = load_catalog(directory)
    except InvalidResourceError as invalid:
        print(invalid, file=sys.stderr)
        return None
    except (OSError, ManifestYamlError) as error:
        reason = error.strerror if isinstance(error, OSError) else str(error)
        print(f"cannot read the templates {directory}: {reason}", file=sys.stderr)
        return None
    given = [
        validate(BaseModelTemplate, d.body, kind="BaseModelTemplate")
        for d in documents
        if isinstance(d.body, dict)
        and d.body.get("kind") == "BaseModelTemplate"
        and not check_document(d.source, d.body)
    ]
    replaced = {t.name for t in given}
    try:
        return Catalog((*(t for t in catalog if t.name not in replaced), *given))
    except InvalidResourceError as clash:
        print(clash, file=sys.stderr)
        return None
