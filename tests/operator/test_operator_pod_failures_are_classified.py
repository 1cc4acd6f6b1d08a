"""Item 5: each way a pod fails, observed through the operator, lands in status as its own class and reason."""

from __future__ import annotations

import asyncio

from kubetune_sandbox.emulator import ApiEmulator
from kubetune_trainer.contract import ErrorClass

from .cluster_actors import NAMESPACE, Actors, trainer_failed, wait_for
from .conftest import EVENTS, JOBS, RunningOperator, StartOperator, status_of
from .journeys import error_of, pass_preflight, to_running, until_phase


async def test_unschedulable_pod_keeps_the_job_queued_with_the_schedulers_message(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    await pass_preflight(cluster, actors, "wait")
    (pod,) = await actors.start_pods("wait-a1")
    await actors.unschedulable(pod, "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.")
    status = await wait_for(
        lambda: (
            any(c.get("reason") == "Unschedulable" for c in status_of(cluster, "wait").get("conditions", []))
            and status_of(cluster, "wait")
        ),
        what="the Unschedulable condition",
    )
    assert status["phase"] == "Queued"
    scheduled = {c["type"]: c for c in status["conditions"]}["Scheduled"]
    assert scheduled["message"] == "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."


async def test_image_pull_failure_past_the_grace_fails_the_job_naming_the_image(
    cluster: ApiEmulator, actors: Actors, start_operator: StartOperator
) -> None:
    # A grace longer than the second creationTimestamp may be off by, so the pull is first within it.
    await start_operator(image_pull_grace_seconds=2.0)
    await pass_preflight(cluster, actors, "pull")
    (pod,) = await actors.start_pods("pull-a1")
    # Reported once: the operator must notice the grace run out by itself, with no further pod event.
    await actors.waiting(pod, "ImagePullBackOff", "Back-off pulling image", image="registry.example/trainer:nope")
    await asyncio.sleep(0.5)
    assert status_of(cluster, "pull")["phase"] == "Queued", "failed before the grace ran out"
    await until_phase(cluster, "pull", "Failed", timeout=30)
    error = error_of(cluster, "pull")
    assert (error["class"], error["reason"]) == ("Internal", "ImagePullFailed")
    assert "registry.example/trainer:nope" in error["message"]


async def test_missing_secret_key_is_invalid_input_naming_secret_and_key(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    await pass_preflight(cluster, actors, "secret")
    (pod,) = await actors.start_pods("secret-a1")
    await actors.waiting(pod, "CreateContainerConfigError", "couldn't find key token in Secret ml/hf-token")
    await until_phase(cluster, "secret", "Failed")
    error = error_of(cluster, "secret")
    assert error["class"] == "InvalidInput"
    assert "hf-token" in error["message"]
    assert "token" in error["message"]


async def test_oom_killed_container_is_host_out_of_memory_with_a_memory_hint(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    (pod,) = await to_running(cluster, actors, "oom", maxRetries=0)
    await actors.terminate(pod, exit_code=137, reason="OOMKilled")
    await until_phase(cluster, "oom", "Failed")
    error = error_of(cluster, "oom")
    assert (error["class"], error["reason"], error["retryable"]) == ("CudaOOM", "HostOutOfMemory", False)
    assert "OOMKilled" in error["message"]
    assert "resources.memory" in error["hint"]


async def test_eviction_is_internal_preempted_and_retried(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    (pod,) = await to_running(cluster, actors, "evicted")
    await actors.evict(pod)
    await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "evicted-a2"), what="attempt 2 after the eviction")
    retried = [e["message"] for e in cluster.live_objects(EVENTS, NAMESPACE) if e["reason"] == "Retrying"]
    assert len(retried) == 1
    assert "(Internal Preempted)" in retried[0]
    assert operator.metrics.retries.labels(reason="Preempted")._value.get() == 1


async def test_termination_message_gives_the_error_class(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    (pod,) = await to_running(cluster, actors, "nan")
    message = trainer_failed(ErrorClass.RUNTIME_ERROR, "NonFiniteLoss", retryable=False)
    await actors.terminate(pod, exit_code=1, message=message)
    await until_phase(cluster, "nan", "Failed")
    error = error_of(cluster, "nan")
    assert (error["class"], error["reason"]) == ("RuntimeError", "NonFiniteLoss")


async def test_nonzero_exit_without_a_message_is_internal_crashed(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    (pod,) = await to_running(cluster, actors, "crash", maxRetries=0)
    await actors.terminate(pod, exit_code=139)
    await until_phase(cluster, "crash", "Failed")
    error = error_of(cluster, "crash")
    assert (error["class"], error["reason"]) == ("Internal", "Crashed")
