"""The emulator's watch side: a bounded log of change events, and the open watches they go to.

Every change is logged with its resourceVersion; a watch from a version replays the later
events, or is told 410 Gone when the log no longer reaches back that far (as the API server's
watch cache does). Each open watch has a queue the new events are put on as they happen.
"""

from __future__ import annotations

import asyncio
import collections

import attrs
import kmock

from kubetune_sandbox import apimachinery as api

from .apimachinery import JsonObject

END_OF_WATCH: JsonObject = {"type": "END"}
"""Put on a watcher's queue when the server stops: the watch stream ends (never sent to the client)."""


@attrs.define(eq=False)
class Watcher:
    """One open watch: what it selects, and the queue of events for it."""

    resource: kmock.resource
    namespace: str | None
    name: str | None
    label_selector: str | None
    field_selector: str | None
    queue: asyncio.Queue[JsonObject] = attrs.field(factory=asyncio.Queue)

    def wants(self, resource: kmock.resource, obj: JsonObject) -> bool:
        meta = obj.get("metadata", {})
        return (
            resource == self.resource
            and (self.namespace is None or meta.get("namespace") == self.namespace)
            and (self.name is None or meta.get("name") == self.name)
            and api.labels_match(self.label_selector, meta.get("labels") or {})
            and api.fields_match(self.field_selector, obj)
        )


class WatchEvents:
    """The last `size` events, and the watchers to deliver new ones to."""

    def __init__(self, size: int) -> None:
        self._log: collections.deque[tuple[int, kmock.resource, JsonObject]] = collections.deque(maxlen=size)
        self._dropped_upto = 0
        self._watchers: set[Watcher] = set()
        self.closed = False

    def publish(self, resource: kmock.resource, kind: str, body: JsonObject) -> None:
        """Log a change (ADDED, MODIFIED, DELETED) at its resourceVersion and send it to every watcher of it."""
        event = {"type": kind, "object": body}
        if len(self._log) == self._log.maxlen:
            self._dropped_upto = self._log[0][0]
        self._log.append((int(body["metadata"]["resourceVersion"]), resource, event))
        self.deliver(resource, event)

    def deliver(self, resource: kmock.resource, event: JsonObject) -> None:
        """Send `event` to the watchers of its object without logging it (a re-delivery)."""
        for watcher in list(self._watchers):
            if watcher.wants(resource, event["object"]):
                watcher.queue.put_nowait(event)

    def since(self, version: int, watcher: Watcher) -> list[JsonObject]:
        """The logged events after `version` that `watcher` selects; 410 Gone when the log is past it."""
        if version < self._dropped_upto:
            raise api.gone(f"too old resource version: {version} ({self._dropped_upto})")
        return [event for rv, resource, event in self._log if rv > version and watcher.wants(resource, event["object"])]

    def open(self, watcher: Watcher) -> None:
        self._watchers.add(watcher)
        if self.closed:
            watcher.queue.put_nowait(END_OF_WATCH)

    def end_all(self) -> None:
        """The server stops: every open watch, and any opened from now on, gets END_OF_WATCH and ends."""
        self.closed = True
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(END_OF_WATCH)

    def close(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)
