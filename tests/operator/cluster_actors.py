"""The controllers the emulator lacks, played by tests over HTTP: the Job controller, the kubelet, the trainer.

Each helper writes what the real component would write (pods from a Job's template, pod and
container status, a Job's conditions, the trainer's progress patch), so the operator sees the
same watch events it would see in a cluster.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import kmock

from kubetune_sandbox.emulator import ApiEmulator
from kubetune_trainer.contract import (
    ErrorClass,
    JobError,
    ModelFacts,
    Outcome,
    Progress,
    ProgressReport,
    Result,
    Stage,
    StageRecord,
    StageState,
)

JsonObject = dict[str, Any]
MERGE = {"Content-Type": "application/merge-patch+json"}
NAMESPACE = "ml"


def stamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(tz=UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def wait_for(check: Callable[[], Any], *, timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = check()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def _ok(response: Awaitable[Any]) -> JsonObject:
    async with await response as answer:  # type: ignore[attr-defined]
        body: JsonObject = await answer.json()
        assert answer.status < 400, body
        return body


class Actors:
    """Plays the Job controller, the kubelet and the trainer against one emulator."""

    def __init__(self, cluster: ApiEmulator, namespace: str = NAMESPACE) -> None:
        self.cluster = cluster
        self.namespace = namespace

    def _url(self, api: str, plural: str, name: str | None = None, *, status: bool = False) -> str:
        url = f"{api}/namespaces/{self.namespace}/{plural}"
        if name:
            url += f"/{name}" + ("/status" if status else "")
        return url

    # The user.

    async def apply_job(self, manifest: JsonObject) -> JsonObject:
        return await _ok(self.cluster.post(self._url("/apis/kubetune.dev/v1alpha1", "finetunejobs"), json=manifest))

    async def patch_job_spec(self, name: str, spec: JsonObject) -> JsonObject:
        url = self._url("/apis/kubetune.dev/v1alpha1", "finetunejobs", name)
        return await _ok(self.cluster.patch(url, json={"spec": spec}, headers=MERGE))

    async def delete(self, api: str, plural: str, name: str, *, policy: str = "Background") -> None:
        body = {"propagationPolicy": policy}
        async with self.cluster.delete(self._url(api, plural, name), json=body) as answer:
            assert answer.status < 400, await answer.text()

    # The Job controller.

    async def start_pods(self, job_name: str) -> list[str]:
        """Create the pods of a batch Job from its template, one per completion index."""
        job = self.cluster.live(kmock.resource("batch/v1/jobs"), self.namespace, job_name)
        assert job is not None, f"batch Job {job_name} does not exist"
        template = job["spec"]["template"]
        names = []
        for index in range(int(job["spec"].get("parallelism") or 1)):
            name = f"{job_name}-{index}-{secrets.token_hex(3)}"
            labels = {**template["metadata"].get("labels", {}), "job-name": job_name}
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "labels": labels,
                    "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
                    "ownerReferences": [
                        {
                            "apiVersion": "batch/v1",
                            "kind": "Job",
                            "name": job_name,
                            "uid": job["metadata"]["uid"],
                            "controller": True,
                        }
                    ],
                },
                "spec": template["spec"],
            }
            await _ok(self.cluster.post(self._url("/api/v1", "pods"), json=pod))
            names.append(name)
        return names

    async def job_condition(self, job_name: str, kind: str, reason: str = "") -> None:
        condition = {"type": kind, "status": "True", "reason": reason or kind, "lastTransitionTime": stamp()}
        url = self._url("/apis/batch/v1", "jobs", job_name, status=True)
        await _ok(self.cluster.patch(url, json={"status": {"conditions": [condition]}}, headers=MERGE))

    # The kubelet.

    async def pod_status(self, pod: str, status: JsonObject) -> None:
        await _ok(
            self.cluster.patch(self._url("/api/v1", "pods", pod, status=True), json={"status": status}, headers=MERGE)
        )

    async def unschedulable(self, pod: str, message: str) -> None:
        condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
        await self.pod_status(pod, {"phase": "Pending", "conditions": [condition]})

    async def waiting(self, pod: str, reason: str, message: str, *, image: str = "trainer:1") -> None:
        container = {
            "name": "trainer",
            "image": image,
            "ready": False,
            "state": {"waiting": {"reason": reason, "message": message}},
        }
        scheduled = {"type": "PodScheduled", "status": "True"}
        await self.pod_status(pod, {"phase": "Pending", "conditions": [scheduled], "containerStatuses": [container]})

    async def run(self, pod: str) -> None:
        container = {
            "name": "trainer",
            "image": "trainer:1",
            "ready": True,
            "state": {"running": {"startedAt": stamp()}},
        }
        scheduled = {"type": "PodScheduled", "status": "True"}
        await self.pod_status(pod, {"phase": "Running", "conditions": [scheduled], "containerStatuses": [container]})

    async def terminate(
        self, pod: str, *, exit_code: int, message: str | None = None, reason: str | None = None
    ) -> None:
        terminated: JsonObject = {"exitCode": exit_code, "startedAt": stamp(), "finishedAt": stamp()}
        terminated["reason"] = reason or ("Completed" if exit_code == 0 else "Error")
        if message is not None:
            terminated["message"] = message
        container = {"name": "trainer", "image": "trainer:1", "ready": False, "state": {"terminated": terminated}}
        phase = "Succeeded" if exit_code == 0 else "Failed"
        await self.pod_status(pod, {"phase": phase, "containerStatuses": [container]})

    async def evict(self, pod: str) -> None:
        target = {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI", "message": "evicted"}
        await self.pod_status(pod, {"phase": "Failed", "reason": "Evicted", "conditions": [target]})

    # The trainer (rank 0's Kubernetes reporter patches only stage, stages and progress).

    async def report(self, job: str, stage: Stage, *, done: list[Stage], progress: Progress | None = None) -> None:
        records = [
            StageRecord(
                name=s, state=StageState.SUCCEEDED, start_time=datetime.now(tz=UTC), end_time=datetime.now(tz=UTC)
            )
            for s in done
        ]
        records.append(StageRecord(name=stage, state=StageState.RUNNING, start_time=datetime.now(tz=UTC)))
        report = ProgressReport(stage=stage, stages=records, progress=progress)
        url = self._url("/apis/kubetune.dev/v1alpha1", "finetunejobs", job, status=True)
        await _ok(self.cluster.patch(url, json=report.status_patch(), headers=MERGE))


PREFLIGHT_FACTS = ModelFacts(
    model_type="llama",
    architectures=["LlamaForCausalLM"],
    parameters=1_235_814_400,
    max_positions=131072,
    transformers_version="4.45.0",
    revision_sha="0" * 40,
)


def preflight_passed(facts: ModelFacts = PREFLIGHT_FACTS) -> str:
    return Result(outcome=Outcome.SUCCEEDED, model=facts).to_termination_message()


def trainer_succeeded(*, checkpoint_step: int | None = None) -> str:
    return Result(outcome=Outcome.SUCCEEDED, checkpoint_step=checkpoint_step).to_termination_message()


def trainer_failed(error_class: ErrorClass, reason: str, *, retryable: bool, checkpoint_step: int | None = None) -> str:
    error = JobError(
        error_class=error_class,
        reason=reason,
        message=f"{reason} happened",
        hint="change something",
        retryable=retryable,
    )
    return Result(
        outcome=Outcome.FAILED, exit_code=1, error=error, checkpoint_step=checkpoint_step
    ).to_termination_message()
