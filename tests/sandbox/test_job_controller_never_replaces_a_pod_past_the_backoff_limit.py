"""batch/v1: once a Job's failures reach backoffLimit, no replacement pod is ever created.

kubetune's Jobs have backoffLimit 0 (the operator owns retries): a second pod would run a second
copy of the same attempt next to the operator's next one. The Job controller puts its tracking
finalizer (`batch.kubernetes.io/job-tracking`) on every pod it creates, so a pod cannot vanish
before it is counted, whoever deletes it and however fast; it removes the finalizer once counted.
"""

from __future__ import annotations

from pathlib import Path

import kmock
import pytest

from kubetune_operator.kube.resources import PODS
from kubetune_sandbox.job_controller import TRACKING_FINALIZER

from .one_node import NS, Node, condition_types, eventually, one_node, python

SLEEP = python("import time; print('ready', flush=True); time.sleep(60)")
FAIL = python("import sys; sys.exit(3)")


def pods_created(node: Node, job: str) -> int:
    return sum(
        1
        for request in node.emulator.writes()
        if request.method.value == "POST" and request.url.path.endswith("/pods") and f'"{job}-"' in request.text
    )


@pytest.mark.parametrize("grace", [0, 1])
async def test_a_pod_deleted_while_it_runs_fails_the_job_and_is_not_replaced(tmp_path: Path, grace: int) -> None:
    """A pod force-deleted (grace 0) or deleted gracefully, as a user or a node drain does."""
    async with one_node(tmp_path) as node:
        await node.create_job("once", SLEEP)
        (pod,) = await eventually(lambda: node.pods_of("once"), what="the pod")
        assert pod["metadata"]["finalizers"] == [TRACKING_FINALIZER]
        name = pod["metadata"]["name"]
        await eventually(lambda: "ready" in node.log_text(name), what="the pod to run")

        await node.client.delete(PODS, namespace=NS, name=name, grace_period_seconds=grace)

        await eventually(lambda: ("Failed", "True", "BackoffLimitExceeded") in condition_types(node.job("once")))
        await eventually(lambda: node.pods_of("once") == [], what="the counted pod to go")
        assert pods_created(node, "once") == 1
        assert node.job("once")["status"]["failed"] == 1
        assert node.runner.live_processes() == []


async def test_a_failed_pod_deleted_at_once_is_counted_and_not_replaced(tmp_path: Path) -> None:
    """The pod fails and is deleted straight after (as an operator cleaning up does), before the controller looks."""
    async with one_node(tmp_path) as node:

        async def delete_when_failed(request: kmock.Request) -> None:
            data = request.data if isinstance(request.data, dict) else {}
            if request.subresource == "status" and (data.get("status") or {}).get("phase") == "Failed":
                await node.client.delete(PODS, namespace=NS, name=str(request.name), grace_period_seconds=0)

        node.emulator.after_write.append(delete_when_failed)
        await node.create_job("quick", FAIL)

        await eventually(lambda: ("Failed", "True", "BackoffLimitExceeded") in condition_types(node.job("quick")))
        await eventually(lambda: node.pods_of("quick") == [], what="the counted pod to go")
        assert pods_created(node, "quick") == 1
        assert node.job("quick")["status"]["failed"] == 1


async def test_pods_of_a_deleted_job_are_released_and_go(tmp_path: Path) -> None:
    """The Job is deleted (its pods collected): the controller still removes its finalizer from them."""
    async with one_node(tmp_path) as node:
        job = await node.create_job("gone", SLEEP)
        (pod,) = await eventually(lambda: node.pods_of("gone"), what="the pod")
        await eventually(lambda: "ready" in node.log_text(pod["metadata"]["name"]), what="the pod to run")

        async with node.emulator.delete(
            f"/apis/batch/v1/namespaces/{NS}/jobs/gone", json={"propagationPolicy": "Background"}
        ) as answer:
            assert answer.status == 200, await answer.text()

        await eventually(lambda: node.pods_of("gone") == [], what="the Job's pod to go", timeout=20)
        assert pods_created(node, "gone") == 1
        assert job["metadata"]["uid"]
        assert node.runner.live_processes() == []
