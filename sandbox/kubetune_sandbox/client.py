"""The sandbox controllers' API client: the operator's `KubeClient`, plus watches and status patches.

A kubelet and a Job controller follow every pod and Job; the operator itself watches through
kopf and needs neither addition. Watches resume from the last resourceVersion seen when the
stream ends, and relist (every object again as ADDED) when the server answers 410 Gone, so a
consumer must treat ADDED as "this object exists now", idempotently.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import aiohttp

from kubetune_operator import __version__
from kubetune_operator.kube.client import ApiError, KubeClient, api_error
from kubetune_operator.kube.connection import Connection
from kubetune_operator.kube.resources import ApiResource

JsonObject = dict[str, Any]
USER_AGENT = f"kubetune-sandbox/{__version__}"
SECRETS = ApiResource("", "v1", "secrets", "Secret")
RECONNECT_SECONDS = 0.2
"""Pause before a watch reconnects after a dropped connection."""

API_FAILURES = (ApiError, aiohttp.ClientError, TimeoutError)
"""What an API call may raise; none of them may end the kubelet or the Job controller."""

log = logging.getLogger(__name__)


class WatchEvent(NamedTuple):
    type: str
    """ADDED, MODIFIED or DELETED."""
    object: JsonObject


class SandboxClient(KubeClient):
    """`async with SandboxClient(connection) as client`: a KubeClient that also watches and patches status."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection, user_agent=USER_AGENT)

    def __repr__(self) -> str:
        return f"SandboxClient({self._connection.server!r})"  # never the token

    async def patch_status(
        self, resource: ApiResource, status: JsonObject, *, namespace: str | None, name: str
    ) -> JsonObject:
        """Merge-patch `status` through the status subresource (lists in it are replaced whole)."""
        return await self.merge_patch(
            resource, {"status": status}, namespace=namespace, name=name, subresource="status"
        )

    async def watch(
        self, resource: ApiResource, *, namespace: str | None = None, label_selector: str | None = None
    ) -> AsyncIterator[WatchEvent]:
        """Every object as ADDED, then changes, forever; resumed after a dropped stream, relisted after 410.

        A relist also gives DELETED for each object seen before that the new list lacks (deleted while
        the watch was away), as an informer does: a kubelet must not keep running a pod that is gone.
        """
        version: str | None = None
        known: dict[tuple[str | None, str], JsonObject] = {}
        while True:
            try:
                if version is None:
                    version, listed = await self._relist(resource, namespace, label_selector, known)
                    for event in listed:
                        yield event
                async for event in self._stream(resource, namespace, label_selector, since=version):
                    if event.type == "ERROR":
                        _raise_unless_expired(event)
                        version = None  # too old: relist
                        break
                    version = str(event.object.get("metadata", {}).get("resourceVersion") or version)
                    if event.type != "BOOKMARK":
                        _remember(known, event)
                        yield event
            except (aiohttp.ClientError, TimeoutError) as error:
                log.debug("watch of %s dropped: %s", resource.plural, error)
                await asyncio.sleep(RECONNECT_SECONDS)
            except ApiError as error:
                # An informer never gives up: a refused watch (a 5xx, a 429) is tried again from a fresh list.
                if error.status != 410:
                    log.warning("watch of %s refused: %s; listing again", resource.plural, error)
                    await asyncio.sleep(RECONNECT_SECONDS)
                version = None

    async def _relist(
        self,
        resource: ApiResource,
        namespace: str | None,
        label_selector: str | None,
        known: dict[tuple[str | None, str], JsonObject],
    ) -> tuple[str, list[WatchEvent]]:
        """The List's resourceVersion; DELETED for each known object it lacks (or holds under the same
        name but another uid: deleted and made again meanwhile), then ADDED for each it has."""
        listed = await self.list_object(resource, namespace, label_selector)
        fresh = {_key(item): item for item in listed.get("items", [])}
        events = [WatchEvent("DELETED", old) for key, old in known.items() if not _same(fresh.get(key), old)]
        events += [WatchEvent("ADDED", item) for item in fresh.values()]
        known.clear()
        known.update(fresh)
        return str(listed.get("metadata", {}).get("resourceVersion") or ""), events

    async def _stream(
        self, resource: ApiResource, namespace: str | None, label_selector: str | None, *, since: str
    ) -> AsyncIterator[WatchEvent]:
        params = {"watch": "true", "resourceVersion": since, "allowWatchBookmarks": "true"}
        if label_selector:
            params["labelSelector"] = label_selector
        endless = aiohttp.ClientTimeout(total=None, sock_read=None)
        path = resource.path(namespace=namespace)
        headers = {"Accept": "application/json", **self._authorization()}
        async with self._open().get(path, params=params, headers=headers, timeout=endless) as response:
            if response.status >= 400:
                raise api_error(response.status, await response.text())
            pending = b""
            async for chunk in response.content.iter_any():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        event = json.loads(line)
                        yield WatchEvent(str(event.get("type", "")), event.get("object") or {})


def _raise_unless_expired(event: WatchEvent) -> None:
    """A watch's ERROR event: 410 Expired means relist; any other is the server's refusal."""
    if event.object.get("code") != 410:
        raise ApiError(
            int(event.object.get("code") or 500),
            str(event.object.get("reason", "")),
            str(event.object.get("message", "")),
        )


def _remember(known: dict[tuple[str | None, str], JsonObject], event: WatchEvent) -> None:
    if event.type == "DELETED":
        known.pop(_key(event.object), None)
    else:
        known[_key(event.object)] = event.object


def _key(obj: JsonObject) -> tuple[str | None, str]:
    metadata = obj.get("metadata", {})
    return metadata.get("namespace"), str(metadata.get("name", ""))


def _same(now: JsonObject | None, before: JsonObject) -> bool:
    """The same object: still there, with the same uid (a name can be reused by a new object)."""
    return now is not None and now.get("metadata", {}).get("uid") == before.get("metadata", {}).get("uid")
