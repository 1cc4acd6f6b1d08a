"""One pod, classified: running, finished, unschedulable, or failed with a contract-shaped error.

Each failure becomes the error a user reads in `status.error`: a class, a CamelCase reason,
a message naming what failed (the image, the Secret and key, the node) and a hint. Secret
values never appear: only Secret and key names, which the pod spec itself holds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from kubetune_trainer.contract import HOST_OUT_OF_MEMORY, JobError, Outcome, Result

from ..api.conditions import Reason
from ..api.error_table import operator_error

INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
NODE_LOSS_REASONS = frozenset({"NodeLost", "Evicted", "Preempting", "Terminated", "Shutdown", "NodeShutdown"})

Manifest = Mapping[str, Any]


class PodView:
    """What one pod says, classified."""

    def __init__(self) -> None:
        self.error: JobError | None = None
        self.result: Result | None = None
        self.unschedulable: str | None = None
        self.running = False
        self.scheduled = False
        self.succeeded = False
        self.finished = False
        self.started: datetime | None = None
        self.ended: datetime | None = None
        self.grace_left: float | None = None
        """Seconds until a failure still within its grace (an image pull) becomes final."""

    @classmethod
    def of(cls, pod: Manifest, *, now: datetime, image_pull_grace: float) -> PodView:
        view = cls()
        status = pod.get("status") or {}
        phase = status.get("phase", "Pending")
        view.finished = phase in ("Succeeded", "Failed", "Unknown")
        for container in status.get("containerStatuses") or []:
            view._read_container(container)
        if (disruption := _disruption(pod)) is not None:
            view.error = disruption
            return view
        if view.error is None:
            for container in status.get("containerStatuses") or []:
                waiting = (container.get("state") or {}).get("waiting") or {}
                view.error = _waiting_error(pod, container, waiting, now=now, grace=image_pull_grace)
                if view.error is not None:
                    break
                view.grace_left = _pull_grace_left(pod, waiting, now=now, grace=image_pull_grace)
        if view.error is None and phase == "Failed" and not view.succeeded:
            view.error = _crashed(status.get("message") or status.get("reason") or "the pod failed")
        placed = pod_condition(pod, "PodScheduled")
        view.scheduled = phase != "Pending" or (placed is not None and placed.get("status") == "True")
        if phase == "Pending":
            scheduled = pod_condition(pod, "PodScheduled")
            if scheduled is not None and scheduled.get("status") == "False":
                view.unschedulable = scheduled.get("message") or scheduled.get("reason") or "not scheduled yet"
        return view

    def _read_container(self, container: Mapping[str, Any]) -> None:
        state = container.get("state") or {}
        if running := state.get("running"):
            self.running = True
            self.started = parse_time(running.get("startedAt"))
            return
        terminated = state.get("terminated")
        if not terminated:
            return
        self.finished = True
        self.started = parse_time(terminated.get("startedAt"))
        self.ended = parse_time(terminated.get("finishedAt"))
        self.result = _result(terminated.get("message"))
        exit_code = int(terminated.get("exitCode", 0))
        if self.result is not None:
            if self.result.outcome == Outcome.SUCCEEDED and exit_code == 0:
                self.succeeded = True
            else:
                self.error = self.result.error or _crashed(f"exit code {exit_code}, Result without an error")
        elif terminated.get("reason") == "OOMKilled":
            # The kubelet's word for what the trainer calls HostOutOfMemory: one reason, one hint.
            self.error = operator_error(
                HOST_OUT_OF_MEMORY, "the trainer container ran out of host memory and was killed (OOMKilled)"
            )
        elif exit_code != 0:
            self.error = _crashed(f"the trainer exited with code {exit_code} without a termination message")
        else:
            self.succeeded = True


def _disruption(pod: Manifest) -> JobError | None:
    """Eviction, preemption, node loss: the world took the pod away, so a retry is worth it."""
    status = pod.get("status") or {}
    target = pod_condition(pod, "DisruptionTarget")
    if target is not None and target.get("status") == "True":
        why = f"{target.get('reason', 'DisruptionTarget')}: {target.get('message', '')}".rstrip(": ")
    elif status.get("reason") in NODE_LOSS_REASONS or status.get("phase") == "Unknown":
        why = f"{status.get('reason') or 'node lost'}: {status.get('message', '')}".rstrip(": ")
    else:
        return None
    return operator_error(Reason.PREEMPTED, f"pod {pod.get('metadata', {}).get('name', '')} was taken away ({why})")


_SECRET_PATTERNS = (
    re.compile(r'secret "(?P<name>[^"]+)" not found', re.IGNORECASE),
    re.compile(r"couldn't find key (?P<key>\S+) in Secret (?:[^/\s]+/)?(?P<name>\S+)", re.IGNORECASE),
)


def _waiting_error(
    pod: Manifest,
    container: Mapping[str, Any],
    waiting: Mapping[str, Any],
    *,
    now: datetime,
    grace: float,
) -> JobError | None:
    reason = waiting.get("reason")
    if reason in IMAGE_PULL_REASONS:
        created = parse_time(pod.get("metadata", {}).get("creationTimestamp"))
        if created is not None and seconds_left(created, grace, now=now) > 0:
            return None
        image = container.get("image", "?")
        return operator_error(
            Reason.IMAGE_PULL_FAILED, f"image {image} could not be pulled ({reason}) for over {grace:.0f}s", image=image
        )
    if reason == "CreateContainerConfigError":
        message = str(waiting.get("message", ""))
        if "secret" in message.lower():
            return _secret_error(pod, message)
        # Not a Secret (e.g. runAsNonRoot against a root image): the kubelet's words, which hold no values.
        return operator_error(
            Reason.CONTAINER_CONFIG_INVALID, f"the trainer container cannot start: {message or reason}"
        )
    return None


def _pull_grace_left(pod: Manifest, waiting: Mapping[str, Any], *, now: datetime, grace: float) -> float | None:
    """A pull failing but still within its grace: how long until it counts (nobody re-reports it then)."""
    created = parse_time(pod.get("metadata", {}).get("creationTimestamp"))
    if waiting.get("reason") not in IMAGE_PULL_REASONS or created is None:
        return None
    return max(0.0, seconds_left(created, grace, now=now))


def _secret_error(pod: Manifest, kubelet_message: str) -> JobError:
    """Name the Secret and key the pod refers to (from the pod spec), never a value."""
    refs = _secret_refs(pod)
    named: tuple[str, str | None] | None = None
    for pattern in _SECRET_PATTERNS:
        if match := pattern.search(kubelet_message):
            groups = match.groupdict()
            named = (groups["name"], groups.get("key"))
            break
    chosen = [r for r in refs if named is None or (r[1] == named[0] and (named[1] is None or r[2] == named[1]))]
    described = "; ".join(f"env {env} from Secret {name} key {key}" for env, name, key in chosen or refs)
    what = f"Secret {named[0]}" + (f" key {named[1]}" if named[1] else "") if named else "a referenced Secret"
    return operator_error(
        Reason.SECRET_NOT_READABLE,
        f"the trainer cannot start: {what} is missing ({described or 'no secret references'})",
    )


def _secret_refs(pod: Manifest) -> list[tuple[str, str, str]]:
    found = []
    for container in pod.get("spec", {}).get("containers") or []:
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                found.append((env["name"], ref.get("name", ""), ref.get("key", "")))
    return found


def _crashed(detail: str) -> JobError:
    return operator_error(Reason.CRASHED, f"the trainer crashed: {detail}")


def _result(message: str | None) -> Result | None:
    if not message:
        return None
    try:
        return Result.from_termination_message(message)
    except ValidationError:
        return None  # not ours (a truncated or foreign message): classified by exit code instead


def completion_index(pod: Manifest) -> tuple[int, str]:
    metadata = pod.get("metadata") or {}
    raw = (metadata.get("annotations") or {}).get(INDEX_ANNOTATION) or (metadata.get("labels") or {}).get(
        INDEX_ANNOTATION
    )
    return (int(raw) if raw is not None and str(raw).isdigit() else 1 << 30, metadata.get("name", ""))


def pod_condition(pod: Manifest, kind: str) -> Mapping[str, Any] | None:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind), None)


def seconds_left(since: datetime, seconds: float, *, now: datetime) -> float:
    """Seconds from `now` until `seconds` after `since` (negative once past)."""
    return (since + timedelta(seconds=seconds) - now).total_seconds()


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
