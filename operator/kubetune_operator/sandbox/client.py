"""The sandbox controllers' API client: the verbs a kubelet and a Job controller use, and watches.

The operator's `kube.KubeClient` has no watch, no status subresource helper and no graceful
delete options; the kubelet needs all three. Watches resume from the last resourceVersion seen
when the stream ends, and relist (every object again as ADDED) when the server answers 410
Gone, so a consumer must treat ADDED as "this object exists now", idempotently.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl as ssl_module
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, NamedTuple, Self

import aiohttp

from .. import __version__
from ..kube.client import MERGE_PATCH, ApiError
from ..kube.resources import ApiResource

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


class ApiClient:
    """One aiohttp session to the API server; `async with ApiClient(...) as client`."""

    def __init__(
        self,
        server: str,
        *,
        ssl: ssl_module.SSLContext | bool,
        token: str | None,
        user_agent: str = USER_AGENT,
        timeout_seconds: float = 30.0,
    ) -> None:
        self._server = server.rstrip("/")
        self._ssl = ssl
        self._token = token
        self._user_agent = user_agent
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"ApiClient({self._server!r})"  # never the token

    async def __aenter__(self) -> Self:
        headers = {"User-Agent": self._user_agent, "Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        self._session = aiohttp.ClientSession(
            base_url=self._server,
            connector=aiohttp.TCPConnector(ssl=self._ssl),
            timeout=self._timeout,
            headers=headers,
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, resource: ApiResource, *, namespace: str | None, name: str) -> JsonObject | None:
        """The object, or None when it does not exist."""
        try:
            return await self._call("GET", resource.path(namespace=namespace, name=name))
        except ApiError as error:
            if error.not_found:
                return None
            raise

    async def list(
        self, resource: ApiResource, *, namespace: str | None = None, label_selector: str | None = None
    ) -> JsonObject:
        """The whole List object: `items` and the `metadata.resourceVersion` to watch from."""
        params = {"labelSelector": label_selector} if label_selector else None
        return await self._call("GET", resource.path(namespace=namespace), params=params)

    async def create(self, resource: ApiResource, body: JsonObject, *, namespace: str | None) -> JsonObject:
        return await self._call("POST", resource.path(namespace=namespace), body=body)

    async def merge_patch(
        self, resource: ApiResource, patch: JsonObject, *, namespace: str | None, name: str
    ) -> JsonObject:
        return await self._call(
            "PATCH", resource.path(namespace=namespace, name=name), body=patch, content_type=MERGE_PATCH
        )

    async def patch_status(
        self, resource: ApiResource, status: JsonObject, *, namespace: str | None, name: str
    ) -> JsonObject:
        """Merge-patch `status` through the status subresource (lists in it are replaced whole)."""
        path = resource.path(namespace=namespace, name=name, subresource="status")
        return await self._call("PATCH", path, body={"status": status}, content_type=MERGE_PATCH)

    async def delete(
        self,
        resource: ApiResource,
        *,
        namespace: str | None,
        name: str,
        grace_period_seconds: int | None = None,
    ) -> bool:
        """Delete with background propagation; False when it was already gone."""
        options: JsonObject = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        try:
            await self._call("DELETE", resource.path(namespace=namespace, name=name), body=options)
        except ApiError as error:
            if error.not_found:
                return False
            raise
        return True

    async def watch(
        self, resource: ApiResource, *, namespace: str | None = None, label_selector: str | None = None
    ) -> AsyncIterator[WatchEvent]:
        """Every object as ADDED, then changes, forever; resumed after a dropped stream, relisted after 410."""
        version: str | None = None
        while True:
            try:
                if version is None:
                    listed = await self.list(resource, namespace=namespace, label_selector=label_selector)
                    version = str(listed.get("metadata", {}).get("resourceVersion") or "")
                    for item in listed.get("items", []):
                        yield WatchEvent("ADDED", item)
                async for event in self._stream(resource, namespace, label_selector, since=version):
                    if event.type == "ERROR":
                        if event.object.get("code") != 410:
                            raise ApiError(
                                int(event.object.get("code") or 500),
                                str(event.object.get("reason", "")),
                                str(event.object.get("message", "")),
                            )
                        version = None  # too old: relist
                        break
                    version = str(event.object.get("metadata", {}).get("resourceVersion") or version)
                    if event.type != "BOOKMARK":
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

    async def _stream(
        self, resource: ApiResource, namespace: str | None, label_selector: str | None, *, since: str
    ) -> AsyncIterator[WatchEvent]:
        params = {"watch": "true", "resourceVersion": since, "allowWatchBookmarks": "true"}
        if label_selector:
            params["labelSelector"] = label_selector
        endless = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with self._open().get(resource.path(namespace=namespace), params=params, timeout=endless) as response:
            if response.status >= 400:
                raise _api_error(response.status, await response.text())
            pending = b""
            async for chunk in response.content.iter_any():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        event = json.loads(line)
                        yield WatchEvent(str(event.get("type", "")), event.get("object") or {})

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> JsonObject:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type}
        async with self._open().request(method, path, params=params, data=data, headers=headers) as response:
            text = await response.text()
            if response.status >= 400:
                raise _api_error(response.status, text)
            result: JsonObject = json.loads(text) if text else {}
            return result

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("ApiClient is used outside `async with`")
        return self._session


def _api_error(status: int, text: str) -> ApiError:
    payload: Any = {}
    with contextlib.suppress(ValueError):
        payload = json.loads(text)
    if not isinstance(payload, dict):
        payload = {}
    return ApiError(status, str(payload.get("reason", "")), str(payload.get("message", text[:200])))
