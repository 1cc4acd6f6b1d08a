"""Bring `trainingFile` / `validationFile` to a local path, from any URI a FineTuneJob may name.

| URI | where the file comes from |
| --- | --- |
| `/abs/path`, `rel/path`, `file:///abs/path` | this machine, used in place |
| `pvc://claim/path` | the claim, mounted at `<pvcMountRoot>/claim`, used in place |
| `https://host/path` (and `http://`) | streamed with httpx, refused beyond the size limit |
| `s3://bucket/key` | fsspec + s3fs; endpoint and credentials from the standard AWS variables |
| `hf://datasets/org/name[@revision]/path` | `hf_hub_download` into the HF cache; size checked after |

A file that is not there, a bucket or repo that does not exist, access refused: `InvalidInput` with the
spec field in the hint, never retried. A server error, a timeout or a dropped connection:
`InfrastructureFailure`, retried by the operator. Tokens and presigned query strings never appear in
messages: only URIs without their query and the NAMES of environment variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from ..errors import InfrastructureFailure, InvalidInput
from .report import DEFAULT_MAX_FILE_BYTES, GIB

if TYPE_CHECKING:
    import httpx

    from ..contract import TrainerConfig
    from ..hub import HubFailure

CHUNK_BYTES = 1 << 20


class SourceSettings(BaseModel):
    """Where mounts and caches are, and how patient and how generous downloads are."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pvc_mount_root: Path = Field(Path("/mnt/pvc"), description="pvc://claim/path -> <root>/claim/path.")
    hf_cache_dir: Path | None = Field(None, description="Hugging Face cache for hf:// files; None: the hub default.")
    hf_token_env: str | None = Field(None, description="Name of the env var holding the HF token; never the token.")
    max_bytes: int = Field(DEFAULT_MAX_FILE_BYTES, ge=1, description="Largest file downloaded, in bytes.")
    timeout_seconds: float = Field(60.0, gt=0, description="Connect and read timeout of one request.")
    retries: int = Field(2, ge=0, description="Retries of a failed S3 request before it counts as failed.")

    @classmethod
    def from_config(cls, config: TrainerConfig) -> SourceSettings:
        return cls(
            pvc_mount_root=Path(config.data.pvc_mount_root),
            hf_cache_dir=Path(config.runtime.cache_dir),
            hf_token_env=config.model.token_env,
        )


def fetch(
    uri: str,
    *,
    field: str,
    dest_dir: Path,
    settings: SourceSettings,
    environ: Mapping[str, str],
    http: httpx.Client | None = None,
) -> Path:
    """The local path of the file `uri` names, downloading it under `dest_dir` when it is remote.

    `field` is the spec field the URI came from (`spec.trainingFile`), named in every error.
    `environ` supplies AWS_* / HF_* settings and the token variables; `http` is an httpx client to
    reuse (one is made when None).
    """
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "file" and parts.netloc not in {"", "localhost"}:
        # file://data/train.jsonl would read /train.jsonl: `data` parses as a host name.
        raise InvalidInput(
            f"{field}: `{shown_uri(uri)}` names a host ({parts.netloc}); file:// takes an absolute path",
            reason="UnsupportedDataUri",
            field=field,
            hint=f"Write {field} as file:///absolute/path (three slashes) or as a plain path.",
        )
    if scheme in {"", "file"}:
        return _existing(Path(unquote(parts.path) if scheme == "file" else uri), uri=uri, field=field)
    if scheme == "pvc":
        return _existing(
            _pvc_path(parts.netloc, parts.path, root=settings.pvc_mount_root, uri=uri, field=field),
            uri=uri,
            field=field,
        )
    target = dest_dir / field.rpartition(".")[2] / (Path(unquote(parts.path)).name or "data")
    if scheme in {"http", "https"}:
        return _fetch_http(uri, target=target, field=field, settings=settings, http=http)
    if scheme == "s3":
        return _fetch_s3(uri, target=target, field=field, settings=settings, environ=environ)
    if scheme == "hf":
        return _fetch_hf(uri, field=field, settings=settings, environ=environ)
    raise InvalidInput(
        f"{field}: `{scheme}://` URIs are not supported",
        reason="UnsupportedDataUri",
        field=field,
        hint=f"Set {field} to a path, file://, pvc://claim/path, https://, s3://bucket/key or "
        "hf://datasets/org/name/file.",
    )


def shown_uri(uri: str) -> str:
    """`uri` as it may be printed or published: no query string, fragment or user:password.

    Presigned URLs carry their signature in the query string, and `https://user:pass@host/`
    its credentials in the authority; logs, errors and model cards get neither.
    """
    parts = urlsplit(uri)
    if not (parts.query or parts.fragment or "@" in parts.netloc):
        return uri
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=host, query="", fragment="").geturl()


def _not_found(uri: str, *, field: str, what: str = "no such file") -> InvalidInput:
    return InvalidInput(
        f"{field}: {shown_uri(uri)}: {what}",
        reason="DataFileNotFound",
        field=field,
        hint=f"Check {field}: the file must exist before the job starts (upload it, or fix the path).",
    )


def _denied(uri: str, *, field: str, token_env: str | None = None) -> InvalidInput:
    where = f"the token in ${token_env}" if token_env else "the credentials given"
    return InvalidInput(
        f"{field}: {shown_uri(uri)}: access denied with {where}",
        reason="DataAccessDenied",
        field=field,
        hint=f"Give the job credentials that may read {field} (hfTokenSecretRef for hf://, AWS_* variables for s3://).",
    )


def _too_large(uri: str, size: int, *, field: str, limit: int) -> InvalidInput:
    return InvalidInput(
        f"{field}: {shown_uri(uri)} is {size / GIB:.2f} GiB, above the limit of {limit / GIB:.2f} GiB",
        reason="DataFileTooLarge",
        field=field,
        hint=f"Split or sample the data behind {field}.",
    )


def _unavailable(uri: str, *, field: str, detail: str) -> InfrastructureFailure:
    return InfrastructureFailure(
        f"{field}: downloading {shown_uri(uri)} failed: {detail}",
        reason="DataDownloadFailed",
        field=field,
        hint="The storage or the network failed, not the job; it is retried.",
    )


def _existing(path: Path, *, uri: str, field: str) -> Path:
    if not path.is_file():
        raise _not_found(uri, field=field, what="no such file" if not path.exists() else "not a regular file")
    return path


def _pvc_path(claim: str, path: str, *, root: Path, uri: str, field: str) -> Path:
    relative = unquote(path).lstrip("/")
    if not claim or not relative:
        raise InvalidInput(
            f"{field}: `{uri}` names no claim or no file",
            reason="UnsupportedDataUri",
            field=field,
            hint=f"Write {field} as pvc://<claim>/<path inside the claim>.",
        )
    if ".." in Path(relative).parts:
        raise InvalidInput(
            f"{field}: `{uri}` leaves its claim",
            reason="UnsupportedDataUri",
            field=field,
            hint=f"Name a file inside the claim in {field}, without `..`.",
        )
    return root / claim / relative


def _fetch_http(uri: str, *, target: Path, field: str, settings: SourceSettings, http: httpx.Client | None) -> Path:
    import httpx  # noqa: PLC0415 - only downloads need it

    client = http or httpx.Client(timeout=settings.timeout_seconds, follow_redirects=True)
    try:
        with client.stream("GET", uri) as response:
            status = response.status_code
            if status in {404, 410}:
                raise _not_found(uri, field=field, what=f"HTTP {status}")
            if status in {401, 403}:
                raise _denied(uri, field=field)
            if status >= 500 or status == 429:
                raise _unavailable(uri, field=field, detail=f"HTTP {status}")
            if status >= 400:
                raise InvalidInput(
                    f"{field}: {shown_uri(uri)}: HTTP {status}",
                    reason="DataDownloadRefused",
                    field=field,
                    hint=f"Check the URL in {field}.",
                )
            declared = int(response.headers.get("content-length") or 0)
            if declared > settings.max_bytes:
                raise _too_large(uri, declared, field=field, limit=settings.max_bytes)
            return _write_stream(
                response.iter_bytes(CHUNK_BYTES), uri=uri, target=target, field=field, limit=settings.max_bytes
            )
    except httpx.TransportError as error:  # timeouts, refused and reset connections, broken responses
        raise _unavailable(uri, field=field, detail=type(error).__name__) from error
    finally:
        if http is None:
            client.close()


def _write_stream(chunks: Any, *, uri: str, target: Path, field: str, limit: int) -> Path:
    # Write beside the target and rename: a crash never leaves a half file that looks complete.
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    written = 0
    try:
        with partial.open("wb") as out:
            for chunk in chunks:
                written += len(chunk)
                if written > limit:
                    raise _too_large(uri, written, field=field, limit=limit)
                out.write(chunk)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _fetch_s3(uri: str, *, target: Path, field: str, settings: SourceSettings, environ: Mapping[str, str]) -> Path:
    import botocore.exceptions  # type: ignore[import-untyped]  # noqa: PLC0415 - only s3:// needs the AWS stack
    import s3fs  # type: ignore[import-untyped]  # noqa: PLC0415

    parts = urlsplit(uri)
    if not parts.netloc or not parts.path.strip("/"):
        raise InvalidInput(
            f"{field}: `{uri}` names no bucket or no key",
            reason="UnsupportedDataUri",
            field=field,
            hint=f"Write {field} as s3://<bucket>/<key>.",
        )
    from ..storage import S3Settings  # noqa: PLC0415 - the upload's reading of the AWS variables, one place

    fs = s3fs.S3FileSystem(
        **S3Settings.from_env(environ).storage_options(),
        config_kwargs={
            "connect_timeout": settings.timeout_seconds,
            "read_timeout": settings.timeout_seconds,
            "retries": {"max_attempts": settings.retries + 1, "mode": "standard"},
        },
    )
    key = f"{parts.netloc}{unquote(parts.path)}"
    try:
        info = fs.info(key)
        if info.get("type") != "file":
            raise _not_found(uri, field=field, what="not a file (a prefix or a bucket)")
        size = int(info.get("size") or 0)
        if size > settings.max_bytes:
            raise _too_large(uri, size, field=field, limit=settings.max_bytes)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        try:
            fs.get_file(key, str(partial))
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    except FileNotFoundError as error:
        raise _not_found(uri, field=field, what="no such bucket or key") from error
    except PermissionError as error:
        raise _denied(uri, field=field) from error
    except (OSError, botocore.exceptions.BotoCoreError) as error:
        raise _unavailable(uri, field=field, detail=type(error).__name__) from error
    return target


def _hf_data_error(
    failure: HubFailure,
    *,
    uri: str,
    field: str,
    repo_id: str,
    revision: str | None,
    filename: str,
    token_env: str | None,
) -> InvalidInput | InfrastructureFailure:
    """`hub.hub_failure`'s meaning, worded for the data field `field`."""
    match failure.kind:
        case "gated" | "access_denied":
            return _denied(uri, field=field, token_env=token_env)
        case "repo_not_found":
            return InvalidInput(
                f"{field}: dataset repo {repo_id} not found (or private and no token was given)",
                reason="DataRepoNotFound",
                field=field,
                hint=f"Check the repo in {field}; for a private dataset set hfTokenSecretRef.",
            )
        case "revision_not_found":
            return _not_found(uri, field=field, what=f"revision {revision} not found in {repo_id}")
        case "not_cached":
            return _not_found(uri, field=field, what="not in the local Hugging Face cache (HF_HUB_OFFLINE is set)")
        case "entry_not_found":
            return _not_found(uri, field=field, what=f"no file {filename} in {repo_id}")
        case "invalid_repo_id":
            return InvalidInput(
                f"{field}: `{shown_uri(uri)}`: {failure.detail}",
                reason="UnsupportedDataUri",
                field=field,
                hint=f"Write {field} as hf://datasets/<org>/<name>[@<revision>]/<file in the repo>.",
            )
        case "unreachable" | "server_error":
            return _unavailable(uri, field=field, detail=failure.detail)


def _parse_hf(uri: str, *, field: str) -> tuple[str, str | None, str]:
    rest = uri.split("://", 1)[1]
    kind, _, rest = rest.partition("/")
    org, _, rest = rest.partition("/")
    name, _, filename = rest.partition("/")
    name, _, revision = name.partition("@")
    if kind != "datasets" or not org or not name or not filename:
        raise InvalidInput(
            f"{field}: `{uri}` is not a dataset file URI",
            reason="UnsupportedDataUri",
            field=field,
            hint=f"Write {field} as hf://datasets/<org>/<name>[@<revision>]/<file in the repo>.",
        )
    return f"{org}/{name}", revision or None, filename


def _fetch_hf(uri: str, *, field: str, settings: SourceSettings, environ: Mapping[str, str]) -> Path:
    from huggingface_hub import hf_hub_download  # noqa: PLC0415 - only hf:// needs the hub client

    from ..hub import HubSettings, hub_failure  # noqa: PLC0415 - the one reading of HF_* and mapping of hub errors

    repo_id, revision, filename = _parse_hf(uri, field=field)
    hub = HubSettings.from_env(environ, token_env=settings.hf_token_env)
    try:
        local = hf_hub_download(
            repo_id,
            filename,
            repo_type="dataset",
            revision=revision,
            cache_dir=settings.hf_cache_dir,
            # False, not None: never fall back to a token found elsewhere on the machine.
            token=hub.token,
            local_files_only=hub.offline,
            endpoint=hub.endpoint,
            etag_timeout=settings.timeout_seconds,
        )
    except Exception as error:
        failure = hub_failure(error, offline=hub.offline)
        if failure is None:
            raise
        raise _hf_data_error(
            failure,
            uri=uri,
            field=field,
            repo_id=repo_id,
            revision=revision,
            filename=filename,
            token_env=hub.token_env,
        ) from error
    path = Path(str(local))
    size = path.stat().st_size
    if size > settings.max_bytes:
        raise _too_large(uri, size, field=field, limit=settings.max_bytes)
    return path
