"""Interruptions a cluster brings: preemption (eviction, a pod killed), suspend and resume, deletion mid-run.

Attempt 1 of each job is held mid-training by the test-only `stall` fault (a step that sleeps),
so the interruption lands while the trainer really runs; attempt 2 has no fault. The pods are
evicted, stopped and deleted the way the kubelet does it: SIGTERM to the process group, then
SIGKILL after the grace period; a killed pod gets SIGKILL at once, with no chance to checkpoint.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
import pytest_asyncio

from kubetune_operator.kube.resources import FINETUNEJOBS
from kubetune_operator.render.labels import TRAINER
from kubetune_trainer.faults import Fault, FaultPlan

from .host_processes import kill_all, processes_under
from .models import E2eModels, finetunejob, put_data, tiny_spec
from .sandboxes import FaultsByJob, Running, e2e_sandbox
from .user_view import reasons

pytestmark = pytest.mark.asyncio(loop_scope="module")

HELD = FaultPlan(faults=(Fault(kind="stall", step=3, seconds=300),))
"""Attempt 1 trains steps 1 and 2 (checkpoints at steps 1 and 2 of 4), then step 3 sleeps until interrupted."""
JOBS = ("preempted", "killed", "paused", "doomed")
PAUSED_BRIEFLY = FaultPlan(faults=(Fault(kind="stall", step=3, seconds=20),))
"""The job whose operator is killed: step 3 sleeps 20 s, long enough to kill and restart the operator meanwhile."""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory, e2e_models: E2eModels) -> AsyncIterator[Running]:
    faults = FaultsByJob({(name, 1): HELD for name in JOBS} | {("unsupervised", 1): PAUSED_BRIEFLY})
    async with e2e_sandbox(tmp_path_factory.mktemp("sandbox"), e2e_models, faults=faults) as running:
        data = put_data(running.volume("datasets"), claim="datasets", source=e2e_models.train, as_name="train.jsonl")
        for name in JOBS:
            await running.view.create(finetunejob(name, checkpointed_spec(data)))
        yield running


def checkpointed_spec(data: str) -> dict[str, object]:
    """A checkpoint every step: two exist when attempt 1 is interrupted, so resuming from the
    newest (step 2) is told apart from resuming from any (step 1)."""
    checkpointed = {"nEpochs": 1, "batchSize": 8, "learningRate": 3e-3, "seed": 7, "nCheckpoints": 4}
    spec = tiny_spec(data, hyperparameters=checkpointed, checkpoint={"uri": "pvc://checkpoints/runs"})
    return {**spec, "maxRetries": 2}


async def wait_for_checkpoint(directory: Path, *, step: int, timeout: float) -> None:
    """Until `directory` (a job's, `<uid>/step-<N>` inside) holds a complete checkpoint of `step` (COMPLETE is last)."""
    deadline = time.monotonic() + timeout
    while not any(
        int(found.parent.name.removeprefix("step-")) == step for found in directory.glob("*/step-*/COMPLETE")
    ):
        assert time.monotonic() < deadline, f"no complete checkpoint of step {step} in {directory}"
        await asyncio.sleep(0.3)


def checkpoints_written(running: Running, name: str) -> dict[int, float]:
    """Step -> when its checkpoint was completed (its COMPLETE marker's mtime), as `ls -l` of the folder shows."""
    directory = running.volume("checkpoints") / "runs" / name
    return {
        int(found.parent.name.removeprefix("step-")): found.stat().st_mtime
        for found in directory.glob("*/step-*/COMPLETE")  # <job>/<uid>/step-<N>: this job has one uid
    }


def complete_checkpoints(running: Running, name: str) -> list[int]:
    """The steps of the job's complete checkpoints."""
    return sorted(checkpoints_written(running, name))


async def held_in_training(running: Running, name: str) -> str:
    """Wait until attempt 1 checkpointed step 2 and sleeps in step 3; the trainer pod's name."""
    await wait_for_checkpoint(running.volume("checkpoints") / "runs" / name, step=2, timeout=180)
    status = await running.view.status(name)
    assert (status["phase"], status["stage"], status["attempt"]) == ("Running", "Training", 1)
    (pod,) = await running.view.pods(name, component=TRAINER, attempt=1)
    return str(pod["metadata"]["name"])


def processes_of(running: Running, pod_prefix: str) -> list[int]:
    """Every process of the pods whose names start with `pod_prefix`, torchrun's workers included."""
    return processes_under(running.sandbox.layout.pod_dir("default", pod_prefix))


async def wait_until_gone(running: Running, name: str, *, pod_prefix: str, timeout: float = 120) -> None:
    """Until the job's trainer pods (`pod_prefix`...) are gone from the API and from the host."""
    deadline = time.monotonic() + timeout
    while True:
        pods = [p["metadata"]["name"] for p in await running.view.pods(name, component=TRAINER)]
        left = [pod for pod in pods if pod.startswith(pod_prefix)]
        processes = processes_of(running, pod_prefix)
        if not left and not processes:
            return
        if time.monotonic() > deadline:
            kill_all(processes)
            raise AssertionError(f"{name}: pods {left} or processes {processes} of {pod_prefix}* are still there")
        await asyncio.sleep(0.3)


async def assert_retried_from_step_two(running: Running, name: str, *, failure: str) -> None:
    """Attempt 1 failed as `failure`, attempt 2 resumed from the newest checkpoint (step 2) and Succeeded."""
    view = running.view
    status = await view.wait_for_phase(name, "Succeeded", "Failed")

    assert status["phase"] == "Succeeded", status.get("error")
    assert (status["attempt"], status["retries"]) == (2, 1)
    events = await view.events(name, until="Completed")
    (retry,) = [event for event in events if event.reason == "Retrying"]
    assert f"attempt 1 failed ({failure})" in retry.message
    created = [event.message for event in events if event.reason == "AttemptCreated"]
    # `<name>` is the job's newest checkpoint, whichever step that is; `<name>:2` names it when
    # the interrupted pod's Result (checkpoint step 2) was read before the pod went.
    assert created[0] == "attempt 1 created"
    assert created[1] in (f"attempt 2 created, resuming from {name}", f"attempt 2 created, resuming from {name}:2")
    (result,) = await view.trainer_results(name, attempt=2)
    # Steps 1 and 2 are not trained again: attempt 2 starts after the newest checkpoint, step 2's.
    assert result.resumed_from_step == 2
    (second,) = await view.pods(name, component=TRAINER, attempt=2)
    log = await view.kubectl("logs", second["metadata"]["name"])
    assert re.search(rf"resumed from \S+/{name}/[-0-9a-f]+/step-0*2: step 2 of 4", log), log[-2000:]
    assert "HTTP Request:" not in log  # the trainer's own lines, not one per status patch
    # The checkpoint folder agrees: a step trained again would have its checkpoint written again.
    # Steps 1 and 2's are from before attempt 2's container started, steps 3 and 4's from after.
    (container,) = second["status"]["containerStatuses"]
    started = datetime.fromisoformat(container["state"]["terminated"]["startedAt"]).timestamp()
    written = checkpoints_written(running, name)
    assert sorted(written) == [1, 2, 3, 4]
    assert max(written[1], written[2]) < started < min(written[3], written[4]), (started, written)
    assert status["progress"]["step"] == status["progress"]["totalSteps"] == 4
    await wait_until_gone(running, name, pod_prefix=f"{name}-a1-")


async def test_an_evicted_attempt_resumes_from_the_newest_checkpoint_and_succeeds(running: Running) -> None:
    pod = await held_in_training(running, "preempted")
    assert complete_checkpoints(running, "preempted") == [1, 2]

    await running.sandbox.runner.evict("default", pod)

    await assert_retried_from_step_two(running, "preempted", failure="Internal Preempted")
    # Attempt 1 ran in one pod: backoffLimit 0 (the operator owns retries), so the evicted pod was not
    # replaced. Counted from the API's own record of pod creations (the pods are gone by now).
    created = [
        request.text
        for request in running.sandbox.emulator.writes()
        if request.method.value == "POST" and request.url.path.endswith("/pods") and '"preempted-a1-0-"' in request.text
    ]
    assert len(created) == 1, f"{len(created)} pods were created for attempt 1's index 0"


async def test_a_killed_pod_is_retried_from_the_newest_checkpoint_and_succeeds(running: Running) -> None:
    """The runner SIGKILLs the pod mid-training (a node lost): no SIGTERM, no Result, exit 137."""
    pod = await held_in_training(running, "killed")
    assert complete_checkpoints(running, "killed") == [1, 2]

    await running.sandbox.runner.kill("default", pod)

    await assert_retried_from_step_two(running, "killed", failure="Internal Crashed")


async def test_a_suspended_job_frees_its_pods_and_resumes_on_unsuspend(running: Running) -> None:
    view = running.view
    pod = await held_in_training(running, "paused")
    assert processes_of(running, pod)

    await view.client.merge_patch(FINETUNEJOBS, {"spec": {"suspend": True}}, namespace="default", name="paused")
    await view.wait_for_phase("paused", "Suspended", timeout=120)
    await wait_until_gone(running, "paused", pod_prefix="paused-a1-")

    await view.client.merge_patch(FINETUNEJOBS, {"spec": {"suspend": False}}, namespace="default", name="paused")
    status = await view.wait_for_phase("paused", "Succeeded", "Failed")

    assert status["phase"] == "Succeeded", status.get("error")
    assert (status["attempt"], status["retries"]) == (2, 0)  # a resume is not a retry
    happened = reasons(await view.events("paused", until="Completed"))
    assert happened.index("Suspended") < happened.index("Resumed") < happened.index("Completed")


async def test_deleting_a_running_job_leaves_no_process_behind(running: Running) -> None:
    view = running.view
    pod = await held_in_training(running, "doomed")
    assert processes_of(running, pod)

    assert await view.client.delete(FINETUNEJOBS, namespace="default", name="doomed")

    await wait_until_gone(running, "doomed", pod_prefix="doomed-")
    assert await view.pods("doomed") == []
    assert await view.batch_jobs("doomed") == []


async def test_a_killed_operator_is_restarted_and_the_job_still_completes(
    running: Running, e2e_models: E2eModels
) -> None:
    """The operator process dies mid-training (SIGKILL): the sandbox restarts it, as its Deployment would,
    and the new one finishes the job the old one started, on the same attempt and the same pod."""
    view = running.view
    data = put_data(running.volume("datasets"), claim="datasets", source=e2e_models.train, as_name="train.jsonl")
    await view.create(finetunejob("unsupervised", checkpointed_spec(data)))
    pod = await held_in_training(running, "unsupervised")
    old = running.sandbox.operator_pid
    assert old is not None

    os.killpg(old, signal.SIGKILL)

    status = await view.wait_for_phase("unsupervised", "Succeeded", "Failed")
    assert status["phase"] == "Succeeded", status.get("error")
    assert (status["attempt"], status["retries"]) == (1, 0)
    assert running.sandbox.operator_exits == [-signal.SIGKILL]
    assert running.sandbox.operator_pid not in (None, old)
    (trainer,) = await view.pods("unsupervised", component=TRAINER)
    assert trainer["metadata"]["name"] == pod  # the pod that trained when the operator died finished the job
    assert complete_checkpoints(running, "unsupervised") == [1, 2, 3, 4]
