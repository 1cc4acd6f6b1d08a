"""Item 6: retries, sticky terminal phases, suspend and resume, deadlines, TTL, heartbeats, deletion."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from kubetune_sandbox.emulator import ApiEmulator
from kubetune_trainer.contract import ErrorClass, Progress, Stage

from .cluster_actors import NAMESPACE, Actors, preflight_passed, trainer_failed, trainer_succeeded, wait_for
from .conftest import CONFIGMAPS, EVENTS, FTJ, JOBS, PODS, RunningOperator, StartOperator, job_manifest, status_of
from .journeys import error_of, pass_preflight, run_attempt, to_running, until_phase

FTJ_API = "/apis/kubetune.dev/v1alpha1"


def _live_jobs(cluster: ApiEmulator, name: str) -> list[str]:
    return sorted(
        j["metadata"]["name"] for j in cluster.live_objects(JOBS, NAMESPACE) if j["metadata"]["name"].startswith(name)
    )


def _pods_of(cluster: ApiEmulator, job: str) -> list[str]:
    return [
        p["metadata"]["name"]
        for p in cluster.live_objects(PODS, NAMESPACE)
        if p["metadata"]["labels"].get("job-name") == job
    ]


async def test_retryable_failure_starts_the_next_attempt_from_the_newest_checkpoint_until_retries_run_out(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    (pod,) = await to_running(cluster, actors, "flaky", maxRetries=1)
    upload_failed = trainer_failed(ErrorClass.INTERNAL, "UploadFailed", retryable=True, checkpoint_step=40)
    await actors.terminate(pod, exit_code=1, message=upload_failed)

    job = await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "flaky-a2"), what="attempt 2")
    assert cluster.live(JOBS, NAMESPACE, "flaky-a1") is None, "the failed attempt's Job is deleted"
    config = cluster.live(CONFIGMAPS, NAMESPACE, "flaky-a2")
    assert config is not None
    assert '"resumeFrom": "flaky:40"' in config["data"]["config.json"]
    status = status_of(cluster, "flaky")
    assert status["attempt"] == 2
    assert status["checkpoints"][-1]["step"] == 40
    owner = cluster.live(FTJ, NAMESPACE, "flaky")
    assert owner is not None
    assert status["checkpoints"][-1]["uri"] == f"pvc://checkpoints/flaky/flaky/{owner['metadata']['uid']}"
    assert job is not None

    (pod,) = await run_attempt(cluster, actors, "flaky", 2)
    await actors.terminate(pod, exit_code=1, message=upload_failed)
    await until_phase(cluster, "flaky", "Failed")
    assert error_of(cluster, "flaky")["reason"] == "UploadFailed"
    assert status_of(cluster, "flaky")["attempt"] == 2, "maxRetries 1: two attempts in all"
    assert operator.metrics.retries.labels(reason="UploadFailed")._value.get() == 1


async def test_a_finished_job_never_recreates_its_children(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    (pod,) = await to_running(cluster, actors, "done")
    await actors.terminate(pod, exit_code=0, message=trainer_succeeded())
    await actors.job_condition("done-a1", "Complete")
    await until_phase(cluster, "done", "Succeeded")

    await actors.delete("/apis/batch/v1", "jobs", "done-a1")
    await actors.delete("/apis/batch/v1", "jobs", "done-preflight")
    await actors.patch_job_spec("done", {"maxRetries": 3})  # a new generation wakes the operator too
    await asyncio.sleep(0.5)
    assert _live_jobs(cluster, "done") == []
    assert status_of(cluster, "done")["phase"] == "Succeeded"


async def test_a_terminal_failure_deletes_the_surviving_pods(
    cluster: ApiEmulator, actors: Actors, start_operator: StartOperator
) -> None:
    await start_operator()
    await pass_preflight(cluster, actors, "wide", model="two-nodes", gpus=4)
    pods = await run_attempt(cluster, actors, "wide", 1)
    assert len(pods) == 2
    fatal = trainer_failed(ErrorClass.VALUE_ERROR, "ShapeMismatch", retryable=False)
    await actors.terminate(pods[1], exit_code=1, message=fatal)
    await until_phase(cluster, "wide", "Failed")
    await wait_for(lambda: not _pods_of(cluster, "wide-a1"), what="the surviving rank-0 pod to go")
    assert cluster.live(JOBS, NAMESPACE, "wide-a1") is None


async def test_suspend_deletes_the_job_and_resume_starts_a_new_attempt_from_the_checkpoint(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    await to_running(cluster, actors, "pause")
    await actors.report("pause", Stage.TRAINING, done=[Stage.DATA_DOWNLOAD, Stage.INITIALIZATION])
    await actors.patch_job_spec("pause", {"suspend": True})
    await until_phase(cluster, "pause", "Suspended")
    await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "pause-a1") is None, what="the Job to be deleted")
    await wait_for(lambda: not _pods_of(cluster, "pause-a1"), what="the pods to be collected")

    await actors.patch_job_spec("pause", {"suspend": False})
    await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "pause-a2"), what="attempt 2 after resume")
    status = status_of(cluster, "pause")
    assert status["phase"] == "Queued"
    assert status["attempt"] == 2


async def test_active_deadline_fails_the_job_as_deadline_exceeded(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    await actors.apply_job(job_manifest("late", activeDeadlineSeconds=1))
    await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "late-preflight"), what="the preflight Job")
    (preflight,) = await actors.start_pods("late-preflight")
    before_start = time.monotonic()  # status.startTime is set after this, when the preflight passes
    await actors.terminate(preflight, exit_code=0, message=preflight_passed())
    await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "late-a1"), what="attempt 1's Job")
    (pod,) = await actors.start_pods("late-a1")
    await actors.run(pod)
    await asyncio.sleep(max(0.0, before_start + 0.9 - time.monotonic()))
    assert status_of(cluster, "late")["phase"] != "Failed", "the deadline fired before 1 s had passed"
    await until_phase(cluster, "late", "Failed", timeout=30)
    assert error_of(cluster, "late")["reason"] == "DeadlineExceeded"
    await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "late-a1") is None, what="the Job to go")


async def test_ttl_after_finished_deletes_the_finetunejob(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    (pod,) = await to_running(cluster, actors, "brief", ttlSecondsAfterFinished=1)
    before_finish = time.monotonic()
    await actors.terminate(pod, exit_code=0, message=trainer_succeeded())  # its pods done: the attempt succeeded
    await until_phase(cluster, "brief", "Succeeded")
    await asyncio.sleep(max(0.0, before_finish + 0.9 - time.monotonic()))
    assert cluster.live(FTJ, NAMESPACE, "brief") is not None, "deleted before ttlSecondsAfterFinished had passed"
    await wait_for(lambda: cluster.live(FTJ, NAMESPACE, "brief") is None, timeout=30, what="the TTL deletion")
    await wait_for(
        lambda: any(e["reason"] == "TTLExpired" for e in cluster.live_objects(EVENTS, NAMESPACE)), what="TTLExpired"
    )
    await wait_for(lambda: not _live_jobs(cluster, "brief"), what="the children to be collected")


async def test_stale_heartbeat_fails_the_attempt_as_stalled_and_retries(
    cluster: ApiEmulator, actors: Actors, start_operator: StartOperator
) -> None:
    await start_operator(heartbeat_stale_seconds=1.0)
    await to_running(cluster, actors, "quiet")
    beat = datetime.now(tz=UTC) - timedelta(seconds=0.2)
    progress = Progress(step=3, total_steps=100, heartbeat_time=beat)
    await actors.report("quiet", Stage.TRAINING, done=[Stage.DATA_DOWNLOAD, Stage.INITIALIZATION], progress=progress)
    await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "quiet-a2"), timeout=30, what="attempt 2 after the stall")
    reasons = [e["message"] for e in cluster.live_objects(EVENTS, NAMESPACE) if e["reason"] == "Retrying"]
    assert any("Stalled" in message for message in reasons)


async def test_a_finetunejob_deletes_while_the_operator_is_down(
    cluster: ApiEmulator, actors: Actors, start_operator: StartOperator
) -> None:
    operator = await start_operator()
    await pass_preflight(cluster, actors, "gone")
    await operator.stop()
    assert not cluster.live(FTJ, NAMESPACE, "gone")["metadata"].get("finalizers")
    await actors.delete(FTJ_API, "finetunejobs", "gone")
    assert cluster.live(FTJ, NAMESPACE, "gone") is None
    await wait_for(lambda: not _live_jobs(cluster, "gone"), what="owned children collected by the GC")
