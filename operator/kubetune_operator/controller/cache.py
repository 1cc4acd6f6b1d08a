"""What the operator knows of the cluster, from kopf's in-memory indexes: no LIST per reconcile.

kopf fills the indexes from its watches before it calls any handler, so a restarted operator
sees a job's children before it acts on the job. Our own status patches return the newer
object at once; `remember` keeps it until the watch catches up, so a pass never acts on a
status older than the one it wrote.

Each object is held as compact JSON deflated against a dictionary: the first object of its kind
this process packed (`Packer`). Objects of one kind share most of their text (keys, conditions,
the template's values in status.resolved.record), so a FineTuneJob of about 3.7 KB of JSON takes
about 0.2 KB, and reading one back costs about 10 microseconds per pass.
"""

from __future__ import annotations

import json
import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

from ..render.labels import JOB_LABEL

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
KOPF_ANNOTATIONS = ("kopf.zalando.org/", "kubetune.dev/last-handled-configuration")
JobKey = tuple[str, str]
PARSED_SPECS_KEPT = 256
"""Bounded: the jobs being woken now, not every job ever seen (their memory would grow with the cluster)."""
Body = dict[str, Any]


def job_key_of_child(namespace: str | None, labels: Mapping[str, str]) -> JobKey | None:
    name = labels.get(JOB_LABEL)
    return (namespace, name) if name and namespace else None


def packed(body: Mapping[str, Any], *, drop_template: bool = False) -> str:
    """An object as compact JSON: a fraction of the memory of nested dicts, decoded per pass in microseconds.

    A batch Job loses its pod template (observation never reads it); every object loses
    managedFields and the annotations kopf and kubectl keep (kubectl's is a copy of the whole object).
    """
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k not in {"managedFields", "annotations"}}
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    kept = {k: v for k, v in annotations.items() if k != LAST_APPLIED and not k.startswith(KOPF_ANNOTATIONS)}
    if kept:
        meta["annotations"] = kept
    slim = {**body, "metadata": meta}
    if drop_template:
        slim["spec"] = {k: v for k, v in (body.get("spec") or {}).items() if k != "template"}
    return json.dumps(slim, separators=(",", ":"))


class Packer:
    """`packed` JSON deflated against a preset dictionary: the first object this packer packed.

    zlib's preset dictionary lets each object refer to the text it shares with that first one; the
    dictionary is never replaced, since every stored object needs the one it was packed with.
    """

    def __init__(self) -> None:
        self._dictionary: bytes | None = None

    def pack(self, body: Mapping[str, Any], *, drop_template: bool = False) -> bytes:
        raw = packed(body, drop_template=drop_template).encode()
        if self._dictionary is None:
            self._dictionary = raw
        deflate = zlib.compressobj(level=1, zdict=self._dictionary)
        return deflate.compress(raw) + deflate.flush()

    def unpack(self, data: bytes) -> Body:
        inflate = zlib.decompressobj(zdict=self._dictionary or b"")
        found: Body = json.loads(inflate.decompress(data) + inflate.flush())
        return found


def _version(body: Mapping[str, Any] | None) -> int:
    raw = (body or {}).get("metadata", {}).get("resourceVersion", "")
    return int(raw) if str(raw).isdigit() else -1


class ClusterView:
    def __init__(self) -> None:
        self._indexes: dict[str, Mapping[Hashable, Iterable[Any]]] = {}
        self._packers: dict[str, Packer] = {}
        """One per index (objects of one kind share a dictionary); our own writes use the finetunejobs one."""
        self._written: dict[JobKey, tuple[int, str, bytes]] = {}
        """Our own last write per job, until the watch delivers it: (resourceVersion, uid, packed body)."""
        self._expected: dict[JobKey, set[str]] = {}
        self.parsed_templates: dict[bytes, Any] = {}
        """BaseModelTemplates parsed once per stored (packed) body; None for an invalid one."""
        self.parsed_specs: OrderedDict[tuple[str, str, str, int], Any] = OrderedDict()
        """Specs parsed once per (namespace, name, uid, generation), the most recent `PARSED_SPECS_KEPT`."""

    def parsed_spec(self, key: tuple[str, str, str, int], parse: Callable[[], Any]) -> Any:
        """`parse()` for a spec not seen at this generation; the spec is immutable but for `suspend`."""
        if key in self.parsed_specs:
            self.parsed_specs.move_to_end(key)
            return self.parsed_specs[key]
        parsed = self.parsed_specs[key] = parse()
        if len(self.parsed_specs) > PARSED_SPECS_KEPT:
            self.parsed_specs.popitem(last=False)
        return parsed

    def pack(self, index: str, body: Mapping[str, Any], *, drop_template: bool = False) -> bytes:
        """`body` as the index `index` stores it (the kopf index handlers call this)."""
        return self._packers.setdefault(index, Packer()).pack(body, drop_template=drop_template)

    def _unpack(self, index: str, data: bytes) -> Body:
        return self._packers[index].unpack(data)

    def attach(self, **indexes: Mapping[Hashable, Iterable[Any]]) -> None:
        """kopf hands its indexes to handlers only; the first handler call passes them on."""
        self._indexes.update(indexes)

    def _values(self, index: str, key: Hashable) -> list[Any]:
        found = self._indexes.get(index, {})
        return [self._unpack(index, value) for value in found[key]] if key in found else []

    def job(self, key: JobKey) -> Body | None:
        seen = self._values("finetunejobs", key)
        latest: Body | None = seen[0] if seen else None
        if latest is None:
            self.forget(key)
            return None
        written = self._written.get(key)
        if written is not None and written[1] == latest["metadata"].get("uid") and written[0] > _version(latest):
            return self._unpack("finetunejobs", written[2])
        self._written.pop(key, None)
        return latest

    def remember(self, key: JobKey, body: Body) -> None:
        self._written[key] = (_version(body), str(body["metadata"].get("uid")), self.pack("finetunejobs", body))

    def expect(self, key: JobKey, batch_job: str) -> None:
        """We created `batch_job`; until the index shows it, a pass must not try to create it again."""
        self._expected.setdefault(key, set()).add(batch_job)

    def awaiting(self, key: JobKey, batch_job: str) -> bool:
        """Whether `batch_job` was created by us and the watch has not delivered it yet."""
        pending = self._expected.get(key, set())
        if batch_job in pending and any(j["metadata"]["name"] == batch_job for j in self.batch_jobs(key)):
            pending.discard(batch_job)
        return batch_job in pending

    def settle(self, key: JobKey) -> None:
        """Drop expectations the index now confirms, so a Job deleted later may be created again (a preflight rerun)."""
        pending = self._expected.get(key)
        if pending:
            pending.difference_update(j["metadata"]["name"] for j in self.batch_jobs(key))

    def forget(self, key: JobKey) -> None:
        self._expected.pop(key, None)
        self._written.pop(key, None)

    def jobs(self) -> list[JobKey]:
        return [key for key in self._indexes.get("finetunejobs", {}) if isinstance(key, tuple)]

    def batch_jobs(self, key: JobKey) -> list[Body]:
        return self._values("job_children", key)

    def pods(self, key: JobKey) -> list[Body]:
        return self._values("pod_children", key)

    def stored_templates(self) -> list[bytes]:
        """The templates as the index stores them: a pass decodes only a body it has not parsed before."""
        return [body for bodies in self._indexes.get("templates", {}).values() for body in bodies]

    def unpack_template(self, stored: bytes) -> Body:
        return self._unpack("templates", stored)
