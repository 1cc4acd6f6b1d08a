"""Whether the job's token may write its hf:// output repo: asked of the hub by the preflight, before any GPU.

The upload meets a refused token only after training; the hub's whoami answer tells the same in a
CPU pod. Refused here, as InvalidInput naming the token's field and the output field, never the
token: the hub refusing the token (401/403), a read-only token, a namespace the token's user does
not belong to (or only reads), a fine-grained token with no write permission at all, or no token.
Anything the answer does not settle (a fine-grained token's scopes, a hub without whoami) is left
to the upload. A hub that cannot be reached is an outage (Internal, retried), as for the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from huggingface_hub import HfApi

from .contract import TrainerConfig
from .errors import InfrastructureFailure, InvalidInput
from .hub import TOKEN_FIELD, HubSettings, hub_failure
from .storage import HubDestination, destination_for

OUTPUT_FIELD = "spec.output.uri"
WRITE_PERMISSION = "repo.write"
_ORG_ROLES_THAT_WRITE = {"write", "admin", "contributor"}


def check_output_access(config: TrainerConfig, *, environ: Mapping[str, str]) -> None:
    """Refuse an hf:// output the job's token cannot write; no-op for other outputs and when offline."""
    destination = destination_for(config.output.uri, pvc_mount_root=config.data.pvc_mount_root)
    if not isinstance(destination, HubDestination):
        return
    settings = HubSettings.from_env(environ, token_env=config.model.token_env)
    if settings.offline:
        return  # nothing can be asked; the upload will say
    namespace = destination.repo_id.split("/", 1)[0]
    if not isinstance(settings.token, str):
        raise _refused(destination.repo_id, "no token was given, and the hub accepts uploads only with one")
    try:
        identity = HfApi(endpoint=settings.endpoint).whoami(token=settings.token)
    except Exception as error:
        failure = hub_failure(error, offline=False)
        if failure is None:
            raise
        if failure.kind == "access_denied":
            raise _refused(destination.repo_id, f"the hub refused the token ({failure.detail})") from None
        if failure.kind == "repo_not_found":  # a hub that answers 404 to whoami: nothing known, the upload decides
            return
        raise InfrastructureFailure(
            f"the Hugging Face Hub failed while checking the token may write hf://{destination.repo_id}: "
            f"{failure.detail}",
            reason="HubUnavailable",
            hint="Retried automatically; check https://status.huggingface.co if it persists.",
        ) from None
    why = _why_not_writable(identity, namespace=namespace, repo_id=destination.repo_id)
    if why is not None:
        raise _refused(destination.repo_id, why)


def _why_not_writable(identity: Mapping[str, Any], *, namespace: str, repo_id: str) -> str | None:
    """What in the whoami answer rules out writing `repo_id`, or None when it does not (or cannot tell)."""
    token = (identity.get("auth") or {}).get("accessToken") or {}
    role = token.get("role")
    if role == "read":
        return "the token is a read token"
    if role == "fineGrained":
        grants = (token.get("fineGrained") or {}).get("scoped") or []
        global_permissions = (token.get("fineGrained") or {}).get("global") or []
        writes = any(WRITE_PERMISSION in (grant.get("permissions") or []) for grant in grants)
        if not writes and not any("write" in str(permission) for permission in global_permissions):
            return f"the fine-grained token has no {WRITE_PERMISSION} permission"
        return None  # which repos its scopes cover is the upload's to find
    if role != "write":
        return None
    user = str(identity.get("name", ""))
    if namespace.lower() == user.lower():
        return None
    orgs = {str(org.get("name", "")).lower(): org.get("roleInOrg") for org in identity.get("orgs") or []}
    if namespace.lower() not in orgs:
        return f"the token's user is not {namespace} and not a member of an organization {namespace}"
    role_in_org = orgs[namespace.lower()]
    if role_in_org is not None and role_in_org not in _ORG_ROLES_THAT_WRITE:
        return f"the token's user may only read in the organization {namespace} (role {role_in_org})"
    return None


def _refused(repo_id: str, why: str) -> InvalidInput:
    return InvalidInput(
        f"the model cannot be uploaded to hf://{repo_id} ({OUTPUT_FIELD}): {why}; the token comes from {TOKEN_FIELD}",
        reason="OutputAccessDenied",
        field=TOKEN_FIELD,
        hint=f"Put a write token of an account that may create repos in {repo_id.split('/', 1)[0]} in the Secret "
        f"{TOKEN_FIELD} names, or set {OUTPUT_FIELD} to a repo that token may write.",
    )
