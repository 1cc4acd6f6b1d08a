"""The model a job trains, from `fromHfModel`: a full model repo, or a LoRA adapter merged into its base.

`inspect_model` reads only small files (the repo listing, config.json, adapter_config.json)
and runs every rule: the preflight and `kubetune check` stop there. `prepare_model` is what
DataDownload calls: the same inspection, refusing before any weight file moves, then the
download (and, for an adapter, the base download and the merge).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .adapter import ADAPTER_CONFIG, AdapterLineage, adapter_outcomes, base_reference, is_adapter_repo, merge_adapter
from .contract import ModelFacts, ModelSource, TemplateExpectations, WarningNote
from .hub import HubSettings, RepoListing, check_model, fetch, list_repo, read_json
from .model_rules import ModelCheck


@dataclass(frozen=True)
class ModelInspection:
    """What the small files say: the repo asked for, the base (for an adapter) and every rule's outcome."""

    listing: RepoListing
    check: ModelCheck
    """Rules on the model really trained: the base's for an adapter, after the adapter's own rules."""
    base: RepoListing | None = None


@dataclass(frozen=True)
class PreparedModel:
    """The model folder the trainer loads, and where it came from."""

    path: Path
    revision_sha: str
    """Resolved commit of the repo given as fromHfModel (the adapter's, for an adapter)."""
    facts: ModelFacts
    """Facts of the model really trained (the base's, for an adapter)."""
    warnings: tuple[WarningNote, ...]
    lineage: AdapterLineage | None = None


def inspect_model(source: ModelSource, *, cache_dir: Path, environ: Mapping[str, str]) -> ModelInspection:
    """List the repo and run the rules from config.json (and adapter_config.json); no weights move."""
    return inspect_repo(
        source.repo,
        revision=source.revision,
        token_env=source.token_env,
        template=source.template,
        cache_dir=cache_dir,
        environ=environ,
    )


def inspect_repo(
    repo: str,
    *,
    revision: str,
    token_env: str | None,
    template: TemplateExpectations | None,
    cache_dir: Path,
    environ: Mapping[str, str],
) -> ModelInspection:
    """`inspect_model` before a template is chosen (`kubetune check`): template warnings need `template`."""
    settings = HubSettings.from_env(environ, token_env=token_env)
    listing = list_repo(repo, revision=revision, settings=settings, cache_dir=cache_dir)
    if not is_adapter_repo(listing.files):
        check = check_model(listing, template=template, settings=settings, cache_dir=cache_dir)
        return ModelInspection(listing=listing, check=check)
    adapter_config = read_json(listing, ADAPTER_CONFIG, settings=settings, cache_dir=cache_dir)
    own = adapter_outcomes(adapter_config, listing.files, where=f"{listing.repo}@{listing.sha[:12]}")
    base_repo, base_revision = base_reference(adapter_config)
    if base_repo is None:
        check = ModelCheck(repo=listing.repo, revision_sha=listing.sha, outcomes=own, facts=None, warnings=[])
        return ModelInspection(listing=listing, check=check)
    base = list_repo(base_repo, revision=base_revision, settings=settings, cache_dir=cache_dir)
    base_check = check_model(base, template=template, settings=settings, cache_dir=cache_dir)
    check = base_check.model_copy(update={"outcomes": [*own, *base_check.outcomes]})
    return ModelInspection(listing=listing, check=check, base=base)


def prepare_model(
    source: ModelSource, *, cache_dir: Path, environ: Mapping[str, str], merge_dir: Path
) -> PreparedModel:
    """Inspect, refuse on the first failed rule, then download; merge an adapter into its base under `merge_dir`."""
    settings = HubSettings.from_env(environ, token_env=source.token_env)
    inspection = inspect_model(source, cache_dir=cache_dir, environ=environ)
    facts = inspection.check.facts_or_raise()
    warnings = tuple(inspection.check.warnings)
    if inspection.base is None:
        folder, _ = fetch(inspection.listing, settings=settings, cache_dir=cache_dir)
        return PreparedModel(path=folder, revision_sha=inspection.listing.sha, facts=facts, warnings=warnings)
    adapter_folder, _ = fetch(inspection.listing, settings=settings, cache_dir=cache_dir)
    base_folder, _ = fetch(inspection.base, settings=settings, cache_dir=cache_dir)
    lineage = AdapterLineage(
        adapter_repo=inspection.listing.repo,
        adapter_sha=inspection.listing.sha,
        base_repo=inspection.base.repo,
        base_sha=inspection.base.sha,
    )
    merged = merge_adapter(base_path=base_folder, adapter_path=adapter_folder, output_dir=merge_dir, lineage=lineage)
    return PreparedModel(
        path=merged, revision_sha=inspection.listing.sha, facts=facts, warnings=warnings, lineage=lineage
    )
