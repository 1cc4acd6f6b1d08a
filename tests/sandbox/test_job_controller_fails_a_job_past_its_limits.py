"""A failing pod fails its Job past backoffLimit; a Job past activeDeadlineSeconds loses its running pods."""

from __future__ import annotations

from pathlib import Path

from .one_node import condition_types, eventually, group_exists, one_node, python, terminated

FAIL = "import os, pathlib, sys; pathlib.Path(os.environ['RESULT']).write_text('bad input'); sys.exit(3)"
RESULT_ENV = {"env": [{"name": "RESULT", "value": "/dev/termination-log"}]}


async def test_a_failed_pod_past_the_backoff_limit_fails_the_job(tmp_path: Path) -> None:
    async with one_node(tmp_path) as node:
        await node.create_job("fails", python(FAIL), backoffLimit=1, container=RESULT_ENV)
        await eventually(lambda: ("Failed", "True", "BackoffLimitExceeded") in condition_types(node.job("fails")))

        job = node.job("fails")
        assert condition_types(job) == [
            ("FailureTarget", "True", "BackoffLimitExceeded"),
            ("Failed", "True", "BackoffLimitExceeded"),
        ]
        assert (job["status"]["failed"], job["status"]["succeeded"], job["status"]["active"]) == (2, 0, 0)
        assert "completionTime" not in job["status"]
        pods = node.pods_of("fails")
        assert len(pods) == 2  # the first try and one replacement: backoffLimit 1
        for pod in pods:
            assert pod["status"]["phase"] == "Failed"
            state = terminated(pod)
            assert (state["exitCode"], state["reason"], state["message"]) == (3, "Error", "bad input")


async def test_a_job_past_its_deadline_fails_and_its_pod_is_stopped(tmp_path: Path) -> None:
    async with one_node(tmp_path) as node:
        await node.create_job("slow", python("import time; time.sleep(60)"), activeDeadlineSeconds=1)
        await eventually(node.runner.live_processes, what="the pod's process")
        (record,) = node.runner.live_processes()
        await eventually(
            lambda: ("Failed", "True", "DeadlineExceeded") in condition_types(node.job("slow")), timeout=15
        )
        assert condition_types(node.job("slow")) == [
            ("FailureTarget", "True", "DeadlineExceeded"),
            ("Failed", "True", "DeadlineExceeded"),
        ]
        assert node.runner.live_processes() == []
        assert not group_exists(record.pid)
        assert node.pods_of("slow") == []  # deleted by the controller, then by its kubelet
