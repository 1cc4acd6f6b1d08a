"""The sandbox's batch/v1 Job controller: pods from a Job's template, and the Job's status from its pods.

What kubetune's Jobs rely on, as Kubernetes 1.31+ does it:
- `parallelism` pods at a time until `completions` succeed; Indexed Jobs get one pod per index,
  named `<job>-<index>-<suffix>`, with the completion index as annotation, label and the
  JOB_COMPLETION_INDEX variable, and the hostname `<job>-<index>` (with the template's
  subdomain, the pod's DNS name under a headless Service);
- pods carry the job-name and controller-uid labels and a controller ownerReference;
- status `active`, `ready`, `succeeded`, `failed`, `terminating`, `completedIndexes`,
  `startTime`, `completionTime`; a failed pod is replaced until failures exceed
  `backoffLimit` (at once: no exponential backoff here);
- the end: `SuccessCriteriaMet` then `Complete`; `FailureTarget` then `Failed` (reason
  BackoffLimitExceeded, or DeadlineExceeded past `activeDeadlineSeconds`), the active pods of a
  failing Job deleted first and the terminal condition written once they are gone;
- `suspend`: active pods deleted, condition Suspended; unsuspending resets `startTime`;
- pod tracking with the `batch.kubernetes.io/job-tracking` finalizer: every pod it creates carries
  it, so a pod cannot go before it is counted (a pod failed and deleted at once, a pod
  force-deleted while it runs); the finalizer is removed once the pod is finished or being
  deleted (counted), and from the pods of a Job that is gone; no pod is created for a Job being
  deleted. A failed or deleted pod is never replaced once failures exceed `backoffLimit`.
Not played: pod failure policies, success policies, `completions` unset with parallelism > 1,
backoff delays, `ttlSecondsAfterFinished`, `podReplacementPolicy` other than the default
(TerminatingOrFailed), managedBy, and counts that survive the controller (it keeps them in memory;
Kubernetes keeps them in the Job's status with `uncountedTerminatedPods`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from kubetune_operator.kube.client import ApiError
from kubetune_operator.kube.resources import JOBS, PODS
from kubetune_operator.observe.pod_state import INDEX_ANNOTATION, parse_time
from kubetune_trainer.contract import format_kube_time

from .client import API_FAILURES, JsonObject, SandboxClient
from .pod_runner import utc_now

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
LEGACY_LABELS = ("job-name", "controller-uid")
"""The unprefixed labels the Job controller still sets beside the batch.kubernetes.io ones."""
INDEX_ENV = "JOB_COMPLETION_INDEX"
TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
"""On every pod the controller creates, until it has counted the pod: a pod cannot vanish uncounted."""
RETRY_SECONDS = 0.5
_FINISHED = frozenset({"Succeeded", "Failed"})

log = logging.getLogger(__name__)

JobKey = tuple[str, str]


class JobController:
    """Reconciles every batch/v1 Job in every namespace, one at a time."""

    def __init__(
        self, client: SandboxClient, *, clock: Callable[[], datetime] = utc_now, track_pods: bool = True
    ) -> None:
        """`track_pods=False`: no tracking finalizer on new pods (the operator tests run single passes, no loop)."""
        self._client = client
        self._clock = clock
        self._track_pods = track_pods
        self._queue: asyncio.Queue[JobKey] = asyncio.Queue()
        self._queued: set[JobKey] = set()
        self._ledgers: dict[str, dict[str, tuple[str, int | None]]] = {}
        """Job uid -> its finished pods (uid -> phase, index), counted once each."""
        self._stopped: set[str] = set()
        """Pods this controller deleted: their end is not a failure of the Job."""

    async def run(self) -> None:
        """Watch Jobs and pods and reconcile until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._watch_jobs())
            group.create_task(self._watch_pods())
            group.create_task(self._work())

    async def _watch_jobs(self) -> None:
        async for _, job in self._client.watch(JOBS):
            self._enqueue((job["metadata"].get("namespace", "default"), job["metadata"]["name"]))

    async def _watch_pods(self) -> None:
        async for _, pod in self._client.watch(PODS):
            for owner in pod["metadata"].get("ownerReferences") or []:
                if owner.get("controller") and owner.get("kind") == "Job":
                    self._enqueue((pod["metadata"].get("namespace", "default"), owner["name"]))

    def _enqueue(self, key: JobKey) -> None:
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            try:
                await self.reconcile(*key)
            except API_FAILURES as error:  # a conflict, a pod that went meanwhile, a dropped call: look again shortly
                log.warning("Job %s/%s: %s; trying again", *key, error)
                asyncio.get_running_loop().call_later(RETRY_SECONDS, self._enqueue, key)
            except (KeyError, TypeError, ValueError) as error:  # a Job this controller cannot read: leave it
                log.error("Job %s/%s cannot be played: %r", *key, error)

    async def reconcile(self, namespace: str, name: str) -> None:
        job = await self._client.get(JOBS, namespace=namespace, name=name)
        await self._release_orphans(namespace, name, job)
        if job is None:
            return
        spec, status = job["spec"], copy.deepcopy(job.get("status") or {})
        conditions = _Conditions(status.get("conditions") or [], now=format_kube_time(self._clock()))
        pods = await self._pods(job)
        await self._release(pods.counted)
        if conditions.true("Complete") or conditions.true("Failed") or job["metadata"].get("deletionTimestamp"):
            return
        indexed = spec.get("completionMode") == "Indexed"
        completions = int(spec.get("completions") or 1)
        if spec.get("suspend"):
            await self._delete(pods.active)
            conditions.set("Suspended", True, reason="JobSuspended", message="Job suspended")
        else:
            if conditions.true("Suspended"):
                conditions.set("Suspended", False, reason="JobResumed", message="Job resumed")
                status.pop("startTime", None)
            status.setdefault("startTime", format_kube_time(self._clock()))
            done = pods.done_indexes() == set(range(completions)) if indexed else pods.succeeded >= completions
            failure = self._failure(spec, status, failed=pods.failed, key=(namespace, name))
            if failure is not None:
                await self._finish(pods, conditions, ("FailureTarget", "Failed"), failure)
            elif done:
                reached = ("CompletionsReached", "Reached expected number of succeeded pods")
                if await self._finish(pods, conditions, ("SuccessCriteriaMet", "Complete"), reached):
                    status["completionTime"] = format_kube_time(self._clock())
            else:
                await self._create_missing(job, pods, indexed=indexed, completions=completions)
                pods = await self._pods(job)
                await self._release(pods.counted)
        status.update(pods.counts(), conditions=conditions.items)
        if indexed:
            status["completedIndexes"] = _index_ranges(pods.done_indexes())
        if status != (job.get("status") or {}):
            await self._write_status(namespace, name, status)

    async def _write_status(self, namespace: str, name: str, status: JsonObject) -> None:
        """The pass's status; a Job deleted during the pass (a 404) is dropped, as the real Job controller does."""
        try:
            await self._client.patch_status(JOBS, status, namespace=namespace, name=name)
        except ApiError as error:
            if not error.not_found:
                raise
            log.info("Job %s/%s was deleted during this pass; its status is dropped", namespace, name)

    async def _finish(self, pods: _Pods, conditions: _Conditions, kinds: tuple[str, str], why: tuple[str, str]) -> bool:
        """The interim condition at once; the terminal one when no pod of the Job is left running."""
        reason, message = why
        conditions.set(kinds[0], True, reason=reason, message=message)
        await self._delete(pods.active)
        if pods.active or pods.terminating:
            return False
        conditions.set(kinds[1], True, reason=reason, message=message)
        return True

    async def _release(self, pods: Sequence[JsonObject]) -> None:
        """Remove the tracking finalizer from pods that are counted (or belong to no Job): they may go now."""
        for pod in pods:
            finalizers = pod["metadata"].get("finalizers") or []
            if TRACKING_FINALIZER not in finalizers:
                continue
            kept = [f for f in finalizers if f != TRACKING_FINALIZER]
            with contextlib.suppress(ApiError):  # gone meanwhile: nothing to release
                await self._client.merge_patch(
                    PODS,
                    {"metadata": {"finalizers": kept or None}},
                    namespace=pod["metadata"].get("namespace"),
                    name=pod["metadata"]["name"],
                )

    async def _release_orphans(self, namespace: str, name: str, job: JsonObject | None) -> None:
        """Pods named for this Job but owned by no live Job of that name (deleted, or re-created): released."""
        live_uid = None if job is None else str(job["metadata"]["uid"])
        listed = await self._client.list(PODS, namespace=namespace, label_selector=f"{JOB_NAME_LABEL}={name}")
        await self._release(
            [pod for pod in listed if (pod["metadata"].get("labels") or {}).get(CONTROLLER_UID_LABEL) != live_uid]
        )

    async def _pods(self, job: JsonObject) -> _Pods:
        uid = str(job["metadata"]["uid"])
        selector = f"{CONTROLLER_UID_LABEL}={uid}"
        listed = await self._client.list(PODS, namespace=job["metadata"].get("namespace"), label_selector=selector)
        return _Pods(listed, ledger=self._ledgers.setdefault(uid, {}), stopped=self._stopped)

    def _failure(
        self, spec: Mapping[str, Any], status: Mapping[str, Any], *, failed: int, key: JobKey
    ) -> tuple[str, str] | None:
        if failed > int(spec.get("backoffLimit", 6)):
            return "BackoffLimitExceeded", "Job has reached the specified backoff limit"
        deadline = spec.get("activeDeadlineSeconds")
        started = parse_time(status.get("startTime"))
        if deadline is None or started is None:
            return None
        left = float(deadline) - (self._clock() - started).total_seconds()
        if left <= 0:
            return "DeadlineExceeded", "Job was active longer than specified deadline"
        asyncio.get_running_loop().call_later(left, self._enqueue, key)
        return None

    async def _create_missing(self, job: JsonObject, pods: _Pods, *, indexed: bool, completions: int) -> None:
        """New pods up to `parallelism`, lowest missing index first (pod 0 hosts a rendezvous)."""
        parallelism = int(job["spec"].get("parallelism", 1))
        if indexed:
            busy = pods.done_indexes() | pods.active_indexes()
            room = parallelism - len(pods.active)
            wanted: Sequence[int | None] = [i for i in range(completions) if i not in busy][: max(0, room)]
        else:
            # The running pods count against the completions left: min(parallelism, left) - active.
            wanted = [None] * max(0, min(parallelism, completions - pods.succeeded) - len(pods.active))
        for index in wanted:
            pod = pod_for(job, index=index, tracked=self._track_pods)
            await self._client.create(PODS, pod, namespace=job["metadata"].get("namespace", "default"))

    async def _delete(self, pods: Sequence[JsonObject]) -> None:
        for pod in pods:
            self._stopped.add(str(pod["metadata"].get("uid")))
            with contextlib.suppress(ApiError):
                await self._client.delete(
                    PODS, namespace=pod["metadata"].get("namespace"), name=pod["metadata"]["name"]
                )


def pod_for(job: Mapping[str, Any], *, index: int | None, tracked: bool = True) -> JsonObject:
    """A pod from the Job's template, as the Job controller makes it (`index` for Indexed Jobs; `tracked`:
    with the tracking finalizer)."""
    meta = job["metadata"]
    name, uid = str(meta["name"]), str(meta["uid"])
    template = copy.deepcopy(job["spec"]["template"])
    template_meta = template.get("metadata") or {}
    labels = {**(template_meta.get("labels") or {}), JOB_NAME_LABEL: name, CONTROLLER_UID_LABEL: uid}
    labels.update({LEGACY_LABELS[0]: name, LEGACY_LABELS[1]: uid})
    annotations = dict(template_meta.get("annotations") or {})
    spec = template["spec"]
    generate_name = f"{name}-"
    if index is not None:
        labels[INDEX_ANNOTATION] = annotations[INDEX_ANNOTATION] = str(index)
        generate_name = f"{name}-{index}-"
        spec["hostname"] = f"{name}-{index}"
        index_env = {
            "name": INDEX_ENV,
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}},
        }
        for container in spec.get("containers") or []:
            if not any(env.get("name") == INDEX_ENV for env in container.get("env") or []):
                container["env"] = [*(container.get("env") or []), index_env]
    owner = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": generate_name,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner],
            **({"finalizers": [TRACKING_FINALIZER]} if tracked else {}),
        },
        "spec": spec,
    }


class _Pods:
    """A Job's pods as the Job controller counts them: each finished pod once, also after it is gone,
    and never a pod the controller stopped itself (suspend, a finished Job)."""

    def __init__(
        self, pods: Sequence[JsonObject], *, ledger: dict[str, tuple[str, int | None]], stopped: set[str]
    ) -> None:
        for pod in pods:
            uid = uid_of(pod)
            if uid in stopped:
                continue
            if _phase(pod) in _FINISHED:
                ledger.setdefault(uid, (_phase(pod), _index(pod)))
            elif pod["metadata"].get("deletionTimestamp"):
                # The default podReplacementPolicy (TerminatingOrFailed): a pod someone else deletes (an
                # eviction) has failed from the moment it terminates, so backoffLimit decides its replacement.
                ledger.setdefault(uid, ("Failed", _index(pod)))
        self.counted = [
            p for p in pods if _phase(p) in _FINISHED or p["metadata"].get("deletionTimestamp") or uid_of(p) in stopped
        ]
        """Pods the controller has counted (or stopped itself): their tracking finalizer can go."""
        running = [p for p in pods if _phase(p) not in _FINISHED]
        self.active = [p for p in running if not p["metadata"].get("deletionTimestamp")]
        self.terminating = [p for p in running if p["metadata"].get("deletionTimestamp")]
        self.succeeded = sum(1 for phase, _ in ledger.values() if phase == "Succeeded")
        self.failed = sum(1 for phase, _ in ledger.values() if phase == "Failed")
        self._done = {index for phase, index in ledger.values() if phase == "Succeeded" and index is not None}

    def done_indexes(self) -> set[int]:
        return set(self._done)

    def active_indexes(self) -> set[int]:
        return {i for i in map(_index, self.active) if i is not None}

    def counts(self) -> dict[str, int]:
        return {
            "active": len(self.active),
            "ready": sum(1 for pod in self.active if _ready(pod)),
            "succeeded": self.succeeded,
            "failed": self.failed,
            "terminating": len(self.terminating),
        }


class _Conditions:
    """A Job's conditions, changed in place; a condition keeps its transition time while its status holds."""

    def __init__(self, items: Sequence[JsonObject], *, now: str) -> None:
        self.items = [dict(item) for item in items]
        self._now = now

    def true(self, kind: str) -> bool:
        return any(c.get("type") == kind and c.get("status") == "True" for c in self.items)

    def set(self, kind: str, status: bool, *, reason: str, message: str) -> None:
        value = "True" if status else "False"
        for condition in self.items:
            if condition.get("type") == kind:
                if condition.get("status") != value:
                    condition.update(
                        status=value,
                        reason=reason,
                        message=message,
                        lastTransitionTime=self._now,
                        lastProbeTime=self._now,
                    )
                return
        self.items.append(
            {
                "type": kind,
                "status": value,
                "reason": reason,
                "message": message,
                "lastProbeTime": self._now,
                "lastTransitionTime": self._now,
            }
        )


def uid_of(pod: JsonObject) -> str:
    return str(pod["metadata"].get("uid"))


def _phase(pod: JsonObject) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def _index(pod: JsonObject) -> int | None:
    raw = (pod["metadata"].get("annotations") or {}).get(INDEX_ANNOTATION)
    return int(raw) if raw is not None and str(raw).isdigit() else None


def _ready(pod: JsonObject) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _index_ranges(indexes: set[int]) -> str:
    """`0-2,5`: how the Job controller writes completedIndexes."""
    ranges: list[str] = []
    for index in sorted(indexes):
        if ranges and ranges[-1].split("-")[-1] == str(index - 1):
            ranges[-1] = f"{ranges[-1].split('-')[0]}-{index}"
        else:
            ranges.append(str(index))
    return ",".join(ranges)
