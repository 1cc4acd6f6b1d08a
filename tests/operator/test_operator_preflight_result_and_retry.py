"""The preflight through the real operator: its Result is waited for."""

from __future__ import annotations

import asyncio

from .cluster_actors import NAMESPACE, Actors, preflight_passed, wait_for
from .conftest import JOBS, RunningOperator, job_manifest, status_of
from .emulator import ApiEmulator


async def test_a_preflight_job_complete_before_its_pods_message_waits_for_the_model_facts(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    await actors.apply_job(job_manifest("race"))
    await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "race-preflight"), what="the preflight Job")
    (pod,) = await actors.start_pods("race-preflight")
    await actors.run(pod)
    # The worst order the two watches can deliver: the Job's Complete before the pod's termination.
    await actors.job_condition("race-preflight", "Complete")
    await asyncio.sleep(0.5)
    assert cluster.live(JOBS, NAMESPACE, "race-a1") is None, "attempt 1 started without the preflight's Result"
    assert status_of(cluster, "race")["phase"] == "Validating"

    await actors.terminate(pod, exit_code=0, message=preflight_passed())
    await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "race-a1"), what="attempt 1's Job")
    assert status_of(cluster, "race")["resolved"]["revisionSha"] == "0" * 40
