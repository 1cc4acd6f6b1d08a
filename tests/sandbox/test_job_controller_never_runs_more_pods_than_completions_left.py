"""A non-indexed Job runs at most `completions - succeeded` pods at a time, as batch/v1 does.

With completions 2 and parallelism 2, once one pod has succeeded only one completion is left:
the running pod is the one it needs, so no new pod starts (wantActive = min(parallelism,
completions - succeeded) in the Job controller).
"""

from __future__ import annotations

from pathlib import Path

from .one_node import eventually, one_node, python


async def test_one_completion_left_and_one_pod_running_starts_no_new_pod(tmp_path: Path) -> None:
    claim = tmp_path / "first"
    # The first pod to claim the file succeeds at once; every other pod runs on.
    first_wins = (
        "import os, sys, time\n"
        f"try:\n    os.close(os.open({str(claim)!r}, os.O_CREAT | os.O_EXCL))\nexcept FileExistsError:\n"
        "    time.sleep(60)\n"
    )
    async with one_node(tmp_path / "node") as node:
        await node.create_job("pair", python(first_wins), completions=2, parallelism=2)
        await eventually(lambda: node.job("pair").get("status", {}).get("succeeded") == 1, what="one success")

        status = node.job("pair")["status"]
        assert (status["succeeded"], status["active"]) == (1, 1)
        assert len(node.pods_of("pair")) == 2
