"""Object-store access for pods: S3-style keys as Secret references, endpoint and region as plain env.

The variables are the ones botocore and s3fs read (and the trainer's `storage.S3Settings`), so the
same env serves AWS S3, MinIO and Ceph RGW. Keys stay `secretKeyRef`s: the operator never reads a
Secret, and a key's value appears in no manifest, status, Event or log.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..api.record import ResolvedJob
from ..api.spec import S3StorageSpec

ACCESS_KEY_ID_ENV = "AWS_ACCESS_KEY_ID"
SECRET_ACCESS_KEY_ENV = "AWS_SECRET_ACCESS_KEY"
SESSION_TOKEN_ENV = "AWS_SESSION_TOKEN"
ENDPOINT_URL_ENV = "AWS_ENDPOINT_URL"
REGION_ENV = "AWS_REGION"


def _from_secret(env: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": env, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def object_store_env(resolved: ResolvedJob) -> list[dict[str, Any]]:
    """The AWS_* variables for spec.storage.s3, in a fixed order; none when the job names no store."""
    s3 = resolved.s3
    if s3 is None:
        return []
    env: list[dict[str, Any]] = []
    ref = s3.credentials_secret_ref
    if ref is not None:
        env.append(_from_secret(ACCESS_KEY_ID_ENV, ref.name, ref.access_key_id_key))
        env.append(_from_secret(SECRET_ACCESS_KEY_ENV, ref.name, ref.secret_access_key_key))
        if ref.session_token_key is not None:
            env.append(_from_secret(SESSION_TOKEN_ENV, ref.name, ref.session_token_key))
    if s3.endpoint_url is not None:
        env.append({"name": ENDPOINT_URL_ENV, "value": s3.endpoint_url})
    if s3.region is not None:
        env.append({"name": REGION_ENV, "value": s3.region})
    return env


def local_object_store_env(s3: S3StorageSpec | None, environ: Mapping[str, str]) -> tuple[dict[str, str], str | None]:
    """`kubetune run --local`: spec.storage.s3's endpoint and region added to `environ` where it sets none.

    No Secret is read on a workstation: the keys come from the user's own AWS_* variables or AWS
    profile; the note (or None) says so when the spec names a Secret and the environment has no key.
    """
    added = dict(environ)
    if s3 is None:
        return added, None
    if s3.endpoint_url is not None:
        added.setdefault(ENDPOINT_URL_ENV, s3.endpoint_url)
    if s3.region is not None:
        added.setdefault(REGION_ENV, s3.region)
    note = None
    if s3.credentials_secret_ref is not None and ACCESS_KEY_ID_ENV not in environ:
        note = (
            f"spec.storage.s3.credentialsSecretRef names Secret {s3.credentials_secret_ref.name}, which a local run "
            f"does not read: export {ACCESS_KEY_ID_ENV} and {SECRET_ACCESS_KEY_ENV} (or AWS_PROFILE) for s3:// URIs"
        )
    return added, note
