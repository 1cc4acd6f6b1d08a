"""The Hugging Face Hub: list a repo, read its config, download a snapshot without pickles.

Every call passes cache_dir, endpoint, token and local_files_only explicitly, taken from the
`environ` handed in: huggingface_hub reads HF_HUB_OFFLINE and HF_ENDPOINT once at import, so
the process environment at call time would be ignored. The token is read from the variable the
config names, never logged, and `False` (no token at all, not an implicit one from
~/.cache/huggingface) when none is named.

Hub exceptions are translated into kubetune's errors in one place, `translated_errors`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import httpx2
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from . import model_rules
from .contract import ModelFacts, ModelSource, TemplateExpectations, WarningNote
from .errors import InfrastructureFailure, InvalidInput
from .hf_cache import repo_folder
from .model_rules import MODEL_FIELD, REVISION_FIELD, ModelCheck

TOKEN_FIELD = "spec.hfTokenSecretRef"

METADATA_PATTERNS = (
    "*.json",  # config, generation config, tokenizer, safetensors index, adapter config, chat_template.json
    "*.jinja",  # chat_template.jinja (transformers 5)
    "tokenizer.model",  # sentencepiece
    "*.tiktoken",
    "merges.txt",
    "vocab.txt",
)
"""Everything but weights a model needs: fetched in full."""

PICKLE_PATTERNS = tuple(f"*{suffix}" for suffix in model_rules.PICKLE_SUFFIXES)

_STANDARD_WEIGHTS = re.compile(r"^(model|adapter_model)(-\d+-of-\d+)?\.safetensors$")
_TRUTHY = {"1", "true", "yes", "on"}


def _check_header_value(token: str, *, token_env: str) -> None:
    """A token is sent as `Authorization: Bearer <token>`: one that no header can carry is the job's input error.

    Found wherever the token is first read, the preflight included, so before any GPU is held. The
    message names the Secret and what is wrong, never the value.
    """
    if token.isascii() and token.isprintable():
        return
    what = "a line break or control character" if token.isascii() else "a character that is not ASCII"
    raise InvalidInput(
        f"the Hugging Face token in {TOKEN_FIELD} (env {token_env}) holds {what}, so no HTTP header can carry it",
        reason="InvalidToken",
        field=TOKEN_FIELD,
        hint="Store only the token in the Secret (hf_...; no quotes, spaces inside or extra lines), "
        "e.g. `kubectl create secret generic hf-token --from-literal=token=hf_...`.",
    )


@dataclass(frozen=True)
class HubSettings:
    """How to reach the hub, from the environment. The token never appears in a repr."""

    endpoint: str | None
    offline: bool
    token_env: str | None
    token: str | bool = field(default=False, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, token_env: str | None) -> HubSettings:
        token: str | bool = False
        if token_env:
            # A Secret made with `echo token > file` ends in a newline: sent as is, the header is
            # refused (and the library's error quotes it, token included).
            token = environ.get(token_env, "").strip() or False
            if isinstance(token, str):
                _check_header_value(token, token_env=token_env)
        return cls(
            endpoint=environ.get("HF_ENDPOINT") or None,
            offline=environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUTHY,
            token_env=token_env,
            token=token,
        )


@dataclass(frozen=True)
class RepoListing:
    """One revision of a repo: the resolved commit and its files (repo-relative paths)."""

    repo: str
    revision: str
    sha: str
    files: tuple[str, ...]
    cached_only: bool = False
    """The hub could not be reached and this revision came from the local cache: read files from there too."""

    def has(self, name: str) -> bool:
        return name in self.files


@dataclass(frozen=True)
class DownloadedModel:
    """A model snapshot on local disk, with the commit it came from and the facts the rules found."""

    snapshot_path: Path
    revision_sha: str
    files: tuple[str, ...]
    facts: ModelFacts
    warnings: tuple[WarningNote, ...] = ()


HubFailureKind = Literal[
    "gated",
    "repo_not_found",
    "revision_not_found",
    "invalid_repo_id",
    "not_cached",
    "unreachable",
    "entry_not_found",
    "access_denied",
    "server_error",
]


@dataclass(frozen=True)
class HubFailure:
    """What a huggingface_hub exception means for the job; each caller words it for its own spec field."""

    kind: HubFailureKind
    detail: str
    """For the message: an HTTP status, an error class or the repo id check's reason."""


def hub_failure(error: BaseException, *, offline: bool) -> HubFailure | None:
    """The meaning of a huggingface_hub (or httpx2) exception, subclasses checked first; None: not one of theirs.

    The one mapping of hub errors, used for models (`translated_errors`) and hf:// data files
    (`data.sources`). `offline`: HF_HUB_OFFLINE was set, so a file missing from the cache is the
    job's problem, not an outage.
    """
    if isinstance(error, GatedRepoError):  # a subclass of RepositoryNotFoundError
        return HubFailure("gated", "gated")
    if isinstance(error, RepositoryNotFoundError):
        return HubFailure("repo_not_found", "repository not found")
    if isinstance(error, RevisionNotFoundError):
        return HubFailure("revision_not_found", "revision not found")
    if isinstance(error, HFValidationError):
        return HubFailure("invalid_repo_id", str(error))
    if isinstance(error, LocalEntryNotFoundError):  # a subclass of EntryNotFoundError
        return HubFailure(
            "not_cached" if offline else "unreachable", "the hub could not be reached and nothing is cached"
        )
    if isinstance(error, EntryNotFoundError):
        return HubFailure("entry_not_found", "no such file")
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else 0
        return HubFailure("access_denied" if status in (401, 403) else "server_error", f"HTTP {status}")
    if isinstance(error, httpx2.TransportError):  # huggingface_hub 2.x speaks httpx2
        return HubFailure("unreachable", type(error).__name__)
    return None


@contextmanager
def translated_errors(repo: str, revision: str, *, settings: HubSettings, cache_dir: Path) -> Iterator[None]:
    """Turn huggingface_hub and HTTP exceptions into InvalidInput (the job's fault) or InfrastructureFailure."""
    try:
        yield
    except Exception as error:
        failure = hub_failure(error, offline=settings.offline)
        if failure is None:
            raise
        raise _model_error(failure, repo, revision, settings=settings, cache_dir=cache_dir) from None


def _model_error(
    failure: HubFailure, repo: str, revision: str, *, settings: HubSettings, cache_dir: Path
) -> InvalidInput | InfrastructureFailure:
    match failure.kind:
        case "gated" | "access_denied":
            return _access_denied(repo, settings=settings, gated=failure.kind == "gated")
        case "repo_not_found":
            return _repo_not_found(repo, settings=settings)
        case "revision_not_found":
            return _revision_not_found(repo, revision)
        case "invalid_repo_id":
            return InvalidInput(
                f"{repo!r} is not a valid Hugging Face repo id: {failure.detail}",
                reason="InvalidRepoId",
                hint=f"Set {MODEL_FIELD} to ORG/NAME, e.g. Qwen/Qwen2.5-0.5B-Instruct.",
                field=MODEL_FIELD,
            )
        case "not_cached":
            return _not_cached(repo, revision, cache_dir=cache_dir)
        case "entry_not_found":  # listed, yet not served: the hub's inconsistency, not the job's
            return _unavailable(repo, "HTTP 404")
        case "unreachable" | "server_error":
            return _unavailable(repo, failure.detail)


def list_repo(repo: str, *, revision: str, settings: HubSettings, cache_dir: Path) -> RepoListing:
    """The commit `revision` resolves to and its files: from the hub, or the local snapshot when offline."""
    if settings.offline:
        return _cached_listing(repo, revision=revision, settings=settings, cache_dir=cache_dir)
    try:
        with translated_errors(repo, revision, settings=settings, cache_dir=cache_dir):
            info = HfApi(endpoint=settings.endpoint, token=settings.token).model_info(repo, revision=revision)
    except InfrastructureFailure as unreachable:
        # Like snapshot_download, fall back to a snapshot already in the cache when the hub cannot be
        # reached (a laptop offline, a cluster whose cache volume holds the model, a hub outage).
        try:
            cached = _cached_listing(repo, revision=revision, settings=settings, cache_dir=cache_dir)
        except InvalidInput:
            raise unreachable from None
        return replace(cached, cached_only=True)
    with translated_errors(repo, revision, settings=settings, cache_dir=cache_dir):
        files = tuple(sorted(s.rfilename for s in info.siblings or []))
        if info.sha is None:
            raise _unavailable(repo, "the hub returned no commit sha")
        return RepoListing(repo=repo, revision=revision, sha=info.sha, files=files)


def _cached_listing(repo: str, *, revision: str, settings: HubSettings, cache_dir: Path) -> RepoListing:
    offline = replace(settings, offline=True)
    with translated_errors(repo, revision, settings=offline, cache_dir=cache_dir):
        folder = Path(
            snapshot_download(repo, revision=revision, cache_dir=cache_dir, local_files_only=True, token=False)
        )
    files = tuple(sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()))
    return RepoListing(repo=repo, revision=revision, sha=folder.name, files=files)


def read_text(listing: RepoListing, name: str, *, settings: HubSettings, cache_dir: Path) -> str:
    """One small text file of the listed commit (chat_template.jinja; the JSON files read_json parses)."""
    with translated_errors(listing.repo, listing.revision, settings=settings, cache_dir=cache_dir):
        path = hf_hub_download(
            listing.repo,
            name,
            revision=listing.sha,
            cache_dir=cache_dir,
            token=settings.token,
            endpoint=settings.endpoint,
            local_files_only=settings.offline or listing.cached_only,
        )
    return Path(str(path)).read_text(encoding="utf-8")


def read_json(listing: RepoListing, name: str, *, settings: HubSettings, cache_dir: Path) -> dict[str, Any]:
    """One small JSON file of the listed commit (config.json, adapter_config.json)."""
    try:
        loaded = json.loads(read_text(listing, name, settings=settings, cache_dir=cache_dir))
    except (UnicodeDecodeError, json.JSONDecodeError) as invalid:
        raise InvalidInput(
            f"{listing.repo}@{listing.sha[:12]} {name} is not valid JSON: {invalid}",
            reason="ModelConfigUnreadable",
            hint=f"Fix {name} in the repo, or set {MODEL_FIELD} to another model.",
            field=MODEL_FIELD,
        ) from None
    if not isinstance(loaded, dict):
        raise InvalidInput(
            f"{listing.repo}@{listing.sha[:12]} {name} is not a JSON object",
            reason="ModelConfigUnreadable",
            hint=f"Fix {name} in the repo, or set {MODEL_FIELD} to another model.",
            field=MODEL_FIELD,
        )
    return loaded


def weight_files(files: Sequence[str]) -> list[str]:
    """The .safetensors files to fetch: the standard model/adapter files when present.

    Some repos also carry the same weights in another layout (Mistral's consolidated.safetensors,
    an original/ folder); fetching only the files transformers loads avoids doubling the download.
    """
    top_level = [f for f in files if "/" not in f and f.endswith(".safetensors")]
    standard = [f for f in top_level if _STANDARD_WEIGHTS.match(f)]
    return standard or top_level


def fetch(listing: RepoListing, *, settings: HubSettings, cache_dir: Path) -> tuple[Path, tuple[str, ...]]:
    """Download the listed commit's metadata and safetensors weights (never a pickle); the snapshot folder."""
    allow = [*METADATA_PATTERNS, *weight_files(listing.files)]
    with translated_errors(listing.repo, listing.revision, settings=settings, cache_dir=cache_dir):
        folder = Path(
            snapshot_download(
                listing.repo,
                revision=listing.sha,
                cache_dir=cache_dir,
                allow_patterns=allow,
                ignore_patterns=list(PICKLE_PATTERNS),
                token=settings.token,
                endpoint=settings.endpoint,
                local_files_only=settings.offline or listing.cached_only,
            )
        )
    present = tuple(sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()))
    return folder, present


def check_model(
    listing: RepoListing, *, template: TemplateExpectations | None, settings: HubSettings, cache_dir: Path
) -> ModelCheck:
    """The model rules for a listed full-model repo, reading only config.json."""
    config = (
        read_json(listing, "config.json", settings=settings, cache_dir=cache_dir)
        if listing.has("config.json")
        else None
    )
    check = model_rules.evaluate(config, listing.files, repo=listing.repo, revision_sha=listing.sha, template=template)
    if not listing.cached_only:
        return check
    note = WarningNote(
        reason="ModelFromLocalCache",
        message=(
            f"the Hugging Face Hub could not be reached; {listing.repo}@{listing.revision} is the cached commit "
            f"{listing.sha[:12]}, which may be older than the hub's"
        ),
    )
    return check.model_copy(update={"warnings": [*check.warnings, note]})


def download_model(source: ModelSource, *, cache_dir: Path, environ: Mapping[str, str]) -> DownloadedModel:
    """List the repo, run the model rules on config.json, then download config, tokenizer and safetensors.

    Refusals (InvalidInput) happen before any weight file moves.
    """
    settings = HubSettings.from_env(environ, token_env=source.token_env)
    listing = list_repo(source.repo, revision=source.revision, settings=settings, cache_dir=cache_dir)
    check = check_model(listing, template=source.template, settings=settings, cache_dir=cache_dir)
    facts = check.facts_or_raise()
    folder, files = fetch(listing, settings=settings, cache_dir=cache_dir)
    return DownloadedModel(
        snapshot_path=folder, revision_sha=listing.sha, files=files, facts=facts, warnings=tuple(check.warnings)
    )


def _token_advice(settings: HubSettings) -> str:
    if settings.token_env is None:
        return f"no token was given: set {TOKEN_FIELD} to a Secret holding a Hugging Face token with access"
    if settings.token is False:
        return f"the token variable {settings.token_env} is empty: check the Secret {TOKEN_FIELD} names"
    return f"the token from {TOKEN_FIELD} (env {settings.token_env}) was refused: check it has access"


def _access_denied(repo: str, *, settings: HubSettings, gated: bool) -> InvalidInput:
    what = "is gated: its license must be accepted on the hub" if gated else "refused access"
    return InvalidInput(
        f"{repo} {what}; {_token_advice(settings)}",
        reason="ModelAccessDenied",
        hint=f"Accept the model's terms on huggingface.co with the account whose token {TOKEN_FIELD} holds, "
        "or use a token with read access.",
        field=TOKEN_FIELD,
    )


def _repo_not_found(repo: str, *, settings: HubSettings) -> InvalidInput:
    private = "" if settings.token else f" (or it is private: set {TOKEN_FIELD})"
    return InvalidInput(
        f"model repo {repo} was not found on the hub{private}",
        reason="ModelRepoNotFound",
        hint=f"Check the spelling of {MODEL_FIELD} (ORG/NAME, as in the huggingface.co URL).",
        field=MODEL_FIELD,
    )


def _revision_not_found(repo: str, revision: str, *, where: str = "") -> InvalidInput:
    return InvalidInput(
        f"revision {revision!r} of {repo} was not found{where} (no such branch, tag or commit)",
        reason="RevisionNotFound",
        hint=f"Set {REVISION_FIELD} to an existing branch, tag or commit of {repo}, or leave it out for main.",
        field=REVISION_FIELD,
    )


def _not_cached(repo: str, revision: str, *, cache_dir: Path) -> InvalidInput:
    try:
        cached = repo_folder(cache_dir, repo).is_dir()
    except ValueError:
        cached = False
    if cached:
        return _revision_not_found(repo, revision, where=f" in the local cache {cache_dir} (HF_HUB_OFFLINE is set)")
    return InvalidInput(
        f"model repo {repo} is not in the local cache {cache_dir}, and HF_HUB_OFFLINE is set",
        reason="ModelRepoNotFound",
        hint=f"Check {MODEL_FIELD}, or download the model into the cache first (or unset HF_HUB_OFFLINE).",
        field=MODEL_FIELD,
    )


def _unavailable(repo: str, detail: str) -> InfrastructureFailure:
    return InfrastructureFailure(
        f"the Hugging Face Hub failed while fetching {repo}: {detail}",
        reason="HubUnavailable",
        hint="Retried automatically; check https://status.huggingface.co if it persists.",
    )
