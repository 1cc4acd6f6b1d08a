"""The preflight through the real operator: its Result is waited for, and a retryable failure runs it again."""

from __future__ import annotations

import asyncio
import contextlib

from kubetune_sandbox.emulator import ApiEmulator
from kubetune_trainer.contract import ErrorClass

from .cluster_actors import NAMESPACE, Actors, JobGone, preflight_passed, trainer_failed, wait_for
from .conftest import JOBS, RunningOperator, event_reasons, job_manifest, status_of


async def test_a_preflight_job_complete_before_its_pods_message_waits_for_the_model_facts(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    await actors.apply_job(job_manifest("race"))
    await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "race-preflight"), what="the preflight Job")
    (pod,) = await actors.start_pods("race-preflight")
    await actors.run(pod)
    # The worst order the two watches can deliver: the Job's Complete before the pod's termination.
    await actors.job_condition_seen_first("race-preflight", "Complete")
    await asyncio.sleep(0.5)
    assert cluster.live(JOBS, NAMESPACE, "race-a1") is None, "attempt 1 started without the preflight's Result"
    assert status_of(cluster, "race")["phase"] == "Validating"

    await actors.terminate(pod, exit_code=0, message=preflight_passed())
    await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "race-a1"), what="attempt 1's Job")
    assert status_of(cluster, "race")["resolved"]["revisionSha"] == "0" * 40


async def test_a_retryable_preflight_failure_runs_the_preflight_again(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    await actors.apply_job(job_manifest("flaky", maxRetries=1))
    first = await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "flaky-preflight"), what="the preflight Job")
    (pod,) = await actors.start_pods("flaky-preflight")
    hub_down = trainer_failed(ErrorClass.INTERNAL, "HubUnavailable", retryable=True)
    await actors.terminate(pod, exit_code=1, message=hub_down)
    # The operator may act on the pod's retryable Result and remove the Job before the Job controller's
    # pass (seen under load): then there is no Job left to mark Failed, and the retry below is the point.
    if cluster.live(JOBS, NAMESPACE, "flaky-preflight") is not None:
        with contextlib.suppress(JobGone):
            await actors.job_condition("flaky-preflight", "Failed", "BackoffLimitExceeded")

    second = await wait_for(
        lambda: (
            (job := cluster.live(JOBS, NAMESPACE, "flaky-preflight")) is not None
            and job["metadata"]["uid"] != first["metadata"]["uid"]
            and job
        ),
        what="a new preflight Job",
    )
    status = status_of(cluster, "flaky")
    assert status["phase"] == "Validating"
    assert status["preflightRetries"] == 1
    assert "Retrying" in event_reasons(cluster, "flaky")

    (pod,) = await actors.start_pods(second["metadata"]["name"])
    await actors.terminate(pod, exit_code=0, message=preflight_passed())
    await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "flaky-a1"), what="attempt 1's Job")
    assert status_of(cluster, "flaky")["resolved"]["revisionSha"] == "0" * 40
