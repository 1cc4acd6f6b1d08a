"""A watch that must relist (410 Gone) reports as DELETED what was deleted while it was away.

Without it the kubelet would never hear of a pod deleted during the gap and would keep its
processes running; an informer does the same (client-go's Replace).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from kubetune_operator.kube.connection import Connection
from kubetune_operator.kube.resources import PODS, ApiResource
from kubetune_sandbox.client import JsonObject, SandboxClient, WatchEvent


def _pod(name: str, version: int, *, uid: str = "") -> JsonObject:
    meta = {"namespace": "default", "name": name, "resourceVersion": str(version), "uid": uid or f"uid-{name}"}
    return {"metadata": meta}


class ScriptedServer(SandboxClient):
    """Lists and watch streams played from a script instead of an API server."""

    def __init__(self, lists: list[list[JsonObject]], streams: list[list[WatchEvent]]) -> None:
        super().__init__(Connection(server="http://127.0.0.1:1"))
        self.lists, self.streams = lists, streams

    async def list_object(
        self, resource: ApiResource, namespace: str | None, label_selector: str | None = None
    ) -> dict[str, Any]:
        items = self.lists.pop(0)
        return {"metadata": {"resourceVersion": str(len(items))}, "items": items}

    async def _stream(
        self, resource: ApiResource, namespace: str | None, label_selector: str | None, *, since: str
    ) -> AsyncIterator[WatchEvent]:
        for event in self.streams.pop(0):
            yield event


async def test_a_relist_after_410_reports_the_pods_deleted_meanwhile() -> None:
    too_old = WatchEvent("ERROR", {"code": 410, "reason": "Expired", "message": "too old resource version"})
    server = ScriptedServer(
        lists=[[_pod("a", 1), _pod("b", 2), _pod("c", 3)], [_pod("a", 9), _pod("d", 10)]],
        streams=[[WatchEvent("MODIFIED", _pod("a", 4)), WatchEvent("DELETED", _pod("c", 5)), too_old]],
    )
    seen: list[tuple[str, str]] = []
    async for event in server.watch(PODS):
        seen.append((event.type, event.object["metadata"]["name"]))
        if len(seen) == 8:
            break

    assert seen == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("ADDED", "c"),
        ("MODIFIED", "a"),
        ("DELETED", "c"),
        ("DELETED", "b"),  # deleted while the watch was away: only the relist can tell
        ("ADDED", "a"),
        ("ADDED", "d"),
    ]


async def test_a_name_made_again_meanwhile_reports_the_old_object_deleted() -> None:
    """Deleted and created again under the same name while the watch was away: two objects, not one."""
    too_old = WatchEvent("ERROR", {"code": 410, "reason": "Expired", "message": "too old resource version"})
    server = ScriptedServer(lists=[[_pod("a", 1)], [_pod("a", 7, uid="uid-a-again")]], streams=[[too_old]])
    seen: list[tuple[str, str]] = []
    async for event in server.watch(PODS):
        seen.append((event.type, event.object["metadata"]["uid"]))
        if len(seen) == 3:
            break

    assert seen == [("ADDED", "uid-a"), ("DELETED", "uid-a"), ("ADDED", "uid-a-again")]
