"""Create-if-absent for serving objects, owned by their FineTuneJob or not.

A serving object may outlive its job (`serve.owned: false`), so it is known as ours by the
annotations it was rendered with (the job's uid), not by an ownerReference: a create that meets
409 reads the object, and either finds its own earlier copy or a name someone else holds.
"""

from __future__ import annotations

from typing import Any

from .children import ForeignOwner
from .client import ApiError, KubeClient
from .resources import resource_of


async def ensure_objects(client: KubeClient, manifests: list[dict[str, Any]]) -> list[tuple[dict[str, Any], bool]]:
    """Each manifest as stored, with whether this call created it. ApiError (403, 404 for an API group that is
    not installed, 422) and ForeignOwner propagate: the caller says what the user asked for and did not get."""
    stored: list[tuple[dict[str, Any], bool]] = []
    for manifest in manifests:
        resource = resource_of(manifest)
        metadata = manifest["metadata"]
        namespace, name = metadata.get("namespace"), metadata["name"]
        try:
            stored.append((await client.create(resource, manifest, namespace=namespace), True))
            continue
        except ApiError as error:
            if not error.conflict:
                raise
        existing = await client.get(resource, namespace=namespace, name=name)
        if existing is None:  # deleted between our create and our read: the next pass creates it
            raise ApiError(409, "Conflict", f"{manifest['kind']} {name} vanished while being read")
        marks = metadata.get("annotations") or {}
        theirs = existing.get("metadata", {}).get("annotations") or {}
        if any(theirs.get(key) != value for key, value in marks.items()):
            raise ForeignOwner(manifest["kind"], name, "another owner (not this FineTuneJob)")
        stored.append((existing, False))
    return stored
