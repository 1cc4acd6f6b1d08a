"""A pod force-deleted while its kubelet starts it: the process that did start is stopped and reaped.

`kubectl delete pod --force --grace-period=0` removes the pod from the API at once; here it lands
right after the runner binds the pod, before the runner writes Running. The runner's status write
then finds no pod; its process must still be watched, stopped and counted gone.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import kmock

from kubetune_operator.kube.resources import PODS

from .one_node import NS, PODS_RESOURCE, eventually, group_exists, one_node, python


async def test_a_pod_removed_before_running_is_written_leaves_no_process(tmp_path: Path) -> None:
    async with one_node(tmp_path, controller=False) as node:
        deletions: list[asyncio.Task[bool]] = []

        def force_delete_after_binding(request: kmock.Request) -> None:
            data = request.data if isinstance(request.data, dict) else {}
            binding = request.resource == PODS_RESOURCE and request.subresource is None and request.method == "PATCH"
            if binding and "nodeName" in (data.get("spec") or {}) and not deletions:
                delete = node.client.delete(PODS, namespace=NS, name="doomed", grace_period_seconds=0)
                deletions.append(asyncio.create_task(delete))

        node.emulator.after_write.append(force_delete_after_binding)
        pids: set[int] = set()

        async def record_processes() -> None:
            while True:
                pids.update(record.pid for record in node.runner.live_processes())
                await asyncio.sleep(0.005)

        recorder = asyncio.create_task(record_processes())
        # The runner writes Running (refused or not) right after the start: the process is live then.
        node.emulator.after_write.append(lambda _: pids.update(r.pid for r in node.runner.live_processes()))
        await node.create_pod("doomed", python("import time; time.sleep(60)"))
        await eventually(lambda: pids, what="the pod's process to start")
        await eventually(lambda: deletions and deletions[0].done(), what="the force delete")
        assert node.pod("doomed") is None

        await eventually(lambda: not node.runner.live_processes(), what="the runner to stop the process")
        recorder.cancel()
        (pid,) = pids
        await eventually(lambda: not group_exists(pid), what="the process group to end")
