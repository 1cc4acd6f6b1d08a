"""The controllers the emulator lacks, for the operator tests: the sandbox's Job controller, the kubelet, the trainer.

The Job controller is the sandbox's own (`kubetune_sandbox.job_controller.JobController`), run one
pass at a time when a test asks: `start_pods` is its pass that creates a Job's pods from the
template, `job_condition` its pass that derives the Job's conditions from the pods' phases (and
checks it reached the one the test expects). Its pod-tracking finalizer is off here: no loop runs
to release it, and a test deletes pods by hand. The kubelet is played by hand, since each test
chooses what a pod does (unschedulable, image pull errors, exit codes, eviction), but its statuses
are built by the sandbox kubelet's own builders (`kubetune_sandbox.pod_status`), so both write one
shape. The trainer's progress patch is the contract's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import kmock

from kubetune_operator.kube.connection import Connection
from kubetune_sandbox import pod_status
from kubetune_sandbox.client import SandboxClient
from kubetune_sandbox.emulator import ApiEmulator
from kubetune_sandbox.job_controller import CONTROLLER_UID_LABEL, JobController
from kubetune_sandbox.pod_inputs import PodPlanError
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
PODS = kmock.resource("v1/pods")
JOBS = kmock.resource("batch/v1/jobs")


def stamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(tz=UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


class JobGone(AssertionError):
    """The batch Job a test's controller pass was for is gone (a failure, unless the test expects the race)."""


async def wait_for(check: Callable[[], Any], *, timeout: float = 30.0, what: str = "condition") -> Any:
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
    """Plays the Job controller (the sandbox's), the kubelet and the trainer against one emulator.

    Close it (`aclose`) when done: the Job controller's client holds a connection.
    """

    def __init__(self, cluster: ApiEmulator, namespace: str = NAMESPACE) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self._client: SandboxClient | None = None
        self._controller: JobController | None = None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.__aexit__(None, None, None)
            self._client = self._controller = None

    async def _job_controller(self) -> JobController:
        if self._controller is None:
            client = SandboxClient(Connection(server=str(self.cluster.url).rstrip("/")))
            self._client = await client.__aenter__()
            self._controller = JobController(client, track_pods=False)
        return self._controller

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

    # The Job controller: the sandbox's, one pass at a time.

    async def start_pods(self, job_name: str) -> list[str]:
        """The Job controller's pass that creates the Job's pods (one per completion index); their names by index."""
        job = self.cluster.live(JOBS, self.namespace, job_name)
        assert job is not None, f"batch Job {job_name} does not exist"
        await (await self._job_controller()).reconcile(self.namespace, job_name)
        return [pod["metadata"]["name"] for pod in self._pods_of(job)]

    async def job_condition(self, job_name: str, kind: str, reason: str = "") -> None:
        """The Job controller's pass over the pods' phases; the Job must then have condition `kind` (and `reason`)."""
        await (await self._job_controller()).reconcile(self.namespace, job_name)
        job = self.cluster.live(JOBS, self.namespace, job_name)
        if job is None:
            raise JobGone(f"batch Job {job_name} does not exist")
        conditions = [
            (c["type"], c.get("reason", "")) for c in (job.get("status") or {}).get("conditions", [])
            if c.get("status") == "True"
        ]  # fmt: skip
        assert any(k == kind and (not reason or r == reason) for k, r in conditions), (
            f"the Job controller gave {job_name} {conditions}, not {kind} {reason}: check the pods' phases"
        )

    async def job_condition_seen_first(self, job_name: str, kind: str) -> None:
        """The Job's `kind` condition as a watcher may see it before the pod's end: the Job watch delivers it first.

        Not the Job controller (it writes Complete only after the pods ended): a write of the
        condition alone, for the watch order no pass of the controller can produce here.
        """
        condition = {"type": kind, "status": "True", "reason": kind, "lastTransitionTime": stamp()}
        url = self._url("/apis/batch/v1", "jobs", job_name, status=True)
        await _ok(self.cluster.patch(url, json={"status": {"conditions": [condition]}}, headers=MERGE))

    def _pods_of(self, job: JsonObject) -> list[JsonObject]:
        uid = job["metadata"]["uid"]
        pods = [
            pod for pod in self.cluster.live_objects(PODS, self.namespace)
            if (pod["metadata"].get("labels") or {}).get(CONTROLLER_UID_LABEL) == uid
        ]  # fmt: skip
        return sorted(
            pods, key=lambda pod: (_index(pod), pod["metadata"]["creationTimestamp"], pod["metadata"]["name"])
        )

    # The kubelet, by hand, in the sandbox kubelet's shapes.

    async def pod_status(self, pod: str, status: JsonObject) -> None:
        await _ok(
            self.cluster.patch(self._url("/api/v1", "pods", pod, status=True), json={"status": status}, headers=MERGE)
        )

    async def unschedulable(self, pod: str, message: str) -> None:
        condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
        await self.pod_status(pod, {"phase": "Pending", "conditions": [condition]})

    async def waiting(self, pod: str, reason: str, message: str, *, image: str = "trainer:1") -> None:
        container = {"name": "trainer", "image": image}
        await self.pod_status(pod, pod_status.waiting(container, PodPlanError(reason, message), now=stamp()))

    async def run(self, pod: str) -> None:
        running = self._container({"running": {"startedAt": stamp()}})
        await self.pod_status(pod, pod_status.running(running, start_time=stamp(), now=stamp()))

    async def terminate(
        self, pod: str, *, exit_code: int, message: str | None = None, reason: str | None = None
    ) -> None:
        terminated: JsonObject = {"exitCode": exit_code, "startedAt": stamp(), "finishedAt": stamp()}
        terminated["reason"] = reason or ("Completed" if exit_code == 0 else "Error")
        if message is not None:
            terminated["message"] = message
        container = self._container({"terminated": terminated})
        await self.pod_status(pod, pod_status.terminated(container, exit_code=exit_code, evicted=False, now=stamp()))

    async def evict(self, pod: str) -> None:
        """An eviction's end as the sandbox kubelet writes it: Failed, Evicted, with the DisruptionTarget condition."""
        terminated = {"exitCode": 143, "reason": "Error", "startedAt": stamp(), "finishedAt": stamp()}
        container = self._container({"terminated": terminated})
        await self.pod_status(pod, pod_status.terminated(container, exit_code=143, evicted=True, now=stamp()))

    @staticmethod
    def _container(state: JsonObject) -> JsonObject:
        return pod_status.container_status(name="trainer", image="trainer:1", pid=1, state=state)

    # The trainer (rank 0's Kubernetes reporter patches only stage, stages and progress).

    async def report(
        self,
        job: str,
        stage: Stage,
        *,
        done: list[Stage],
        progress: Progress | None = None,
        training_tokens: int | None = None,
    ) -> None:
        """`training_tokens`: DataDownload's count, in its record once that stage is done."""
        records = [
            StageRecord(
                name=s,
                state=StageState.SUCCEEDED,
                start_time=datetime.now(tz=UTC),
                end_time=datetime.now(tz=UTC),
                training_tokens=training_tokens if s == Stage.DATA_DOWNLOAD else None,
            )
            for s in done
        ]
        records.append(StageRecord(name=stage, state=StageState.RUNNING, start_time=datetime.now(tz=UTC)))
        report = ProgressReport(stage=stage, stages=records, progress=progress)
        url = self._url("/apis/kubetune.dev/v1alpha1", "finetunejobs", job, status=True)
        await _ok(self.cluster.patch(url, json=report.status_patch(), headers=MERGE))


def _index(pod: JsonObject) -> int:
    raw = (pod["metadata"].get("annotations") or {}).get("batch.kubernetes.io/job-completion-index", "0")
    return int(raw) if str(raw).isdigit() else 0


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
