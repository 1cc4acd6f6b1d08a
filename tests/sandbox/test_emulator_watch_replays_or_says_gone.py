"""A watch from a resourceVersion replays the later changes, or says 410 Gone once the log is past it.

That is what lets a client resume a dropped watch without a relist, and tells it when it must
relist instead (the sandbox's kubelet and Job controller do both; kopf and kubectl too).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import kmock
import pytest

from kubetune_sandbox.emulator import ApiEmulator

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture
async def api() -> AsyncIterator[ApiEmulator]:
    emulator = ApiEmulator(event_log_size=3)
    async with emulator, kmock.Server(emulator):
        emulator.resources.load_bundled()
        yield emulator


async def _version_after(api: ApiEmulator, method: str, url: str, body: dict[str, Any]) -> int:
    headers = MERGE if method == "PATCH" else None
    async with api.request(method, url, json=body, headers=headers) as answer:
        assert answer.status in (200, 201), await answer.text()
        return int((await answer.json())["metadata"]["resourceVersion"])


async def _events_from(api: ApiEmulator, version: int) -> list[tuple[str, Any]]:
    """The events a watch from `version` sends before it goes quiet (timeoutSeconds=1)."""
    params = {"watch": "true", "resourceVersion": str(version), "timeoutSeconds": "1"}
    async with api.get(CONFIGMAPS, params=params) as answer:
        lines = (await answer.text()).splitlines()
    events = [json.loads(line) for line in lines if line.strip()]
    return [(e["type"], e["object"].get("data") or e["object"].get("code")) for e in events]


async def test_a_watch_from_a_logged_version_replays_only_the_later_changes(api: ApiEmulator) -> None:
    created = await _version_after(api, "POST", CONFIGMAPS, {"metadata": {"name": "a"}, "data": {"n": "1"}})
    await _version_after(api, "PATCH", f"{CONFIGMAPS}/a", {"data": {"n": "2"}})
    await _version_after(api, "PATCH", f"{CONFIGMAPS}/a", {"data": {"n": "3"}})

    assert await _events_from(api, created) == [("MODIFIED", {"n": "2"}), ("MODIFIED", {"n": "3"})]


async def test_a_watch_from_a_version_the_log_no_longer_holds_is_told_410(api: ApiEmulator) -> None:
    created = await _version_after(api, "POST", CONFIGMAPS, {"metadata": {"name": "a"}, "data": {"n": "0"}})
    for n in range(1, 5):  # the log holds 3 events: the creation and the first patch fall out
        await _version_after(api, "PATCH", f"{CONFIGMAPS}/a", {"data": {"n": str(n)}})

    assert await _events_from(api, created) == [("ERROR", 410)]
