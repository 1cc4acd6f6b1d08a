"""Fencing: attempt N+1 starts only once attempt N's pods are gone; a Terminating pod still counts."""

from __future__ import annotations

from kubetune_sandbox.emulator import ApiEmulator
from kubetune_trainer.contract import Stage

from .cluster_actors import MERGE, NAMESPACE, Actors, wait_for
from .conftest import EVENTS, JOBS, PODS, RunningOperator, status_of
from .journeys import run_attempt, to_running

HOLD = "kubetune.test/hold"
"""A finalizer of the test's own: the pod stays, with a deletionTimestamp, until it is removed."""


async def _set_finalizers(cluster: ApiEmulator, pod: str, finalizers: list[str]) -> None:
    url = f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}"
    async with cluster.patch(url, json={"metadata": {"finalizers": finalizers}}, headers=MERGE) as answer:
        assert answer.status < 400, await answer.text()


def _fence_events(cluster: ApiEmulator, name: str) -> list[str]:
    return [
        event["message"]
        for event in cluster.live_objects(EVENTS, NAMESPACE)
        if event["involvedObject"]["name"] == name and event["reason"] == "PreviousAttemptStopping"
    ]


async def test_attempt_2_waits_while_attempt_1s_pod_is_terminating(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    (pod,) = await to_running(cluster, actors, "fenced", maxRetries=1)
    await actors.report("fenced", Stage.TRAINING, done=[Stage.DATA_DOWNLOAD, Stage.INITIALIZATION])
    await _set_finalizers(cluster, pod, [HOLD])  # as a pod still writing its SIGTERM checkpoint would stay
    await actors.evict(pod)

    await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "fenced-a1") is None, what="attempt 1's Job deleted")
    terminating = await wait_for(
        lambda: (p := cluster.live(PODS, NAMESPACE, pod)) and p["metadata"].get("deletionTimestamp") and p,
        what="the old pod Terminating",
    )
    assert terminating["metadata"]["deletionTimestamp"]
    (said,) = await wait_for(lambda: _fence_events(cluster, "fenced"), what="the PreviousAttemptStopping Event")
    assert "attempt 2 waits for attempt 1's pods to be gone" in said
    assert cluster.live(JOBS, NAMESPACE, "fenced-a2") is None, "attempt 2 started beside a Terminating pod"
    status = status_of(cluster, "fenced")
    assert status["attempt"] == 1
    scheduled = next(c for c in status["conditions"] if c["type"] == "Scheduled")
    assert (scheduled["reason"], scheduled["message"]) == ("RetryBackoff", said)

    await _set_finalizers(cluster, pod, [])  # the pod finishes terminating and is gone
    await wait_for(lambda: cluster.live(PODS, NAMESPACE, pod) is None, what="the old pod gone")
    await run_attempt(cluster, actors, "fenced", 2)
    assert len(_fence_events(cluster, "fenced")) == 1, "the wait is announced once"


async def test_resume_waits_for_the_suspended_attempts_terminating_pod(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    (pod,) = await to_running(cluster, actors, "paused")
    await _set_finalizers(cluster, pod, [HOLD])
    await actors.patch_job_spec("paused", {"suspend": True})
    await wait_for(lambda: status_of(cluster, "paused").get("phase") == "Suspended", what="Suspended")
    await wait_for(
        lambda: (p := cluster.live(PODS, NAMESPACE, pod)) and p["metadata"].get("deletionTimestamp"),
        what="the old pod Terminating",
    )
    await actors.patch_job_spec("paused", {"suspend": False})
    await wait_for(lambda: status_of(cluster, "paused").get("observedGeneration") == 3, what="the resume seen")
    assert cluster.live(JOBS, NAMESPACE, "paused-a2") is None, "the resume started beside a Terminating pod"
    assert status_of(cluster, "paused")["phase"] == "Suspended"

    await _set_finalizers(cluster, pod, [])
    await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "paused-a2"), what="attempt 2 after the pod is gone")
