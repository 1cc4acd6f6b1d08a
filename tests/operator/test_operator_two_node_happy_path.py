"""A two-node job: headless Service, Indexed Job of two pods, rendezvous at pod 0, secrets as env refs."""

from __future__ import annotations

from kubetune_sandbox.emulator import ApiEmulator
from kubetune_trainer.contract import Stage

from .cluster_actors import NAMESPACE, Actors, trainer_succeeded, wait_for
from .conftest import JOBS, SERVICES, RunningOperator, event_reasons, status_of
from .journeys import pass_preflight, run_attempt, until_phase


async def test_two_node_job_gets_a_headless_service_and_an_indexed_job_that_rendezvous_at_pod_zero(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    await pass_preflight(cluster, actors, "duo", model="two-nodes", gpus=4)

    service = await wait_for(lambda: cluster.live(SERVICES, NAMESPACE, "duo-a1"), what="the headless Service")
    assert service["spec"]["clusterIP"] == "None"
    job = cluster.live(JOBS, NAMESPACE, "duo-a1")
    assert job is not None
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 2
    pod_spec = job["spec"]["template"]["spec"]
    assert pod_spec["subdomain"] == "duo-a1"
    (container,) = pod_spec["containers"]
    command = " ".join(container["command"])
    assert "--nnodes 2 --nproc-per-node 2" in command
    assert "--rdzv-backend c10d --rdzv-endpoint duo-a1-0.duo-a1:29500" in command
    assert container["resources"]["limits"]["nvidia.com/gpu"] == container["resources"]["requests"]["nvidia.com/gpu"]
    token = next(e for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {}))
    assert token["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "token"}

    pods = await run_attempt(cluster, actors, "duo", 1)
    assert len(pods) == 2
    await actors.report(
        "duo", Stage.UPLOAD, done=[Stage.DATA_DOWNLOAD, Stage.INITIALIZATION, Stage.TRAINING, Stage.SAVING]
    )
    for pod in pods:
        await actors.terminate(pod, exit_code=0, message=trainer_succeeded())
    await actors.job_condition("duo-a1", "Complete")
    status = await until_phase(cluster, "duo", "Succeeded")
    assert status["resolved"]["nodes"] == 2
    assert status["resolved"]["gpusPerNode"] == 2
    reasons = await wait_for(lambda: "Completed" in event_reasons(cluster, "duo") and event_reasons(cluster, "duo"))
    assert reasons.count("StageStarted") == len(Stage)  # one Event per transition; the last finish is in Completed
    assert status_of(cluster, "duo")["attempt"] == 1
