"""A pod's status in the kubelet's shapes, and the termination message it reads. Pure but for reading files.

Waiting (Pending, the container's reason and message), Running (the container running, Ready),
Terminated (Succeeded or Failed by exit code; with DisruptionTarget, Failed and Evicted after an
eviction); the message is the termination log's last 4096 bytes, or with FallbackToLogsOnError
and an empty log, a failed container's last 80 log lines (at most 2048 bytes).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubetune_trainer.contract import TERMINATION_MESSAGE_LIMIT

from .pod_inputs import LOOPBACK, JsonObject, PodPlanError
from .pod_plan import ProcessPlan

EVICTION_REASON = "EvictionByEvictionAPI"
EVICTION_MESSAGE = "Eviction API: evicting"
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048
"""FallbackToLogsOnError: the kubelet's tail of the container log (80 lines, 2048 bytes)."""


def condition(kind: str, status: bool, *, now: str, reason: str | None = None) -> JsonObject:
    found: JsonObject = {"type": kind, "status": "True" if status else "False", "lastTransitionTime": now}
    if reason:
        found["reason"] = reason
    return found


def disruption_target(*, now: str) -> JsonObject:
    """The condition an eviction adds: the operator reads it as a preemption."""
    return {**condition("DisruptionTarget", True, reason=EVICTION_REASON, now=now), "message": EVICTION_MESSAGE}


def container_status(*, name: str, image: str, pid: int, state: JsonObject) -> JsonObject:
    running = "running" in state
    return {
        "name": name,
        "image": image,
        "imageID": "",
        "containerID": f"sandbox://{pid}",
        "ready": running,
        "started": running,
        "restartCount": 0,
        "state": state,
    }


def waiting(container: Mapping[str, Any], error: PodPlanError, *, now: str) -> JsonObject:
    """The container cannot start yet (a missing Secret, a volume): Pending, in the kubelet's words."""
    return {
        "phase": "Pending",
        "hostIP": LOOPBACK,
        "conditions": [condition("PodScheduled", True, now=now)],
        "containerStatuses": [
            {
                "name": container.get("name", ""),
                "image": container.get("image", ""),
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": {"waiting": {"reason": error.reason, "message": error.message}},
            }
        ],
    }


def running(container: JsonObject, *, start_time: str, now: str) -> JsonObject:
    ready = [condition(kind, True, now=now) for kind in ("Initialized", "Ready", "ContainersReady")]
    return {
        "phase": "Running",
        "hostIP": LOOPBACK,
        "hostIPs": [{"ip": LOOPBACK}],
        "podIP": LOOPBACK,
        "podIPs": [{"ip": LOOPBACK}],
        "startTime": start_time,
        "conditions": [condition("PodScheduled", True, now=now), *ready],
        "containerStatuses": [container],
    }


def terminated(container: JsonObject, *, exit_code: int, evicted: bool, now: str) -> JsonObject:
    conditions = [condition("PodScheduled", True, now=now)]
    conditions += [
        condition(kind, False, reason="PodCompleted" if exit_code == 0 else "PodFailed", now=now)
        for kind in ("Ready", "ContainersReady")
    ]
    status: JsonObject = {"phase": "Succeeded" if exit_code == 0 else "Failed", "containerStatuses": [container]}
    if evicted:
        conditions.append(disruption_target(now=now))
        status.update(phase="Failed", reason="Evicted", message="The pod was evicted through the Eviction API.")
    status["conditions"] = conditions
    return status


def termination_message(plan: ProcessPlan, *, failed: bool) -> str:
    """The termination log's last 4096 bytes, as the kubelet reads it; with FallbackToLogsOnError and an
    empty termination log, a failed container's log: its last 80 lines, at most their last 2048 bytes."""
    message = _read_tail(plan.termination_log, TERMINATION_MESSAGE_LIMIT)
    if failed and plan.fallback_to_logs and not message:
        lines = _read_tail(plan.log_file, FALLBACK_LOG_BYTES).splitlines(keepends=True)
        message = b"".join(lines[-FALLBACK_LOG_LINES:])
    return message.decode(errors="replace")


def _read_tail(path: Path, limit: int) -> bytes:
    try:
        with path.open("rb") as file:
            file.seek(max(0, path.stat().st_size - limit))
            return file.read()
    except FileNotFoundError:
        return b""
