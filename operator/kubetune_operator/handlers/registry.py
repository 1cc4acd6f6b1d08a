"""The kopf handlers: indexes that mirror FineTuneJobs, their children and templates; events that wake jobs.

Every handler is level-triggered glue: it records nothing and decides nothing; it wakes the
FineTuneJob the event concerns, and the job's worker (`workqueue`) reconciles from the indexes.
No handler needs kopf's progress storage or a finalizer, so kopf writes nothing of its own to
our objects and a FineTuneJob can be deleted while the operator is down. A fresh registry per
run keeps handlers from leaking between operators in one process (tests start many).
The index handlers are coroutines: kopf runs a plain function in its thread pool, a hop per
watch event that a burst of jobs queues behind.
"""

from __future__ import annotations

from typing import Any

import kopf

from ..api.names import GROUP, VERSION
from ..controller.cache import ClusterView, job_key_of_child
from ..controller.workqueue import ReconcileQueue
from ..kube import Connection
from ..render.labels import JOB_LABEL

FINETUNEJOBS = (GROUP, VERSION, "finetunejobs")
TEMPLATES = (GROUP, VERSION, "basemodeltemplates")
CHILD = {JOB_LABEL: kopf.PRESENT}
INDEXES = ("finetunejobs", "job_children", "pod_children", "templates")


def _attach(view: ClusterView, kwargs: dict[str, Any]) -> None:
    view.attach(**{name: kwargs[name] for name in INDEXES})


def build_registry(*, view: ClusterView, queue: ReconcileQueue, connection: Connection) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(
            server=connection.server,
            token=connection.current_token(),
            ca_path=str(connection.ca_path) if connection.ca_path else None,
            ca_data=connection.ca_data,
            certificate_path=str(connection.client_cert_path) if connection.client_cert_path else None,
            private_key_path=str(connection.client_key_path) if connection.client_key_path else None,
            insecure=connection.insecure,
            default_namespace=connection.default_namespace,
        )

    @kopf.index(*FINETUNEJOBS, registry=registry, id="finetunejobs")
    async def finetunejobs(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
        return {(namespace, name): view.pack("finetunejobs", body)}

    @kopf.index("batch", "v1", "jobs", labels=CHILD, registry=registry, id="job_children")
    async def job_children(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Any, Any]:
        return {job_key_of_child(namespace, labels): view.pack("job_children", body, drop_template=True)}

    @kopf.index("v1", "pods", labels=CHILD, registry=registry, id="pod_children")
    async def pod_children(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Any, Any]:
        return {job_key_of_child(namespace, labels): view.pack("pod_children", body)}

    @kopf.index(*TEMPLATES, registry=registry, id="templates")
    async def templates(name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
        return {name: view.pack("templates", body)}

    @kopf.on.event(*FINETUNEJOBS, registry=registry)
    async def finetunejob_changed(namespace: str | None, name: str, **kwargs: Any) -> None:
        _attach(view, kwargs)
        if namespace is not None:
            queue.wake((namespace, name))

    @kopf.on.event("batch", "v1", "jobs", labels=CHILD, registry=registry)
    async def batch_job_changed(namespace: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
        _attach(view, kwargs)
        if (key := job_key_of_child(namespace, labels)) is not None:
            queue.wake(key)

    @kopf.on.event("v1", "pods", labels=CHILD, registry=registry)
    async def pod_changed(namespace: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
        _attach(view, kwargs)
        if (key := job_key_of_child(namespace, labels)) is not None:
            queue.wake(key)

    @kopf.on.event(*TEMPLATES, registry=registry)
    async def template_changed(**kwargs: Any) -> None:
        # A job waiting for its template (or resolved against an old one) looks again; settled jobs no-op.
        _attach(view, kwargs)
        for key in view.jobs():
            queue.wake(key)

    return registry
