"""The reconcile pass's writes besides the status: children (create-if-absent) and Events."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from ..api.conditions import EventNote
from ..kube import ApiError, ChildOutcome, KubeClient, ObjectRef, ensure_child, post_event
from .cache import Body

logger = logging.getLogger(__name__)


async def apply_children(client: KubeClient, manifests: list[dict[str, Any]]) -> bool:
    """Create each manifest unless it exists; True when the last one (the Job) was new.

    What the Job needs (ServiceAccount, Role, RoleBinding, ConfigMap, Service) is created
    concurrently, the Job itself only once they all exist.
    """
    *needed, last = manifests
    outcomes = await asyncio.gather(*(ensure_child(client, manifest) for manifest in needed))
    outcomes.append(await ensure_child(client, last))
    for manifest, outcome in zip(manifests, outcomes, strict=True):
        if outcome == ChildOutcome.ADOPTED:
            logger.info("adopted %s %s", manifest["kind"], manifest["metadata"]["name"])
    return outcomes[-1] == ChildOutcome.CREATED


async def post_events(
    client: KubeClient, body: Body, notes: list[EventNote], *, now: datetime
) -> list[tuple[EventNote, str]]:
    """Post each note as an Event on the FineTuneJob; those the API refused, with its reason (never fatal)."""
    meta = body["metadata"]
    involved = ObjectRef(
        api_version=body.get("apiVersion", "kubetune.dev/v1alpha1"),
        kind=body.get("kind", "FineTuneJob"),
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
    )
    refused: list[tuple[EventNote, str]] = []
    for note in notes:
        try:
            await post_event(
                client, involved=involved, type_=note.type, reason=note.reason, message=note.message, now=now
            )
        except ApiError as error:
            logger.warning("could not post Event %s on %s: %s", note.reason, meta["name"], error.reason)
            refused.append((note, f"{error.status} {error.reason}"))
    return refused
