"""An async Kubernetes API client on aiohttp: the handful of verbs the operator needs, typed errors.

Transient failures (connection errors, 429 and 5xx) are retried a few times with a short
backoff, honouring Retry-After; every other status becomes an `ApiError` at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from types import TracebackType
from typing import Any, Self

import aiohttp

from .. import __version__
from .connection import Connection
from .resources import ApiResource

USER_AGENT = f"kubetune-operator/{__version__}"
MERGE_PATCH = "application/merge-patch+json"
_RETRY_DELAYS = (0.1, 0.5, 1.0, 2.0)
_RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """A Kubernetes API failure, with the Status reason and message the server gave."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        """409 for both AlreadyExists and a stale resourceVersion."""
        return self.status == 409


class KubeClient:
    """One aiohttp session to the API server; use as `async with KubeClient(connection) as client`."""

    def __init__(
        self,
        connection: Connection,
        *,
        timeout_seconds: float = 30.0,
        max_connections: int = 100,
        user_agent: str = USER_AGENT,
    ) -> None:
        self._connection = connection
        self._user_agent = user_agent
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._token = connection.current_token()

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(ssl=self._connection.ssl_context(), limit=self._max_connections)
        self._session = aiohttp.ClientSession(
            base_url=self._connection.server,
            connector=connector,
            timeout=self._timeout,
            headers={"User-Agent": self._user_agent},
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, resource: ApiResource, *, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return await self._call("GET", resource.path(namespace=namespace, name=name))
        except ApiError as error:
            if error.not_found:
                return None
            raise

    async def list(
        self, resource: ApiResource, *, namespace: str | None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await self.list_object(resource, namespace, label_selector)).get("items", [])
        return items

    async def list_object(
        self, resource: ApiResource, namespace: str | None, label_selector: str | None = None
    ) -> dict[str, Any]:
        """The whole List: its `items` and the `metadata.resourceVersion` a watch starts from."""
        params = {"labelSelector": label_selector} if label_selector else None
        return await self._call("GET", resource.path(namespace=namespace), params=params)

    async def create(self, resource: ApiResource, body: dict[str, Any], *, namespace: str | None) -> dict[str, Any]:
        """POST `body`. With a fixed name a retried create meets 409 AlreadyExists; with only
        `generateName` it would make a second object, so a dropped connection or a 5xx (after which
        the server may have created it) is not retried: the caller lists, then decides."""
        named = bool(body.get("metadata", {}).get("name"))
        return await self._call("POST", resource.path(namespace=namespace), body=body, idempotent=named)

    async def merge_patch(
        self,
        resource: ApiResource,
        patch: dict[str, Any],
        *,
        namespace: str | None,
        name: str,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """A JSON merge patch; a `metadata.resourceVersion` in it makes it conditional (409 when stale)."""
        path = resource.path(namespace=namespace, name=name, subresource=subresource)
        return await self._call("PATCH", path, body=patch, content_type=MERGE_PATCH)

    async def delete(
        self, resource: ApiResource, *, namespace: str | None, name: str, grace_period_seconds: int | None = None
    ) -> bool:
        """Delete with background propagation (dependents are collected); False when already gone."""
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        try:
            await self._call("DELETE", resource.path(namespace=namespace, name=name), body=options)
        except ApiError as error:
            if error.not_found:
                return False
            raise
        return True

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        idempotent: bool = True,
    ) -> dict[str, Any]:
        """The call, retried on 429 and, when `idempotent`, on 5xx and dropped connections too."""
        session = self._open()
        data = None if body is None else json.dumps(body)
        for attempt, backoff in enumerate((*_RETRY_DELAYS, None)):
            delay = backoff
            headers = {"Content-Type": content_type, "Accept": "application/json", **self._authorization()}
            try:
                async with session.request(method, path, params=params, data=data, headers=headers) as response:
                    text = await response.text()
                    if response.status == 401 and attempt == 0:
                        self._token = self._connection.current_token()  # a rotated service-account token
                        continue
                    if response.status < 400:
                        result: dict[str, Any] = json.loads(text) if text else {}
                        return result
                    retried = response.status == 429 or (idempotent and response.status in _RETRIED_STATUSES)
                    if not retried or delay is None:
                        raise api_error(response.status, text)
                    delay = max(delay, float(response.headers.get("Retry-After", 0) or 0))
            except aiohttp.ClientConnectionError as error:
                if delay is None or not idempotent:
                    raise ApiError(503, "ServiceUnavailable", f"the API server is unreachable: {error}") from None
            logger.debug("retrying %s %s in %.1fs", method, path, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError(f"{type(self).__name__} is used outside `async with`")
        return self._session

    def _authorization(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}


def api_error(status: int, text: str) -> ApiError:
    """The ApiError for a failed response: the reason and message of its Status body when it has one."""
    try:
        payload = json.loads(text)
    except ValueError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    return ApiError(status, str(payload.get("reason", "")), str(payload.get("message", text[:200])))
