"""A one-node job through every stage to Succeeded: preflight first, then the Indexed Job, status and Events."""

from __future__ import annotations

from kubetune_sandbox.emulator import ApiEmulator
from kubetune_trainer.contract import Progress, Stage

from .cluster_actors import NAMESPACE, Actors, preflight_passed, trainer_succeeded, wait_for
from .conftest import CONFIGMAPS, JOBS, SERVICES, RunningOperator, event_reasons, job_manifest, status_of


async def test_single_node_job_runs_preflight_then_trainer_to_succeeded(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    await actors.apply_job(job_manifest("chat"))

    preflight = await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "chat-preflight"), what="the preflight Job")
    container = preflight["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert status_of(cluster, "chat")["phase"] == "Validating"
    assert cluster.live(JOBS, NAMESPACE, "chat-a1") is None, "no GPU Job before the preflight passes"

    (pod,) = await actors.start_pods("chat-preflight")
    await actors.terminate(pod, exit_code=0, message=preflight_passed())
    await actors.job_condition("chat-preflight", "Complete")

    job = await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "chat-a1"), what="the trainer Job")
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 1
    assert job["spec"]["backoffLimit"] == 0
    assert cluster.live(CONFIGMAPS, NAMESPACE, "chat-a1") is not None
    assert cluster.live(SERVICES, NAMESPACE, "chat-a1") is None, "one node needs no rendezvous Service"
    status = status_of(cluster, "chat")
    assert status["phase"] == "Queued"
    assert status["attempt"] == 1
    assert status["resolved"]["revisionSha"] == "0" * 40
    assert status["resolved"]["template"] == "llama-3.2-1b-instruct"

    (trainer,) = await actors.start_pods("chat-a1")
    await actors.run(trainer)
    await wait_for(lambda: status_of(cluster, "chat").get("phase") == "Running", what="phase Running")

    done: list[Stage] = []
    for stage in Stage:
        progress = Progress(step=5, total_steps=10, summary="50% (5/10)") if stage == Stage.TRAINING else None
        await actors.report("chat", stage, done=list(done), progress=progress)
        await wait_for(
            lambda s=stage: any(m.startswith(f"stage {s} started") for m in _messages(cluster)),
            what=f"stage {stage} announced",
        )
        done.append(stage)

    await actors.terminate(trainer, exit_code=0, message=trainer_succeeded())
    await actors.job_condition("chat-a1", "Complete")
    status = await wait_for(
        lambda: status_of(cluster, "chat").get("phase") == "Succeeded" and status_of(cluster, "chat")
    )
    assert status["completionTime"]
    assert status["observedGeneration"] == 1
    succeeded = {c["type"]: c for c in status["conditions"]}["Succeeded"]
    assert succeeded["status"] == "True"

    reasons = await wait_for(lambda: "Completed" in event_reasons(cluster, "chat") and event_reasons(cluster, "chat"))
    for expected in (
        "PreflightRunning",
        "PreflightPassed",
        "AttemptCreated",
        "PodsRunning",
        "StageStarted",
        "Completed",
    ):
        assert expected in reasons, (expected, reasons)
    # One Event per stage transition: each start names the stage that finished before it, and the
    # last stage's finish is in the Completed Event.
    assert reasons.count("StageStarted") == len(Stage)
    assert "StageFinished" not in reasons
    messages = _messages(cluster)
    assert any(m.startswith("stage Training started; Initialization finished") for m in messages), messages
    assert any(m.startswith("the job succeeded") and "Upload finished" in m for m in messages), messages
    assert operator.metrics.jobs.labels(phase="Succeeded")._value.get() == 1


def _messages(cluster: ApiEmulator) -> list[str]:
    from .conftest import EVENTS

    return [event["message"] for event in cluster.live_objects(EVENTS, NAMESPACE)]
