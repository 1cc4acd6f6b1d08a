"""The template catalog: BaseModelTemplate manifests stored once, in the Helm chart.

The chart installs them as objects (`charts/kubetune/files/templates/`); the package ships
the same files (`catalog_files` links there) for the CLI and `kubetune run --local`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from ..api.errors import FieldError, InvalidResourceError, validate
from ..api.manifest_yaml import load_documents
from ..api.resources import BaseModelTemplate


def packaged_catalog_dir() -> Traversable:
    return resources.files("kubetune_operator") / "catalog_files"


@dataclass(frozen=True)
class Catalog:
    templates: tuple[BaseModelTemplate, ...]

    def __post_init__(self) -> None:
        owners: dict[str, str] = {}
        clashes: list[FieldError] = []
        for template in self.templates:
            for reference in (template.name, *template.spec.aliases):
                owner = owners.setdefault(reference, template.name)
                if owner != template.name:
                    clashes.append(
                        FieldError(f"{template.name}: spec.aliases", reference, f"already names template {owner}")
                    )
        if clashes:
            raise InvalidResourceError("template catalog", clashes)

    def __iter__(self) -> Iterator[BaseModelTemplate]:
        return iter(self.templates)

    def __len__(self) -> int:
        return len(self.templates)

    def find(self, reference: str) -> BaseModelTemplate | None:
        """The template a job's `model` names, by object name or alias."""
        return next((t for t in self.templates if t.answers_to(reference)), None)

    def names(self) -> Sequence[str]:
        return [t.name for t in self.templates]


def parse_templates(documents: Iterable[tuple[str, object]]) -> Catalog:
    """(source, YAML document) pairs -> Catalog; every error names its source and field."""
    templates = []
    errors: list[FieldError] = []
    for source, document in documents:
        try:
            templates.append(validate(BaseModelTemplate, document, kind="BaseModelTemplate"))
        except InvalidResourceError as invalid:
            errors.extend(replace(e, path=f"{source}: {e.path}") for e in invalid.errors)
    if errors:
        raise InvalidResourceError("template catalog", errors)
    return Catalog(tuple(sorted(templates, key=lambda t: t.name)))


def load_catalog(directory: Path | Traversable | None = None) -> Catalog:
    """Every `*.yaml` BaseModelTemplate under `directory` (default: the packaged catalog)."""
    root = packaged_catalog_dir() if directory is None else directory
    files = sorted((f for f in root.iterdir() if f.name.endswith((".yaml", ".yml"))), key=lambda f: f.name)
    return parse_templates(
        (file.name, document)
        for file in files
        for document in load_documents(file.read_text(encoding="utf-8"), source=file.name)
    )
