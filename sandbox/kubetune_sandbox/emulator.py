"""`ApiEmulator`: kmock's KubernetesEmulator with the API semantics the kubetune operator relies on.

Emulated (checked over HTTP by kopf, kubectl and our own client):
- identity: `metadata.uid`, `creationTimestamp`, `generation` (bumped when anything but metadata and
  status changes), `resourceVersion` from one cluster-wide counter, bumped on every real change; a
  no-op write changes nothing and emits no event; `namespace` taken from the URL (a mismatch is 400);
  `generateName`.
- create: 409 AlreadyExists for a live name; custom resources registered with `register_crd` are
  validated against the CRD's openAPIV3Schema with jsonschema (Draft 4) on create and update:
  422 Invalid with one cause per field; `fieldValidation=Strict` (kubectl's default) also rejects
  unknown fields.
- bodies: JSON, and the protobuf kubectl sends for built-in kinds where the sandbox needs it
  (`kubectl create secret generic` and `kubectl create configmap`: `protobuf_bodies.py`; any other
  protobuf body is 415 naming its kind); a Secret gets the server's defaults (type Opaque,
  stringData folded into data).
- writes: JSON merge patch, JSON patch (add, remove, replace, test; a failed test is 422, as kopf
  expects), PUT; a stale `metadata.resourceVersion` in a patch or PUT body is 409 Conflict.
- status subresource: for resources that declare it, writes to the main resource keep the stored
  status, writes to `/status` change only the status; status sent on create is dropped.
- delete: finalizers and `deletionTimestamp` (the object goes when the last finalizer is removed);
  `preconditions`; ownerReference garbage collection in the background after an owner goes:
  dependents whose owners are all gone are deleted (recursively), `propagationPolicy: Orphan` strips
  the reference instead; like the real API, `batch/v1` Jobs default to Orphan when no policy is sent.
- pods, with `graceful_pod_deletion` (the sandbox's setting; off, pods go at once): a DELETE (or GC) of
  a pod a kubelet took (`spec.nodeName` or a `status.phase`) that is not Succeeded/Failed keeps it,
  with `deletionTimestamp` = now + grace and `deletionGracePeriodSeconds` (the request's
  `gracePeriodSeconds`, else the pod's `terminationGracePeriodSeconds`, else 30), as MODIFIED; a
  later DELETE with a shorter grace moves the deadline in (MODIFIED); grace 0 (the kubelet's last
  DELETE, or a forced one) writes grace 0 (MODIFIED) and removes it. `POST pods/<name>/eviction` calls
  `on_eviction(namespace, name)` (unset: a graceful delete) and answers 201 Success, 404 for no pod.
  `GET pods/<name>/log` (`kubectl logs`) serves `pod_log(namespace, name)` with `container` (400 when
  invalid, or missing for several containers), `tailLines` and `follow` (new text every 0.5 s until
  the pod is Succeeded, Failed or gone); 400 "waiting to start" while it is None.
- list: `kind: <Kind>List`, `apiVersion`, the current resourceVersion; label selectors (`=`, `==`,
  `!=`, `in`, `notin`, `key`, `!key`) and field selectors (`path=value`, `path!=value`).
- watch: JSON lines; from a `resourceVersion` it replays only later events from a bounded event log
  (older than the log: an ERROR event with 410 Expired, as the API server sends); without one, an
  ADDED per live object first; `sendInitialEvents=true` ends the initial list with the
  `k8s.io/initial-events-end` BOOKMARK; label/field selectors; `timeoutSeconds`.
- tables: `Accept: ...;as=Table` on a registered CRD's list or get returns a meta.k8s.io/v1 Table
  with the CRD's additionalPrinterColumns (ages humanised as the server does), for `kubectl get`;
  pods (READY, STATUS, RESTARTS, AGE; IP, NODE wide), Jobs (STATUS, COMPLETIONS, DURATION, AGE) and
  Events (LAST SEEN, TYPE, REASON, OBJECT, MESSAGE) get the server's own printers (`printers.py`);
  other built-ins print NAME and AGE. Rows carry their object as `includeObject` asks (Metadata by
  default; Object for `kubectl get --sort-by`; None). A watch asking
  for Tables (`kubectl get -w`) gets each event's object as a one-row Table.
- discovery from kmock (`load_bundled()` for the built-ins), minus the short names kmock repeats
  on subresources, with the core `groupVersion` as `v1` (kmock's `/v1` hides pods from kubectl);
  `/api/v1/namespaces` (which kmock cannot parse) lists and watches the namespaces that hold
  objects, plus `namespaces` (no namespace objects, no namespace events).
- recording: every request is kept by kmock; `writes()` filters the mutating ones (by User-Agent),
  `journal_text()` joins every URL and body for secret scans; `after_write` callbacks (sync or async) run after a
  write is applied (or refused) and before its response is sent (to stop an operator right after a call);
  `replay` re-delivers an unchanged object to the watchers, as a reconnecting watch may.

Not emulated: server-side apply (415), strategic merge patch (treated as a merge patch, so
lists are replaced), dry runs, defaulting and pruning of custom resources, CEL rules,
int-or-string and other `x-kubernetes-*` schema extensions, admission, RBAC and authentication
(any token is accepted), namespace existence and namespace deletion, graceful termination of
anything but pods, PodDisruptionBudgets (every eviction is allowed), log `previous`,
`sinceSeconds`, `timestamps` and `limitBytes` (ignored), foreground
deletion (treated as background), deletecollection, bookmarks outside the initial list,
`/openapi`, the scheduler, the kubelet and every controller but GC (the operator tests play the
Job controller and the kubelet by writing Pod and Job status; the sandbox runs its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import inspect
import itertools
import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import aiohttp.web
import attrs
import kmock

from kubetune_operator.observe.pod_state import parse_time
from kubetune_sandbox import apimachinery as api
from kubetune_sandbox import printers, protobuf_bodies

from .apimachinery import JsonObject
from .crd_schema import SchemaCheck
from .watch_events import END_OF_WATCH, Watcher, WatchEvents

Key = tuple[kmock.resource, str | None, str]
PODS = kmock.resource("", "v1", "pods")
SECRETS = kmock.resource("", "v1", "secrets")
LOG_FOLLOW_SECONDS = 0.5
"""How often `kubectl logs -f` looks for new log text."""
_FOLLOWED_LOG = re.compile(r"/api/v1/namespaces/(?P<namespace>[^/]+)/pods/(?P<name>[^/]+)/log")
EvictionCallback = Callable[[str, str], Awaitable[None]]
PodLogSource = Callable[[str, str], str | None]
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
_ORPHAN_BY_DEFAULT = frozenset({("batch", "jobs"), ("apps", "replicasets"), ("", "replicationcontrollers")})
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _now() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.UTC)


def _resource_of(request: kmock.Request) -> kmock.resource:
    """The resource a request names; kmock routes only resource requests to the object handlers."""
    if request.resource is None:
        raise api.not_found("the server could not find the requested resource", request.url.path)
    return request.resource


class _JsonBodyRequest:
    """An aiohttp request whose body is read as `body` (JSON): a protobuf create, as kmock can parse it.

    kmock's request parser decodes every body as UTF-8 text, which a protobuf body is not.
    """

    def __init__(self, raw: aiohttp.web.BaseRequest, body: JsonObject) -> None:
        self._raw = raw
        self._bytes = json.dumps(body).encode()
        self.headers = raw.headers.copy()
        self.headers["Content-Type"] = "application/json"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    async def read(self) -> bytes:
        return self._bytes

    async def text(self) -> str:
        return self._bytes.decode()

    async def json(self) -> Any:
        return json.loads(self._bytes)


def _timestamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.define(kw_only=True)
class ApiEmulator(kmock.KubernetesEmulator):
    keep_versions: int = 4
    event_log_size: int = 100_000
    after_write: list[Callable[[kmock.Request], Any]] = attrs.field(factory=list)
    namespaces: set[str] = attrs.field(factory=lambda: {"default"})
    """Namespaces that exist even before an object is put in them."""
    graceful_pod_deletion: bool = False
    """Pods being deleted stay, marked, until their kubelet deletes them with grace 0 (off: they go at once)."""
    on_eviction: EvictionCallback | None = None
    """Called with (namespace, name) for `pods/<name>/eviction`; unset: the pod is deleted gracefully."""
    pod_log: PodLogSource | None = None
    """(namespace, name) -> the pod's log so far, None while it has none; serves `pods/<name>/log`."""

    _revision: Any = attrs.field(factory=lambda: itertools.count(1), init=False)
    _current_rv: int = attrs.field(default=0, init=False)
    _validators: dict[kmock.resource, SchemaCheck] = attrs.field(factory=dict, init=False)
    _columns: dict[kmock.resource, list[JsonObject]] = attrs.field(factory=dict, init=False)
    _events: WatchEvents = attrs.field(init=False)
    _uids: dict[str, Key] = attrs.field(factory=dict, init=False)
    _outcomes: dict[int, JsonObject] = attrs.field(factory=dict, init=False)
    _background: set[asyncio.Task[None]] = attrs.field(factory=set, init=False)
    _own_payloads: int = attrs.field(default=0, init=False)
    _store_lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)
    """Serializes every change and read of the objects (its own: kmock's private lock guards kmock's store)."""
    _awaiting_kubelet: set[Key] = attrs.field(factory=set, init=False)
    _stopping: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _started: str = attrs.field(factory=lambda: _timestamp(_now()), init=False)
    """When the emulated cluster began: every namespace's creationTimestamp (kubectl's AGE)."""

    @_events.default
    def _new_events(self) -> WatchEvents:
        return WatchEvents(self.event_log_size)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # kubectl refuses watch streams served as application/octet-stream (kmock's default).
        (
            self.fallback[kmock.action.WATCH] ** 1
            << kmock.headers({"Content-Type": "application/json"})
            << self._serve_watch
        )
        self.fallback[kmock.method.PUT] << self._serve_outcome
        self._own_payloads = len(self._payloads)

    def end_streams(self) -> None:
        """End every open watch and `logs -f` stream (and any opened later), as a stopping API server does.

        Call it before closing the HTTP server: the server waits for its open responses, and a watch
        (`kubectl get -w`) never ends by itself.
        """
        self._stopping.set()
        self._events.end_all()

    async def __aexit__(self, *exc_info: Any) -> None:
        self.end_streams()
        for task in self._background:
            task.cancel()
        await super().__aexit__(*exc_info)

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock's path parser cannot read the namespace collection itself (`/api/v1/namespaces`).
        if raw_request.method == "GET" and raw_request.path.rstrip("/") == "/api/v1/namespaces":
            return await self._serve_namespaces(raw_request)
        followed = _FOLLOWED_LOG.fullmatch(raw_request.path) if raw_request.query.get("follow") == "true" else None
        if raw_request.method == "GET" and followed is not None:
            return await self._follow_pod_log(raw_request, followed["namespace"], followed["name"])
        content_type = raw_request.headers.get("Content-Type", "").split(";")[0].strip()
        if raw_request.method == "POST" and content_type == protobuf_bodies.CONTENT_TYPE:
            try:
                body = protobuf_bodies.read_object(await raw_request.read())
            except kmock.KubernetesError as error:
                return aiohttp.web.json_response(self._status_of(error), status=error.status)
            raw_request = cast(aiohttp.web.BaseRequest, _JsonBodyRequest(raw_request, body))
        response: aiohttp.web.StreamResponse = await super().__call__(raw_request)
        return response

    async def _serve_namespaces(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """The namespaces that hold objects, plus `default`: listed, or watched (ADDED each, then quiet)."""
        names = sorted(self.namespaces | {namespace for (_, namespace, _) in self.objects if namespace})
        items: list[JsonObject] = [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": n, "uid": n, "creationTimestamp": self._started},
                "status": {"phase": "Active"},
            }
            for n in names
        ]
        version = str(self._current_rv)
        for item in items:
            item["metadata"]["resourceVersion"] = version
        if raw_request.query.get("watch") != "true":
            listed = {"apiVersion": "v1", "kind": "NamespaceList", "metadata": {"resourceVersion": version}}
            return aiohttp.web.json_response({**listed, "items": items})
        stream = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await stream.prepare(raw_request)
        if raw_request.query.get("resourceVersion") in (None, "", "0"):
            for item in items:
                await stream.write(json.dumps({"type": "ADDED", "object": item}).encode() + b"\n")
        await self._stopping.wait()  # namespaces never change here: the stream ends when the server stops
        await stream.write_eof()
        return stream

    # Registration and inspection, for fixtures and assertions.

    def register_crd(self, crd: JsonObject) -> kmock.resource:
        """Serve a CustomResourceDefinition: discovery, schema validation and printer columns."""
        spec = crd["spec"]
        (version,) = [v for v in spec["versions"] if v.get("served", True)]
        resource = kmock.resource(spec["group"], version["name"], spec["names"]["plural"])
        self.resources[resource] = kmock.ResourceInfo(
            kind=spec["names"]["kind"],
            singular=spec["names"].get("singular"),
            shortnames=spec["names"].get("shortNames", []),
            categories=spec["names"].get("categories", []),
            namespaced=spec["scope"] == "Namespaced",
            subresources=set(version.get("subresources", {})),
            verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
        )
        schema = version["schema"]["openAPIV3Schema"]
        self._validators[resource] = SchemaCheck(schema)
        self._columns[resource] = list(version.get("additionalPrinterColumns", []))
        return resource

    def writes(self, *, user_agent: str | None = None) -> list[kmock.Request]:
        """Mutating requests, optionally only those whose User-Agent starts with `user_agent`."""
        return [
            request
            for request in self
            if request.method.value in WRITE_METHODS
            and (user_agent is None or request.headers.get("User-Agent", "").startswith(user_agent))
        ]

    def journal_text(self) -> str:
        """Every recorded request's URL, headers and body, for scanning for leaked secrets."""
        return "\n".join(f"{request.url} {dict(request.headers)} {request.text}" for request in self)

    def replay(self, resource: kmock.resource, body: JsonObject) -> None:
        """Deliver `body` to the watchers again as MODIFIED, unchanged (a re-delivered watch event)."""
        self._events.deliver(resource, {"type": "MODIFIED", "object": body})

    def collection_path(self, api_version: str, kind: str, *, namespace: str) -> str:
        """The URL path objects of `kind` in `api_version` are created at (`namespace` if namespaced)."""
        for resource in self._get_resources():
            info = self._info(resource)
            group = resource.group or ""
            served_as = f"{group}/{resource.version}" if group else resource.version
            if info is None or info.kind != kind or served_as != api_version or "/" in (resource.plural or ""):
                continue
            root = f"/apis/{group}/{resource.version}" if group else f"/api/{resource.version}"
            scope = f"/namespaces/{namespace}" if info.namespaced else ""
            return f"{root}{scope}/{resource.plural}"
        raise ValueError(f"the API serves no {kind or 'kind'} in {api_version or 'no apiVersion'}: check both")

    def live(self, resource: kmock.resource, namespace: str | None, name: str) -> JsonObject | None:
        key = (resource, namespace, name)
        if key in self.objects and not self.objects[key].deleted:
            return self.objects[key].raw
        return None

    def live_objects(self, resource: kmock.resource, namespace: str | None = None) -> list[JsonObject]:
        return [
            obj.raw
            for (res, ns, _), obj in self.objects.items()
            if res == resource and not obj.deleted and (namespace is None or ns == namespace)
        ]

    # The request pipeline: writes change state here, then kmock's reactions (or our fallbacks) respond.

    async def _handle(self, request: kmock.Request) -> Any:
        # kmock matches a request against each reaction by scanning its whole request journal, which
        # grows quadratic at scale; with no reaction of the test's own, serve objects directly.
        direct = len(self._payloads) == self._own_payloads
        if request.resource == PODS and request.name and request.subresource == "eviction":
            return await self._serve_eviction(request)
        if request.resource == PODS and request.name and request.subresource == "log":
            return await self._serve_pod_log(request)
        if request.resource is not None and self._is_write(request):
            try:
                async with self._store_lock:
                    self._outcomes[request.id] = outcome = self._write(request)
            finally:  # a refused write (409, 422) is an API call too
                for callback in list(self.after_write):
                    if inspect.isawaitable(awaited := callback(request)):
                        await awaited
            if direct:
                self._outcomes.pop(request.id, None)
                return aiohttp.web.json_response(outcome, status=201 if request.method.value == "POST" else 200)
            try:
                return await super(kmock.KubernetesEmulator, self)._handle(request)
            finally:
                self._outcomes.pop(request.id, None)
        is_object_api = request.resource is not None and bool(request.resource.plural)  # not discovery
        if direct and is_object_api and request.action == kmock.action.FETCH and not request.subresource:
            return aiohttp.web.json_response(await self._serve_fetch(request))
        if direct and is_object_api and request.action == kmock.action.LIST:
            return aiohttp.web.json_response(await self._serve_list(request))
        return await super(kmock.KubernetesEmulator, self)._handle(request)

    @staticmethod
    def _is_write(request: kmock.Request) -> bool:
        method = request.method.value
        return (method == "POST" and request.name is None) or (
            method in {"PATCH", "PUT", "DELETE"} and request.name is not None
        )

    def _write(self, request: kmock.Request) -> JsonObject:
        method = request.method.value
        if method == "POST":
            return self._create(request)
        if method == "DELETE":
            return self._delete(request)
        key, current = self._existing(request)
        body = request.data if request.data is not None or not request.text else None
        if method == "PUT":
            return self._commit(request, key, current, self._guard_version(request, current, body))
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type == "application/json-patch+json":
            patched = api.json_patch(current, body)
        elif content_type in {"application/merge-patch+json", "application/strategic-merge-patch+json"}:
            patched = api.merge_patch(current, self._guard_version(request, current, body))
        else:
            raise api.status_error(415, "UnsupportedMediaType", f"the emulator does not apply {content_type!r}")
        return self._commit(request, key, current, patched)

    def _guard_version(self, request: kmock.Request, current: JsonObject, body: Any) -> Any:
        if not isinstance(body, dict):
            raise api.bad_request("the body must be a JSON object")
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise api.conflict(self._what(_resource_of(request)), current["metadata"]["name"])
        return body

    def _create(self, request: kmock.Request) -> JsonObject:
        resource = _resource_of(request)
        if not isinstance(request.data, dict):
            raise api.bad_request("the body of a create must be a JSON object")
        body = copy.deepcopy(request.data)
        meta = body.setdefault("metadata", {})
        if request.namespace and meta.get("namespace") not in (None, request.namespace):
            raise api.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        namespace = request.namespace if self._namespaced(resource, request) else None
        if namespace:
            meta["namespace"] = namespace
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(secrets.choice(_NAME_SUFFIX_ALPHABET) for _ in range(5))
            meta["name"] = f"{meta['generateName']}{suffix}"
        if not meta.get("name"):
            cause = {"reason": "FieldValueRequired", "field": "metadata.name", "message": "Required value"}
            raise api.invalid(self._kind(resource), "", [cause])
        key: Key = (resource, namespace, meta["name"])
        if self.live(*key) is not None:
            raise api.already_exists(self._what(resource), meta["name"])
        group = resource.group
        body.setdefault("apiVersion", f"{group}/{resource.version}" if group else resource.version)
        body.setdefault("kind", self._kind(resource))
        if "status" in self._subresources(resource):
            body.pop("status", None)
        for owned in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(owned, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_timestamp(_now()), generation=1)
        if resource == SECRETS:
            api.default_secret(body)
        self._validate(request, body)
        self._store(key, body, event="ADDED")
        return body

    def _existing(self, request: kmock.Request) -> tuple[Key, JsonObject]:
        key: Key = (_resource_of(request), request.namespace, request.name or "")
        current = self.live(*key)
        if current is None:
            raise api.not_found(self._what(_resource_of(request)), request.name or "")
        if request.subresource not in (None, "status"):
            raise api.not_found(f"{self._what(_resource_of(request))}/{request.subresource}", request.name or "")
        return key, current

    def _commit(self, request: kmock.Request, key: Key, current: JsonObject, new: JsonObject) -> JsonObject:
        new = dict(new)
        if request.subresource == "status":
            new = {**current, "status": new.get("status")}
        elif "status" in self._subresources(_resource_of(request)):
            new["status"] = current.get("status")
        if new.get("status") is None:
            new.pop("status", None)
        meta = dict(new.get("metadata") or {})
        for fixed in ("uid", "name", "namespace", "creationTimestamp", "generation", "resourceVersion"):
            if fixed in current["metadata"]:
                meta[fixed] = current["metadata"][fixed]
        new["metadata"] = meta
        if new == current:
            return current
        if request.subresource is None and self._spec_of(new) != self._spec_of(current):
            meta["generation"] = current["metadata"].get("generation", 1) + 1
        self._validate(request, new)
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and key not in self._awaiting_kubelet:
            return self._remove(key, new, policy="Background")
        self._store(key, new, event="MODIFIED")
        return new

    def _delete(self, request: kmock.Request) -> JsonObject:
        key, current = self._existing(request)
        options = request.data if isinstance(request.data, dict) else {}
        preconditions = options.get("preconditions") or {}
        for field in ("uid", "resourceVersion"):
            if preconditions.get(field) and preconditions[field] != current["metadata"].get(field):
                raise api.conflict(self._what(_resource_of(request)), current["metadata"]["name"])
        policy = options.get("propagationPolicy") or request.params.get("propagationPolicy")
        grace = api.requested_grace_seconds(options, request.params)
        return self._delete_object(key, current, policy=policy, grace=grace)

    def _delete_object(
        self, key: Key, current: JsonObject, *, policy: str | None, grace: int | None = None
    ) -> JsonObject:
        resource = key[0]
        if self.graceful_pod_deletion and resource == PODS:
            marked = self._delete_pod_gracefully(key, current, grace=grace)
            if marked is not None:
                return marked
            current = self.objects[key].raw  # with the grace period it goes with (0 when forced)
        if policy is None:
            policy = "Orphan" if (resource.group, resource.plural) in _ORPHAN_BY_DEFAULT else "Background"
        if current["metadata"].get("finalizers"):
            if current["metadata"].get("deletionTimestamp"):
                return current
            marked = {**current, "metadata": {**current["metadata"], "deletionTimestamp": _timestamp(_now())}}
            self._store(key, marked, event="MODIFIED")
            return marked
        return self._remove(key, current, policy=policy)

    def _delete_pod_gracefully(self, key: Key, current: JsonObject, *, grace: int | None) -> JsonObject | None:
        """Mark a pod for its kubelet (deletionTimestamp = now + grace); None: it goes now, as any object.

        A pod already terminating keeps its deadline unless a DELETE asks for a shorter grace: then,
        as the API server does, the deadline becomes the first DELETE's time plus the new grace
        (it only moves in; MODIFIED), and grace 0 (the kubelet's own last DELETE, or `kubectl delete
        --force --grace-period=0`) removes it.
        """
        seconds = api.pod_grace_seconds(current, requested=grace)
        since = _now()
        if key in self._awaiting_kubelet:
            meta = current["metadata"]
            old = int(meta.get("deletionGracePeriodSeconds", 0))
            if grace is None or max(grace, 0) >= old:
                return current
            seconds = max(grace, 0)
            since = (parse_time(meta.get("deletionTimestamp")) or since) - datetime.timedelta(seconds=old)
        if seconds == 0:
            self._awaiting_kubelet.discard(key)
            if current["metadata"].get("deletionTimestamp"):
                self._mark_deleted(key, current, deadline=since, seconds=0)
            return None
        self._awaiting_kubelet.add(key)
        return self._mark_deleted(key, current, deadline=since + datetime.timedelta(seconds=seconds), seconds=seconds)

    def _mark_deleted(self, key: Key, current: JsonObject, *, deadline: datetime.datetime, seconds: int) -> JsonObject:
        meta = {**current["metadata"], "deletionTimestamp": _timestamp(deadline), "deletionGracePeriodSeconds": seconds}
        marked = {**current, "metadata": meta}
        self._store(key, marked, event="MODIFIED")
        return marked

    def _remove(self, key: Key, body: JsonObject, *, policy: str) -> JsonObject:
        self._awaiting_kubelet.discard(key)
        body = {**body, "metadata": {**body["metadata"], "resourceVersion": self._next_rv()}}
        self.objects[key].delete()
        self._uids.pop(body["metadata"].get("uid", ""), None)
        self._events.publish(key[0], "DELETED", body)
        task = asyncio.get_running_loop().create_task(self._collect_dependents(body["metadata"].get("uid"), policy))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return body

    async def _collect_dependents(self, owner_uid: str | None, policy: str) -> None:
        """The garbage collector: asynchronous, as in Kubernetes, so tests see the owner go first."""
        await asyncio.sleep(0)
        async with self._store_lock:
            for key, obj in list(self.objects.items()):
                if obj.deleted:
                    continue
                body = obj.raw
                references = body["metadata"].get("ownerReferences") or []
                if not any(ref.get("uid") == owner_uid for ref in references):
                    continue
                remaining = [ref for ref in references if ref.get("uid") != owner_uid]
                if policy == "Orphan" or any(ref.get("uid") in self._uids for ref in remaining):
                    kept = {**body, "metadata": {**body["metadata"], "ownerReferences": remaining}}
                    self._store(key, kept, event="MODIFIED")
                else:
                    self._delete_object(key, body, policy="Background")

    # Pod subresources: eviction (policy/v1) and log.

    async def _serve_eviction(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.method.value != "POST":
            raise api.status_error(405, "MethodNotAllowed", "pods/eviction only accepts POST")
        namespace, name = request.namespace or "", request.name or ""
        async with self._store_lock:
            pod = self.live(PODS, namespace, name)
            if pod is None:
                raise api.not_found("pods", name)
            if self.on_eviction is None:
                self._delete_object((PODS, namespace, name), pod, policy="Background")
        if self.on_eviction is not None:
            await self.on_eviction(namespace, name)
        success = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
        return aiohttp.web.json_response(success, status=201)

    async def _serve_pod_log(self, request: kmock.Request) -> Any:
        namespace, name = request.namespace or "", request.name or ""
        async with self._store_lock:
            pod = self.live(PODS, namespace, name)
        if pod is None:
            raise api.not_found("pods", name)
        container = api.log_container(pod, request.params.get("container"))
        text = self.pod_log(namespace, name) if self.pod_log is not None else None
        if text is None:
            raise api.bad_request(f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating')
        body = api.tail_lines(text, request.params.get("tailLines"))
        return aiohttp.web.Response(text=body, content_type="text/plain")

    async def _follow_pod_log(
        self, raw_request: aiohttp.web.BaseRequest, namespace: str, name: str
    ) -> aiohttp.web.StreamResponse:
        """`kubectl logs -f`: what is there, then what is appended, until the pod ends or goes.

        Served below kmock (which cannot stream a plain-text body), so errors are answered here too.
        """
        pod = self.live(PODS, namespace, name)
        text = (self.pod_log(namespace, name) if self.pod_log is not None else None) if pod else None
        try:
            if pod is None:
                raise api.not_found("pods", name)
            container = api.log_container(pod, raw_request.query.get("container"))
            if text is None:
                raise api.bad_request(f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating')
            first = api.tail_lines(text, raw_request.query.get("tailLines"))
        except kmock.KubernetesError as refused:
            return aiohttp.web.json_response(self._status_of(refused), status=refused.status)
        stream = aiohttp.web.StreamResponse(headers={"Content-Type": "text/plain"})
        await stream.prepare(raw_request)
        await stream.write(first.encode())
        offset = len(text)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), LOG_FOLLOW_SECONDS)
            pod = None if self._stopping.is_set() else self.live(PODS, namespace, name)
            text = (self.pod_log(namespace, name) if self.pod_log is not None else None) or ""
            if len(text) > offset:
                await stream.write(text[offset:].encode())
                offset = len(text)
            if pod is None or (pod.get("status") or {}).get("phase") in {"Succeeded", "Failed"}:
                await stream.write_eof()
                return stream

    # Reads.

    async def _serve_outcome(self, request: kmock.Request) -> JsonObject:
        return self._outcomes[request.id]

    _serve_create = _serve_update = _serve_delete = _serve_outcome

    async def _serve_fetch(self, request: kmock.Request) -> JsonObject:
        async with self._store_lock:
            body = self.live(_resource_of(request), request.namespace, request.name or "")
            if body is None:
                raise api.not_found(self._what(_resource_of(request)), request.name or "")
            return self._maybe_table(request, [body]) or body

    async def _serve_list(self, request: kmock.Request) -> JsonObject:
        if _resource_of(request) not in self._get_resources():
            raise api.not_found("the server could not find the requested resource", _resource_of(request).plural or "")
        async with self._store_lock:
            items = [
                obj
                for obj in self.live_objects(_resource_of(request), request.namespace)
                if self._selected(request, obj)
            ]
            rv = str(self._current_rv)
        resource = _resource_of(request)
        listed = {
            "apiVersion": f"{resource.group}/{resource.version}" if resource.group else resource.version,
            "kind": f"{self._kind(resource)}List",
            "metadata": {"resourceVersion": rv},
            "items": items,
        }
        return self._maybe_table(request, items) or listed

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        yield b""  # headers first: a watch with nothing to say yet is still a started stream
        params = request.params
        watcher = Watcher(
            _resource_of(request),
            request.namespace,
            request.name,
            params.get("labelSelector"),
            params.get("fieldSelector"),
        )
        since = params.get("resourceVersion")
        async with self._store_lock:
            if since not in (None, "", "0"):
                try:
                    backlog = self._events.since(int(since), watcher)
                except kmock.KubernetesError as expired:
                    yield {"type": "ERROR", "object": self._status_of(expired)}
                    return
            else:
                backlog = [
                    {"type": "ADDED", "object": obj}
                    for obj in self.live_objects(_resource_of(request), request.namespace)
                ]
                backlog = [event for event in backlog if watcher.wants(_resource_of(request), event["object"])]
                if params.get("sendInitialEvents") == "true":
                    backlog.append(self._initial_events_end(_resource_of(request)))
            self._events.open(watcher)
        try:
            for event in backlog:
                yield self._as_watched(request, event)
            timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
            deadline = asyncio.get_running_loop().time() + timeout if timeout else None
            while True:
                remaining = None if deadline is None else deadline - asyncio.get_running_loop().time()
                if remaining is not None and remaining <= 0:
                    return
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), remaining)
                except TimeoutError:
                    return
                if event is END_OF_WATCH:
                    return
                yield self._as_watched(request, event)
        finally:
            self._events.close(watcher)

    def _as_watched(self, request: kmock.Request, event: JsonObject) -> JsonObject:
        """The event as the client asked for it: `kubectl get -w` asks for Tables, one row per event."""
        if event.get("type") not in {"ADDED", "MODIFIED", "DELETED"}:
            return event
        table = self._maybe_table(request, [event["object"]])
        return event if table is None else {"type": event["type"], "object": table}

    async def _serve_version(self, request: kmock.Request) -> Any:
        discovered = await super()._serve_version(request)
        assert isinstance(discovered, dict)  # kmock's APIResourceList, always a dict
        # kmock names the core group's version "/v1"; kubectl cannot parse it and drops every core resource.
        discovered["groupVersion"] = str(discovered.get("groupVersion", "")).removeprefix("/")
        for entry in discovered.get("resources", []):
            if "/" in entry["name"]:
                entry.update(shortNames=[], categories=[])
        return discovered

    # Helpers.

    def _selected(self, request: kmock.Request, obj: JsonObject) -> bool:
        labels = obj["metadata"].get("labels") or {}
        return api.labels_match(request.params.get("labelSelector"), labels) and api.fields_match(
            request.params.get("fieldSelector"), obj
        )

    def _maybe_table(self, request: kmock.Request, objects: list[JsonObject]) -> JsonObject | None:
        resource = _resource_of(request)
        if not api.wants_table(request.headers):
            return None
        version, now, include = str(self._current_rv), _now(), request.params.get("includeObject")
        if resource in self._columns:
            columns = self._columns[resource]
            return api.table(objects, columns=columns, resource_version=version, now=now, include_object=include)
        printer = printers.PRINTERS.get((resource.group or "", resource.plural or ""))
        if printer is None:
            return None
        columns, cells = printer
        return api.printed_table(
            objects,
            columns=columns,
            cells=lambda obj: cells(obj, now),
            resource_version=version,
            include_object=include,
        )

    def _initial_events_end(self, resource: kmock.resource) -> JsonObject:
        group = resource.group
        bookmark = {
            "apiVersion": f"{group}/{resource.version}" if group else resource.version,
            "kind": self._kind(resource),
            "metadata": {
                "resourceVersion": str(self._current_rv),
                "annotations": {"k8s.io/initial-events-end": "true"},
            },
        }
        return {"type": "BOOKMARK", "object": bookmark}

    def _validate(self, request: kmock.Request, body: JsonObject) -> None:
        check = self._validators.get(_resource_of(request))
        if check is None:
            return
        causes = check.causes(body, strict=request.params.get("fieldValidation") == "Strict")
        if causes:
            raise api.invalid(self._kind(_resource_of(request)), body["metadata"].get("name", ""), causes)

    def _store(self, key: Key, body: JsonObject, *, event: str) -> None:
        body["metadata"] = {**body["metadata"], "resourceVersion": self._next_rv()}
        if key in self.objects:
            history = self.objects[key].history
            history.append(body)
            del history[: -self.keep_versions]
        else:
            self.objects[key] = body
        self._uids[body["metadata"]["uid"]] = key
        self._events.publish(key[0], event, body)

    def _next_rv(self) -> str:
        self._current_rv = next(self._revision)
        return str(self._current_rv)

    @staticmethod
    def _spec_of(body: JsonObject) -> JsonObject:
        return {key: value for key, value in body.items() if key not in {"metadata", "status"}}

    @staticmethod
    def _status_of(error: kmock.KubernetesError) -> JsonObject:
        return {
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "code": error.status,
            "reason": error.reason,
            "message": error.message,
        }

    def _info(self, resource: kmock.resource) -> kmock.ResourceInfo | None:
        # kmock's `resources` is a defaultdict: `[]` and `.get` would add an empty entry; `in` first.
        return self.resources[resource] if resource in self.resources else None  # noqa: SIM401

    def _kind(self, resource: kmock.resource) -> str:
        info = self._info(resource)
        return info.kind if info and info.kind else (resource.plural or "").capitalize()

    def _what(self, resource: kmock.resource) -> str:
        return f"{resource.plural}.{resource.group}" if resource.group else str(resource.plural)

    def _subresources(self, resource: kmock.resource) -> set[str]:
        info = self._info(resource)
        return set(info.subresources) if info else set()

    def _namespaced(self, resource: kmock.resource, request: kmock.Request) -> bool:
        info = self._info(resource)
        return bool(info.namespaced) if info and info.namespaced is not None else request.namespace is not None
