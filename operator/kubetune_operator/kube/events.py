"""Kubernetes Events on a FineTuneJob, as `kubectl describe` shows them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from kubetune_trainer.contract import format_kube_time

from .client import KubeClient
from .resources import EVENTS

COMPONENT = "kubetune-operator"


@dataclass(frozen=True)
class ObjectRef:
    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str


async def post_event(
    client: KubeClient, *, involved: ObjectRef, type_: str, reason: str, message: str, now: datetime
) -> None:
    stamp = format_kube_time(now)
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{involved.name}.{uuid.uuid4().hex[:16]}", "namespace": involved.namespace},
        "involvedObject": {
            "apiVersion": involved.api_version,
            "kind": involved.kind,
            "namespace": involved.namespace,
            "name": involved.name,
            "uid": involved.uid,
        },
        "type": type_,
        "reason": reason,
        "message": message,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    await client.create(EVENTS, body, namespace=involved.namespace)
