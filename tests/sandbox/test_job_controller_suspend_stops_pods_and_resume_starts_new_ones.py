"""Suspending a running Job stops its pod (SIGTERM) without counting a failure; resuming starts a new pod."""

from __future__ import annotations

from pathlib import Path

from kubetune_operator.kube.resources import JOBS

from .one_node import NS, condition_types, eventually, group_exists, one_node, python, terminated

WAIT_FOR_A_FILE = (
    "import os, pathlib, time\nflag = pathlib.Path(os.environ['FLAG'])\nwhile not flag.exists(): time.sleep(0.02)\n"
)


async def test_suspend_then_resume(tmp_path: Path) -> None:
    flag = tmp_path / "go"
    async with one_node(tmp_path) as node:
        env = {"env": [{"name": "FLAG", "value": str(flag)}]}
        await node.create_job("pausable", python(WAIT_FOR_A_FILE), container=env)
        await eventually(node.runner.live_processes, what="the first pod's process")
        (first,) = node.runner.live_processes()

        await node.client.merge_patch(JOBS, {"spec": {"suspend": True}}, namespace=NS, name="pausable")
        await eventually(lambda: node.pods_of("pausable") == [], what="the suspended Job's pod to go")
        # The pod goes once the controller has counted it (its tracking finalizer); the status follows.
        await eventually(lambda: node.job("pausable")["status"].get("terminating") == 0, what="the Job's status")
        job = node.job("pausable")
        assert ("Suspended", "True", "JobSuspended") in condition_types(job)
        assert (job["status"]["active"], job["status"]["failed"]) == (0, 0)  # stopping is not failing
        assert not group_exists(first.pid)

        await node.client.merge_patch(JOBS, {"spec": {"suspend": False}}, namespace=NS, name="pausable")
        await eventually(node.runner.live_processes, what="a new pod's process")
        (second,) = node.runner.live_processes()
        assert second.pod != first.pod
        assert ("Suspended", "False", "JobResumed") in condition_types(node.job("pausable"))

        flag.touch()
        await eventually(lambda: ("Complete", "True", "CompletionsReached") in condition_types(node.job("pausable")))
        (pod,) = node.pods_of("pausable")
        assert terminated(pod)["exitCode"] == 0
        assert node.job("pausable")["status"]["succeeded"] == 1
