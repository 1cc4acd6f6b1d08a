"""A two-pod job preempted mid-training resumes as a one-pod job when its owner asks for fewer GPUs.

The job runs on a template of 2 nodes of 1 GPU (`spec.gpus: 2`). Attempt 1 checkpoints steps 1
and 2 on two ranks, then sleeps in step 3 (the test-only stall fault) until one of its pods is
evicted, as a node preemption does. Meanwhile its owner lowers `spec.gpus` to 1 (one node is all
the cluster has left): the retry is rendered from the resized record (`resolve.resize`), one pod of
one process, which reshards the two-rank checkpoint of step 2 on load and finishes steps 3 and 4.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from kubetune_operator.kube.resources import FINETUNEJOBS
from kubetune_operator.render.labels import TRAINER
from kubetune_operator.resolve.resolution import PREFLIGHT_ANNOTATION
from kubetune_trainer.faults import Fault, FaultPlan
from kubetune_trainer.training.checkpoint import STATE_FILE, CheckpointState

from .models import E2eModels, finetunejob, put_data
from .sandboxes import FaultsByJob, Running, e2e_sandbox
from .test_e2e_interruptions import checkpointed_spec, complete_checkpoints, wait_for_checkpoint, wait_until_gone
from .test_e2e_jobs_succeed import TWO_NODE_TEMPLATE, load_and_generate, two_node_template

pytestmark = pytest.mark.asyncio(loop_scope="module")

NAME = "shrunk"
HELD = FaultPlan(faults=(Fault(kind="stall", step=3, seconds=300),))
"""Attempt 1 trains steps 1 and 2 (checkpoints of both), then step 3 sleeps on both ranks until interrupted."""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory, e2e_models: E2eModels) -> AsyncIterator[Running]:
    faults = FaultsByJob({(NAME, 1): HELD})
    async with e2e_sandbox(tmp_path_factory.mktemp("sandbox"), e2e_models, faults=faults) as running:
        data = put_data(running.volume("datasets"), claim="datasets", source=e2e_models.train, as_name="train.jsonl")
        template = two_node_template()
        # No CPU preflight pod: the model is known to pass it, and this test is about the attempts.
        template["metadata"]["annotations"] = {PREFLIGHT_ANNOTATION: "false"}
        await running.view.create(template)
        spec = {
            **checkpointed_spec(data),
            "model": TWO_NODE_TEMPLATE,
            "gpus": 2,
            "output": {"uri": "pvc://models/shrunk"},
        }
        await running.view.create(finetunejob(NAME, spec))
        yield running


def world_size_of(running: Running, *, step: int) -> int:
    """The number of ranks that wrote the job's checkpoint of `step` (its state.json says so)."""
    (state,) = (running.volume("checkpoints") / "runs" / NAME).glob(f"*/step-*{step}/{STATE_FILE}")
    return CheckpointState.model_validate_json(state.read_text(encoding="utf-8")).world_size


async def test_a_preempted_two_pod_job_resumes_on_one_pod_and_succeeds(running: Running) -> None:
    view = running.view
    await wait_for_checkpoint(running.volume("checkpoints") / "runs" / NAME, step=2, timeout=180)
    first = await view.pods(NAME, component=TRAINER, attempt=1)
    assert len(first) == 2
    assert complete_checkpoints(running, NAME) == [1, 2]

    await view.client.merge_patch(FINETUNEJOBS, {"spec": {"gpus": 1}}, namespace="default", name=NAME)
    evicted = sorted(pod["metadata"]["name"] for pod in first)[-1]  # index 1: a node of the two is preempted
    await running.sandbox.runner.evict("default", evicted)
    status = await view.wait_for_phase(NAME, "Succeeded", "Failed")

    assert status["phase"] == "Succeeded", status.get("error")
    assert status["attempt"] == 2
    # The resize is recorded: the record attempt 2 rendered from, its plan and its hash say 1 GPU on 1 node.
    resolved = status["resolved"]
    assert (resolved["nodes"], resolved["gpusPerNode"]) == (1, 1)
    assert (resolved["gpuPlan"]["gpus"], resolved["gpuPlan"]["requested"]) == (1, True)
    assert resolved["record"]["resources"]["nodes"] == 1
    events = await view.events(NAME, until="Completed")
    (resize,) = [event.message for event in events if event.reason == "Resized"]
    assert "attempt 2 holds 1 GPU(s) on 1 node(s)" in resize
    assert "attempt 1 held 2 on 2" in resize
    # Attempt 2 ran as one pod of one process, and resumed from the two-rank checkpoint of step 2.
    (second,) = await view.pods(NAME, component=TRAINER, attempt=2)
    (container,) = second["spec"]["containers"]
    command = [*container.get("command", []), *container.get("args", [])]
    assert command[:5] == ["torchrun", "--nnodes", "1", "--nproc-per-node", "1"], command
    (result,) = await view.trainer_results(NAME, attempt=2)
    assert result.resumed_from_step == 2
    log = await view.kubectl("logs", second["metadata"]["name"])
    assert re.search(rf"resumed from \S+/{NAME}/[-0-9a-f]+/step-0*2: step 2 of 4", log), log[-2000:]
    assert complete_checkpoints(running, NAME) == [1, 2, 3, 4]
    # Step 2's checkpoint is attempt 1's, written by two ranks; step 3's is attempt 2's, by one.
    assert world_size_of(running, step=2) == 2
    assert world_size_of(running, step=3) == 1
    assert status["progress"]["step"] == status["progress"]["totalSteps"] == 4
    prompt, generated = load_and_generate(running.volume("models") / NAME)
    assert generated > prompt
    await wait_until_gone(running, NAME, pod_prefix=f"{NAME}-a1-")
