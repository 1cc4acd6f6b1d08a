"""Create-if-absent for owned children: a 409 means read the owner, then adopt or refuse; never a second copy.

Children have deterministic names, so after a crash the operator re-renders the same object and
its create meets 409: if the existing object is controlled by this FineTuneJob it is ours already;
if it has no controller it is adopted (its ownerReferences get ours, conditionally on its
resourceVersion); if another controller owns it, `ForeignOwner` names both.
"""

from __future__ import annotations

import enum
from typing import Any

from .client import ApiError, KubeClient
from .resources import resource_of


class ChildOutcome(enum.StrEnum):
    CREATED = "Created"
    EXISTING = "Existing"
    ADOPTED = "Adopted"


class ForeignOwner(Exception):
    """The name is taken by an object another controller owns (e.g. a FineTuneJob deleted and recreated)."""

    def __init__(self, kind: str, name: str, owner: str) -> None:
        super().__init__(f"{kind} {name} exists and is controlled by {owner}; it is not recreated or taken over")
        self.kind = kind
        self.name = name
        self.owner = owner


def _controller(obj: dict[str, Any]) -> dict[str, Any] | None:
    references = obj.get("metadata", {}).get("ownerReferences") or []
    return next((ref for ref in references if ref.get("controller")), None)


async def ensure_child(client: KubeClient, manifest: dict[str, Any]) -> ChildOutcome:
    """Create `manifest` (which carries its controller ownerReference) unless it exists already."""
    resource = resource_of(manifest)
    namespace, name = manifest["metadata"].get("namespace"), manifest["metadata"]["name"]
    ours = _controller(manifest)
    if ours is None:
        raise ValueError(f"{manifest['kind']} {name} has no controller ownerReference; children must be owned")
    try:
        await client.create(resource, manifest, namespace=namespace)
    except ApiError as error:
        if not error.conflict:
            raise
    else:
        return ChildOutcome.CREATED
    existing = await client.get(resource, namespace=namespace, name=name)
    if existing is None:  # collected between our create and our read: create again next pass
        raise ApiError(409, "Conflict", f"{manifest['kind']} {name} vanished while being adopted")
    controller = _controller(existing)
    if controller is not None and controller.get("uid") == ours["uid"]:
        return ChildOutcome.EXISTING
    if controller is not None:
        raise ForeignOwner(manifest["kind"], name, f"{controller.get('kind')} {controller.get('name')}")
    references = [*(existing["metadata"].get("ownerReferences") or []), ours]
    patch = {"metadata": {"ownerReferences": references, "resourceVersion": existing["metadata"]["resourceVersion"]}}
    await client.merge_patch(resource, patch, namespace=namespace, name=name)
    return ChildOutcome.ADOPTED
