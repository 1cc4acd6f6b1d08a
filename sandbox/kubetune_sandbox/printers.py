"""Server-side tables for the built-in kinds kubectl users look at here: pods, Jobs and Events.

The API server prints these itself (`kubectl get pods` shows READY, STATUS, RESTARTS because the
server sends a Table); without them kubectl falls back to NAME and AGE. The cells follow the
upstream printers (`pkg/printers/internalversion/printers.go`) for the fields the sandbox's
kubelet and Job controller write; pod readiness gates and nominated nodes are left out.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any

from kubetune_operator.observe.pod_state import parse_time

from .apimachinery import JsonObject, human_age

Cells = Callable[[Mapping[str, Any], datetime.datetime], list[Any]]


def _column(name: str, type_: str, description: str, *, priority: int = 0) -> JsonObject:
    return {"name": name, "type": type_, "format": "", "description": description, "priority": priority}


POD_COLUMNS = [
    _column("Ready", "string", "The ready containers of the pod, of all its containers."),
    _column("Status", "string", "The pod's phase, or why a container waits or ended, or Terminating."),
    _column("Restarts", "string", "How many times the pod's containers restarted."),
    _column("Age", "string", "Time since the pod was created."),
    _column("IP", "string", "The pod's IP address.", priority=1),
    _column("Node", "string", "The node the pod runs on.", priority=1),
]
JOB_COLUMNS = [
    _column("Status", "string", "The Job's state: Running, Complete, Failed, Suspended or Terminating."),
    _column("Completions", "string", "Succeeded pods of the completions wanted."),
    _column("Duration", "string", "Time the Job ran (to now while it runs)."),
    _column("Age", "string", "Time since the Job was created."),
]

EVENT_COLUMNS = [
    _column("Last Seen", "string", "Time since the event was last seen."),
    _column("Type", "string", "Normal or Warning."),
    _column("Reason", "string", "Why the event was recorded, in one word."),
    _column("Object", "string", "The object the event is about, as kind/name."),
    _column("Subobject", "string", "The part of the object (a container's field path).", priority=1),
    _column("Source", "string", "The component that recorded the event.", priority=1),
    _column("Message", "string", "What happened, for a human."),
    _column("First Seen", "string", "Time since the event was first seen.", priority=1),
    _column("Count", "integer", "How many times it happened.", priority=1),
    _column("Name", "string", "The Event's own name.", priority=1),
]


def pod_status(pod: Mapping[str, Any]) -> str:
    """The STATUS column: a container's waiting/terminated reason beats the phase; deletion shows Terminating."""
    status = pod.get("status") or {}
    reason = str(status.get("reason") or status.get("phase") or "Pending")
    running = False
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        waiting, terminated = state.get("waiting") or {}, state.get("terminated")
        if waiting.get("reason"):
            reason = str(waiting["reason"])
        elif terminated is not None:
            if terminated.get("reason"):
                reason = str(terminated["reason"])
            elif terminated.get("signal"):
                reason = f"Signal:{terminated['signal']}"
            else:
                reason = f"ExitCode:{terminated.get('exitCode', 0)}"
        elif container.get("ready") and "running" in state:
            running = True
    if reason == "Completed" and running:
        reason = "Running"
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    return reason


def pod_cells(pod: Mapping[str, Any], now: datetime.datetime) -> list[Any]:
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    containers = (pod.get("spec") or {}).get("containers") or []
    ready = sum(1 for container in statuses if container.get("ready"))
    restarts = sum(int(container.get("restartCount") or 0) for container in statuses)
    return [
        f"{ready}/{len(containers)}",
        pod_status(pod),
        str(restarts),
        human_age(pod["metadata"].get("creationTimestamp"), now=now),
        status.get("podIP") or "<none>",
        (pod.get("spec") or {}).get("nodeName") or "<none>",
    ]


def job_status(job: Mapping[str, Any]) -> str:
    if (job.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    conditions = {c.get("type"): c for c in (job.get("status") or {}).get("conditions") or []}
    for kind in ("Complete", "Failed", "FailureTarget", "SuccessCriteriaMet", "Suspended"):
        if (conditions.get(kind) or {}).get("status") == "True":
            return kind
    return "Running"


def job_cells(job: Mapping[str, Any], now: datetime.datetime) -> list[Any]:
    spec, status = job.get("spec") or {}, job.get("status") or {}
    wanted = spec.get("completions")
    succeeded = int(status.get("succeeded") or 0)
    completions = f"{succeeded}/{wanted}" if wanted is not None else f"{succeeded}/1 of {spec.get('parallelism', 1)}"
    ended = parse_time(status.get("completionTime")) or now
    duration = human_age(status.get("startTime"), now=ended) or ""
    return [job_status(job), completions, duration, human_age(job["metadata"].get("creationTimestamp"), now=now)]


def event_cells(event: Mapping[str, Any], now: datetime.datetime) -> list[Any]:
    """As the API server's printEvent: ages from first/last timestamps (or eventTime/series), kind/name."""
    involved = event.get("involvedObject") or {}
    first = human_age(event.get("firstTimestamp") or event.get("eventTime"), now=now) or "<unknown>"
    last = human_age(event.get("lastTimestamp"), now=now) or first
    count = int(event.get("count") or 1)
    if event.get("series"):
        last = human_age(event["series"].get("lastObservedTime"), now=now) or last
        count = int(event["series"].get("count") or count)
    kind = str(involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = event.get("source") or {}
    component = source.get("component") or event.get("reportingController") or ""
    return [
        last,
        event.get("type") or "",
        event.get("reason") or "",
        target,
        involved.get("fieldPath") or "",
        f"{component}, {source['host']}" if source.get("host") else component,
        str(event.get("message") or "").strip(),
        first,
        count,
        event["metadata"]["name"],
    ]


PRINTERS: dict[tuple[str, str], tuple[list[JsonObject], Cells]] = {
    ("", "pods"): (POD_COLUMNS, pod_cells),
    ("batch", "jobs"): (JOB_COLUMNS, job_cells),
    ("", "events"): (EVENT_COLUMNS, event_cells),
}
"""(group, plural) -> the Table's columns after Name, and each row's cells."""
