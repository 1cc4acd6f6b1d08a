"""An Indexed Job of two pods: pods from the template, real processes, exit codes and messages, Job Complete."""

from __future__ import annotations

from pathlib import Path

from .one_node import NS, condition_types, eventually, one_node, python, terminated

WRITE_INDEX = (
    "import os, pathlib; "
    "print('hello from', os.environ['HOSTNAME']); "
    "pathlib.Path(os.environ['RESULT']).write_text('index ' + os.environ['JOB_COMPLETION_INDEX'])"
)
RESULT_ENV = {"env": [{"name": "RESULT", "value": "/dev/termination-log"}]}
"""A whole value naming the termination log is rewritten to the pod's own file (code text is not)."""


async def test_each_index_runs_once_and_the_job_completes(tmp_path: Path) -> None:
    async with one_node(tmp_path) as node:
        await node.create_job(
            "indexed", python(WRITE_INDEX), completionMode="Indexed", completions=2, parallelism=2,
            container=RESULT_ENV, pod={"subdomain": "indexed-svc"},
        )  # fmt: skip
        await eventually(lambda: ("Complete", "True", "CompletionsReached") in condition_types(node.job("indexed")))

        job = node.job("indexed")
        assert condition_types(job) == [
            ("SuccessCriteriaMet", "True", "CompletionsReached"),
            ("Complete", "True", "CompletionsReached"),
        ]
        status = job["status"]
        assert (status["active"], status["succeeded"], status["failed"]) == (0, 2, 0)
        assert status["completedIndexes"] == "0-1"
        assert status["startTime"] <= status["completionTime"]

        pods = node.pods_of("indexed")
        assert [p["metadata"]["name"][: len("indexed-0-")] for p in pods] == ["indexed-0-", "indexed-1-"]
        for index, pod in enumerate(pods):
            meta, spec = pod["metadata"], pod["spec"]
            assert meta["annotations"]["batch.kubernetes.io/job-completion-index"] == str(index)
            assert meta["labels"]["batch.kubernetes.io/job-completion-index"] == str(index)
            assert meta["labels"]["batch.kubernetes.io/controller-uid"] == job["metadata"]["uid"]
            assert meta["labels"]["app"] == "indexed"
            (owner,) = meta["ownerReferences"]
            assert (owner["kind"], owner["name"], owner["controller"]) == ("Job", "indexed", True)
            assert (spec["hostname"], spec["subdomain"], spec["nodeName"]) == (
                f"indexed-{index}", "indexed-svc", "kubetune-sandbox",
            )  # fmt: skip
            assert pod["status"]["phase"] == "Succeeded"
            assert pod["status"]["podIP"] == "127.0.0.1"
            state = terminated(pod)
            assert (state["exitCode"], state["reason"], state["message"]) == (0, "Completed", f"index {index}")
            assert state["startedAt"] <= state["finishedAt"]
            log = node.runner.log_path(NS, meta["name"])
            assert log is not None
            assert log.read_text() == f"hello from indexed-{index}\n"
        assert node.runner.live_processes() == []
