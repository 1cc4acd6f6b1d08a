"""Pods, batch Jobs and termination messages -> an `Observation`: what the cluster says happened.

Pure: the caller lists the objects (as the API returns them) and passes the time. Each failure
is classified once, here, into the contract's error shape, with a reason a user can search
for and a hint naming what to change. Secret values never appear: only Secret and key names,
which the pod spec itself holds.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import Field, ValidationError

from kubetune_trainer.contract import ErrorClass, JobError, ModelFacts, Outcome, Result, WireModel

from .api.conditions import Reason
from .settings import OperatorSettings

INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
NODE_LOSS_REASONS = frozenset({"NodeLost", "Evicted", "Preempting", "Terminated", "Shutdown", "NodeShutdown"})

Manifest = Mapping[str, Any]


class RunState(enum.StrEnum):
    """Where a run (the preflight, or one attempt) stands."""

    ABSENT = "Absent"
    AWAITING_ADMISSION = "AwaitingAdmission"
    UNSCHEDULABLE = "Unschedulable"
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class RunObservation(WireModel):
    """One run as its batch Job and pods show it."""

    state: RunState = Field(description="Where the run stands.")
    message: str = Field("", description="The scheduler's or Kueue's words, when waiting.")
    result: Result | None = Field(None, description="The decisive termination message (rank 0 first).")
    error: JobError | None = Field(None, description="Why the run failed, classified.")
    started_at: datetime | None = Field(None, description="When the first container started.")
    finished_at: datetime | None = Field(None, description="When the last container finished.")
    pod_seconds: float = Field(0.0, ge=0.0, description="Container run time summed over pods, up to now.")
    live_pods: int = Field(0, ge=0, description="Pods not yet finished: they may hold GPUs.")

    @property
    def done(self) -> bool:
        return self.state in (RunState.SUCCEEDED, RunState.FAILED)


ABSENT = RunObservation(state=RunState.ABSENT)


class Observation(WireModel):
    """What the cluster shows for a FineTuneJob: its preflight and its current attempt."""

    preflight: RunObservation = Field(ABSENT, description="The preflight Job and pod.")
    attempt: int = Field(0, ge=0, description="The attempt observed; 0: none.")
    trainer: RunObservation = Field(ABSENT, description="The attempt's Job and pods.")

    @property
    def model_facts(self) -> ModelFacts | None:
        """config.json facts the preflight found, for `model: auto` and status.resolved."""
        result = self.preflight.result
        return result.model if result is not None else None


def observe(
    *,
    preflight_job: Manifest | None,
    preflight_pods: Sequence[Manifest],
    attempt: int,
    attempt_job: Manifest | None,
    attempt_pods: Sequence[Manifest],
    now: datetime,
    settings: OperatorSettings,
) -> Observation:
    """Observe the preflight and attempt `attempt` (their Jobs may be None when absent)."""
    grace = settings.image_pull_grace_seconds
    return Observation(
        preflight=observe_run(preflight_job, preflight_pods, now=now, image_pull_grace=grace),
        attempt=attempt,
        trainer=observe_run(attempt_job, attempt_pods, now=now, image_pull_grace=grace) if attempt else ABSENT,
    )


def observe_run(
    job: Manifest | None,
    pods: Sequence[Manifest],
    *,
    now: datetime,
    image_pull_grace: float,
) -> RunObservation:
    """One batch Job and its pods -> a RunObservation."""
    if job is None and not pods:
        return ABSENT
    ordered = sorted(pods, key=_index)
    views = [_PodView.of(pod, now=now, image_pull_grace=image_pull_grace) for pod in ordered]
    timing = _timing(views, now=now)
    live = sum(1 for v in views if not v.finished)
    expected = int((job or {}).get("spec", {}).get("completions") or len(views) or 1)
    rank0 = next((v.result for v in views if v.result is not None), None)

    failed = [v for v in views if v.error is not None]
    if failed:
        # The trainer's own words beat a bare exit code: prefer a pod whose Result explains the failure.
        chosen = next((v for v in failed if v.result is not None and v.result.error is not None), failed[0])
        return RunObservation(state=RunState.FAILED, error=chosen.error, result=chosen.result, live_pods=live, **timing)
    job_failure = _job_condition(job, "Failed")
    if job_failure is not None:
        error = _error(
            ErrorClass.INTERNAL,
            Reason.CRASHED,
            f"the batch Job failed ({job_failure}) and left no termination message",
            hint="check the pods' logs; report the FineTuneJob's UID if it persists",
            retryable=True,
        )
        return RunObservation(state=RunState.FAILED, error=error, live_pods=live, **timing)
    succeeded = sum(1 for v in views if v.succeeded)
    if _job_condition(job, "Complete") is not None or (views and succeeded >= expected):
        return RunObservation(state=RunState.SUCCEEDED, result=rank0, live_pods=live, **timing)
    if job is not None and job.get("spec", {}).get("suspend") and not views:
        return RunObservation(state=RunState.AWAITING_ADMISSION, message="waiting for Kueue to admit the Job")
    unschedulable = next((v for v in views if v.unschedulable is not None), None)
    if unschedulable is not None:
        return RunObservation(
            state=RunState.UNSCHEDULABLE, message=unschedulable.unschedulable or "", live_pods=live, **timing
        )
    running = sum(1 for v in views if v.running or v.succeeded)
    state = RunState.RUNNING if views and running >= expected else RunState.PENDING
    return RunObservation(state=state, live_pods=live, **timing)


class _PodView:
    """What one pod says, classified."""

    def __init__(self) -> None:
        self.error: JobError | None = None
        self.result: Result | None = None
        self.unschedulable: str | None = None
        self.running = False
        self.succeeded = False
        self.finished = False
        self.started: datetime | None = None
        self.ended: datetime | None = None

    @classmethod
    def of(cls, pod: Manifest, *, now: datetime, image_pull_grace: float) -> _PodView:
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
        if view.error is None and phase == "Failed" and not view.succeeded:
            view.error = _crashed(status.get("message") or status.get("reason") or "the pod failed")
        if phase == "Pending":
            scheduled = _pod_condition(pod, "PodScheduled")
            if scheduled is not None and scheduled.get("status") == "False":
                view.unschedulable = scheduled.get("message") or scheduled.get("reason") or "not scheduled yet"
        return view

    def _read_container(self, container: Mapping[str, Any]) -> None:
        state = container.get("state") or {}
        if running := state.get("running"):
            self.running = True
            self.started = _time(running.get("startedAt"))
            return
        terminated = state.get("terminated")
        if not terminated:
            return
        self.finished = True
        self.started = _time(terminated.get("startedAt"))
        self.ended = _time(terminated.get("finishedAt"))
        self.result = _result(terminated.get("message"))
        exit_code = int(terminated.get("exitCode", 0))
        if self.result is not None:
            if self.result.outcome == Outcome.SUCCEEDED and exit_code == 0:
                self.succeeded = True
            else:
                self.error = self.result.error or _crashed(f"exit code {exit_code}, Result without an error")
        elif terminated.get("reason") == "OOMKilled":
            self.error = _error(
                ErrorClass.INTERNAL,
                Reason.OOM_KILLED,
                "the trainer container ran out of host memory and was killed (OOMKilled)",
                hint="raise resources.memory in the BaseModelTemplate, or lower batchSize or maxSeqLength",
                retryable=False,
            )
        elif exit_code != 0:
            self.error = _crashed(f"the trainer exited with code {exit_code} without a termination message")
        else:
            self.succeeded = True


def _disruption(pod: Manifest) -> JobError | None:
    """Eviction, preemption, node loss: the world took the pod away, so a retry is worth it."""
    status = pod.get("status") or {}
    target = _pod_condition(pod, "DisruptionTarget")
    if target is not None and target.get("status") == "True":
        why = f"{target.get('reason', 'DisruptionTarget')}: {target.get('message', '')}".rstrip(": ")
    elif status.get("reason") in NODE_LOSS_REASONS or status.get("phase") == "Unknown":
        why = f"{status.get('reason') or 'node lost'}: {status.get('message', '')}".rstrip(": ")
    else:
        return None
    return _error(
        ErrorClass.INTERNAL,
        Reason.PREEMPTED,
        f"pod {pod.get('metadata', {}).get('name', '')} was taken away ({why})",
        hint="nothing to change: the job resumes from its newest checkpoint on a new attempt",
        retryable=True,
    )


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
        created = _time(pod.get("metadata", {}).get("creationTimestamp"))
        if created is not None and (now - created).total_seconds() < grace:
            return None
        image = container.get("image", "?")
        return _error(
            ErrorClass.INTERNAL,
            Reason.IMAGE_PULL_FAILED,
            f"image {image} could not be pulled ({reason}) for over {grace:.0f}s",
            hint=f"check the image name and tag exist and the nodes can reach its registry: {image}",
            retryable=False,
        )
    if reason == "CreateContainerConfigError":
        return _secret_error(pod, waiting.get("message", ""))
    return None


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
    return _error(
        ErrorClass.INVALID_INPUT,
        Reason.SECRET_NOT_READABLE,
        f"the trainer cannot start: {what} is missing ({described or 'no secret references'})",
        hint="create the Secret with that key in the job's namespace, or fix hfTokenSecretRef / wandb.apiKeySecretRef",
        retryable=False,
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
    return _error(
        ErrorClass.INTERNAL,
        Reason.CRASHED,
        f"the trainer crashed: {detail}",
        hint="check the pod's logs; report the FineTuneJob's UID if it persists",
        retryable=True,
    )


def _error(error_class: ErrorClass, reason: Reason, message: str, *, hint: str, retryable: bool) -> JobError:
    return JobError(error_class=error_class, reason=str(reason), message=message, hint=hint, retryable=retryable)


def _result(message: str | None) -> Result | None:
    if not message:
        return None
    try:
        return Result.from_termination_message(message)
    except ValidationError:
        return None  # not ours (a truncated or foreign message): classified by exit code instead


def _timing(views: Sequence[_PodView], *, now: datetime) -> dict[str, Any]:
    starts = [v.started for v in views if v.started is not None]
    ends = [v.ended for v in views if v.ended is not None]
    seconds = sum(max(0.0, ((v.ended or now) - v.started).total_seconds()) for v in views if v.started is not None)
    all_done = bool(views) and all(v.finished for v in views)
    return {
        "started_at": min(starts) if starts else None,
        "finished_at": max(ends) if ends and all_done else None,
        "pod_seconds": seconds,
    }


def _index(pod: Manifest) -> tuple[int, str]:
    metadata = pod.get("metadata") or {}
    raw = (metadata.get("annotations") or {}).get(INDEX_ANNOTATION) or (metadata.get("labels") or {}).get(
        INDEX_ANNOTATION
    )
    return (int(raw) if raw is not None and str(raw).isdigit() else 1 << 30, metadata.get("name", ""))


def _pod_condition(pod: Manifest, kind: str) -> Mapping[str, Any] | None:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind), None)


def _job_condition(job: Manifest | None, kind: str) -> str | None:
    """The reason of the Job's `kind` condition when it is True, else None."""
    for condition in ((job or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return str(condition.get("reason") or kind)
    return None


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
