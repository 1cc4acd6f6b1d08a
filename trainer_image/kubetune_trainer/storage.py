"""Putting a saved model at its destination, complete or not at all, and idempotently.

Three kinds of destination, named by `output.uri`:
- a local path or `pvc://claim/path` (the claim mounted under `data.pvcMountRoot`): the files are
  copied into a hidden sibling directory, then renamed into place. A rename is atomic, so a reader
  sees the whole model or nothing.
- `s3://bucket/prefix` (fsspec + s3fs): object stores have no rename, so a manifest,
  `.kubetune-complete.json`, is written last; a prefix without it is incomplete. An existing
  manifest is removed before anything changes, and a failed upload deletes what it wrote.
- `hf://org/repo`: one `upload_folder` call is one commit, all-or-nothing on the Hub's side;
  `delete_patterns="*"` drops files a previous upload left, so the repo holds exactly this model.

Every destination carries the same manifest (path, size, sha256 of every file). Uploading a model
whose manifest equals the one already at the destination changes nothing: running a job's upload
twice gives the same result.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import fsspec  # type: ignore[import-untyped]
from huggingface_hub import HfApi
from pydantic import Field

from .classify import redact_urls, rule_for
from .contract import ErrorClass, OutputSummary, WireModel
from .errors import InfrastructureFailure, InvalidInput
from .hashing import file_sha256

log = logging.getLogger(__name__)

MANIFEST_NAME = ".kubetune-complete.json"
"""Written last at every destination: the model there is complete exactly when this file is."""


class FileEntry(WireModel):
    size: int = Field(ge=0, description="Bytes.")
    sha256: str = Field(description="Hex sha256 of the content.")


class Manifest(WireModel):
    """What a complete upload holds; equal manifests mean equal models."""

    files: dict[str, FileEntry] = Field(description="Relative POSIX path -> size and hash.")

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files.values())

    def to_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


def manifest_of(directory: Path) -> Manifest:
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST_NAME):
        files[path.relative_to(directory).as_posix()] = FileEntry(size=path.stat().st_size, sha256=file_sha256(path))
    return Manifest(files=files)


@dataclass(frozen=True)
class S3Settings:
    """How to reach S3: an endpoint for S3-compatible stores, and credentials (never shown in reprs)."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> S3Settings:
        """The standard AWS variables; absent ones fall back to botocore's own chain (e.g. IRSA)."""
        return cls(
            endpoint_url=environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL"),
            region=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION"),
            access_key_id=environ.get("AWS_ACCESS_KEY_ID"),
            secret_access_key=environ.get("AWS_SECRET_ACCESS_KEY"),
            session_token=environ.get("AWS_SESSION_TOKEN"),
        )

    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for `s3fs.S3FileSystem`."""
        options: dict[str, Any] = {"skip_instance_cache": True}
        if self.access_key_id:
            options |= {"key": self.access_key_id, "secret": self.secret_access_key, "token": self.session_token}
        client: dict[str, str] = {}
        if self.endpoint_url:
            client["endpoint_url"] = self.endpoint_url
        if self.region:
            client["region_name"] = self.region
        if client:
            options["client_kwargs"] = client
        return options


class HubClient(Protocol):
    """The part of `huggingface_hub.HfApi` an upload needs."""

    def create_repo(self, repo_id: str, *, token: str | None, private: bool, exist_ok: bool) -> Any: ...

    def upload_folder(
        self,
        *,
        repo_id: str,
        folder_path: str | Path,
        commit_message: str | None,
        token: str | None,
        delete_patterns: str | None,
    ) -> Any: ...


@dataclass(frozen=True)
class LocalDestination:
    path: Path


@dataclass(frozen=True)
class S3Destination:
    url: str

    @property
    def marker(self) -> str:
        return f"{self.url}/{MANIFEST_NAME}"


@dataclass(frozen=True)
class HubDestination:
    repo_id: str


Destination = LocalDestination | S3Destination | HubDestination


def destination_for(uri: str, *, pvc_mount_root: str) -> Destination:
    """Parse `output.uri`."""
    if uri.startswith("pvc://"):
        claim_path = uri.removeprefix("pvc://").strip("/")
        if "/" not in claim_path:
            raise _bad_uri(uri, "pvc:// needs a claim and a path inside it: pvc://CLAIM/PATH")
        if ".." in claim_path.split("/"):
            # As for data files and checkpoints: the model goes inside the claim, never beside it.
            raise _bad_uri(uri, "pvc://CLAIM/PATH with no '..' in the path")
        return LocalDestination(Path(pvc_mount_root) / claim_path)
    if uri.startswith("s3://"):
        bucket_prefix = uri.removeprefix("s3://").strip("/")
        if "/" not in bucket_prefix:
            raise _bad_uri(uri, "s3:// needs a bucket and a prefix: s3://BUCKET/PREFIX")
        return S3Destination(f"s3://{bucket_prefix}")
    if uri.startswith("hf://"):
        repo_id = uri.removeprefix("hf://").strip("/")
        if repo_id.count("/") != 1:
            raise _bad_uri(uri, "hf:// names a model repo: hf://ORG/NAME")
        return HubDestination(repo_id)
    if uri.startswith("file://"):
        return LocalDestination(Path(uri.removeprefix("file://")))
    if "://" in uri:
        raise _bad_uri(uri, "use a path, pvc://CLAIM/PATH, s3://BUCKET/PREFIX or hf://ORG/NAME")
    return LocalDestination(Path(uri))


def _bad_uri(uri: str, fix: str) -> InvalidInput:
    return InvalidInput(
        f"output.uri {uri!r} is not a destination kubetune can write to",
        reason="InvalidOutputUri",
        hint=f"Set output.uri: {fix}.",
        field="output.uri",
    )


def upload(
    source: Path,
    destination: Destination,
    *,
    uri: str,
    name: str,
    s3: S3Settings | None = None,
    hub: HubClient | None = None,
    hub_token: str | None = None,
    private: bool = True,
) -> OutputSummary:
    """Put the directory `source` at `destination`; return what is there now."""
    manifest = manifest_of(source)
    match destination:
        case LocalDestination(path):
            _to_local(source, path, manifest)
        case S3Destination():
            _to_s3(source, destination, manifest, settings=s3 or S3Settings())
        case HubDestination(repo_id):
            _to_hub(source, repo_id, manifest, hub=hub, token=hub_token, private=private, name=name)
    return OutputSummary(uri=uri, name=name, files=len(manifest.files), bytes=manifest.total_bytes)


def _to_local(source: Path, target: Path, manifest: Manifest) -> None:
    if _read_local_manifest(target) == manifest:
        log.info("%s already holds this model; nothing to upload", target)
        return
    staging = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        for leftover in target.parent.glob(f".{target.name}.*"):
            # A run that died mid-copy leaves its hidden staging directory behind.
            shutil.rmtree(leftover, ignore_errors=True)
        shutil.copytree(source, staging, ignore=shutil.ignore_patterns(MANIFEST_NAME))
        (staging / MANIFEST_NAME).write_bytes(manifest.to_bytes())
        _fsync_tree(staging)
        if target.exists():
            # rename() cannot replace a non-empty directory: move the old one aside first.
            retired = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            target.rename(retired)
            staging.rename(target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise upload_failed(
            exc,
            f"could not write the model to {target}: {exc.strerror or exc}",
            hint="Check the volume behind output.uri is mounted writable and has room for the model.",
        ) from exc


def _read_local_manifest(target: Path) -> Manifest | None:
    try:
        return Manifest.model_validate_json((target / MANIFEST_NAME).read_bytes())
    except (OSError, ValueError):
        return None


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())


def _to_s3(source: Path, destination: S3Destination, manifest: Manifest, *, settings: S3Settings) -> None:
    try:
        sources: dict[str, Path | bytes] = {relative: source / relative for relative in manifest.files}
        _put_s3(destination, manifest, sources=sources, settings=settings)
    except Exception as exc:  # s3fs and botocore raise many kinds: the classification table sorts them
        raise upload_failed(
            exc,
            f"could not upload the model to {destination.url}: {type(exc).__name__}: {exc}",
            hint="Check the bucket exists and the pod's S3 credentials may write to it.",
            field="output.uri",
        ) from exc


def put_s3_folder(
    source: Path, url: str, *, files: Manifest, under: str, extra: Mapping[str, bytes], settings: S3Settings
) -> Manifest:
    """Copy `source` (whose `manifest_of` is `files`) to `url/under/`, and the small `extra` files beside it, as an
    upload does: the manifest last. Returns the manifest written.

    Errors are the store's own (s3fs, botocore): the caller says what failed to whom.
    """
    sources: dict[str, Path | bytes] = {f"{under}/{relative}": source / relative for relative in files.files}
    entries = {f"{under}/{relative}": entry for relative, entry in files.files.items()}
    for name, data in extra.items():
        sources[name] = data
        entries[name] = FileEntry(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    manifest = Manifest(files=dict(sorted(entries.items())))
    _put_s3(S3Destination(url.rstrip("/")), manifest, sources=sources, settings=settings)
    return manifest


def fetch_s3_folder(url: str, target: Path, *, settings: S3Settings) -> Manifest | None:
    """The complete folder at `url` into `target` (replacing it); None where there is none to trust.

    Complete means its manifest is there (written last) and every file fetched hashes to it; a
    prefix without one, or with a file that changed in the store, leaves `target` untouched.
    Errors reaching the store are the store's own.
    """
    destination = S3Destination(url.rstrip("/"))
    fs = fsspec.filesystem("s3", **settings.storage_options())
    fs.invalidate_cache()
    if not fs.exists(destination.marker):
        return None
    manifest = Manifest.model_validate_json(fs.cat_file(destination.marker))
    if any(PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts for name in manifest.files):
        log.warning("%s lists files outside its folder: not fetched", destination.marker)
        return None
    staging = target.parent / f".{target.name}.fetch"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for relative in manifest.files:
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(f"{destination.url}/{relative}", str(staging / relative))
        if manifest_of(staging) != manifest:
            log.warning("the files under %s do not hash to its manifest: not trusted", destination.url)
            return None
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _put_s3(
    destination: S3Destination, manifest: Manifest, *, sources: Mapping[str, Path | bytes], settings: S3Settings
) -> None:
    """`manifest`'s files (each a local file or bytes in `sources`) to `destination`, the manifest last."""
    fs = fsspec.filesystem("s3", **settings.storage_options())
    if fs.exists(destination.marker):
        if Manifest.model_validate_json(fs.cat_file(destination.marker)) == manifest:
            log.info("%s already holds this model; nothing to upload", destination.url)
            return
        # From here until the new manifest lands the destination reads as absent, never as mixed.
        fs.rm_file(destination.marker)
    try:
        for relative in manifest.files:
            content = sources[relative]
            if isinstance(content, bytes):
                fs.pipe_file(f"{destination.url}/{relative}", content)
            else:
                fs.put_file(str(content), f"{destination.url}/{relative}")
        _remove_other_objects(fs, destination, keep=set(manifest.files))
        fs.pipe_file(destination.marker, manifest.to_bytes())
    except Exception:
        _remove_other_objects(fs, destination, keep=set())
        raise


def _remove_other_objects(fs: Any, destination: S3Destination, *, keep: set[str]) -> None:
    fs.invalidate_cache()
    prefix = destination.url.removeprefix("s3://")
    for key in fs.find(prefix):
        if key.removeprefix(prefix + "/") not in keep:
            fs.rm_file(f"s3://{key}")


def _to_hub(
    source: Path,
    repo_id: str,
    manifest: Manifest,
    *,
    hub: HubClient | None,
    token: str | None,
    private: bool,
    name: str,
) -> None:
    if hub is None:
        hub = HfApi()
    # The manifest goes into the folder itself (a copy of a large model just to add it would cost
    # minutes); manifests never list themselves, so the folder's own manifest is unchanged by it.
    (source / MANIFEST_NAME).write_bytes(manifest.to_bytes())
    try:
        hub.create_repo(repo_id, token=token, private=private, exist_ok=True)
        # One commit: the Hub shows the whole model or the previous revision, never a mix.
        hub.upload_folder(
            repo_id=repo_id,
            folder_path=source,
            commit_message=f"Upload {name} (kubetune)",
            token=token,
            delete_patterns="*",
        )
    except Exception as exc:
        raise upload_failed(
            exc,
            f"could not upload the model to hf://{repo_id}: {type(exc).__name__}: {exc}",
            hint="Check the token in the job's hfTokenSecretRef may write to the repo (a write token).",
            field="spec.hfTokenSecretRef",
        ) from exc


def upload_failed(
    exc: BaseException, message: str, *, hint: str, field: str = "output.uri"
) -> InfrastructureFailure | InvalidInput:
    """The failure of an upload, with what the classification table says of its causes.

    A refusal (401/403) is InvalidInput naming `field` (the credentials that were refused), never
    retried: each retry would meet the same refusal (a retry resumes at Upload, so it costs no
    training, but the job would only end later with the same answer). Anything else is Internal and
    retried, unless retrying cannot help (a full disk).
    """
    rules = [rule_for(cause) for cause in _causes(exc)]
    refusal = next((rule for rule in rules if rule.error_class is ErrorClass.INVALID_INPUT), None)
    if refusal is not None:
        return InvalidInput(redact_urls(message), reason=refusal.reason, field=field, hint=f"{hint} {refusal.hint}")
    retryable = not any(rule.error_class is ErrorClass.INTERNAL and not rule.retryable for rule in rules)
    return InfrastructureFailure(
        # The message quotes the library's error, which may quote a URL's query or a refused header.
        redact_urls(message),
        reason="UploadFailed",
        hint=f"{hint} The upload is retried." if retryable else hint,
        retryable=retryable,
    )


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain
