"""A pod spec the sandbox cannot read (the emulator does not validate pods as the API server does)
waits with CreateContainerConfigError; the kubelet goes on running every other pod."""

from __future__ import annotations

from pathlib import Path

from .one_node import eventually, one_node, python, terminated


async def test_a_mount_without_a_path_waits_and_the_next_pod_runs(tmp_path: Path) -> None:
    async with one_node(tmp_path, controller=False) as node:
        broken = {"volumeMounts": [{"name": "work"}]}  # no mountPath: the API server would refuse it
        await node.create_pod("broken", python("pass"), container=broken, volumes=[{"name": "work", "emptyDir": {}}])
        await node.create_pod("fine", python("print('ran')"))
        await eventually(lambda: (node.pod("fine") or {}).get("status", {}).get("phase") == "Succeeded")
        assert terminated(node.pod("fine"))["exitCode"] == 0

        status = (node.pod("broken") or {}).get("status", {})
        assert status["phase"] == "Pending"
        waiting = status["containerStatuses"][0]["state"]["waiting"]
        assert waiting["reason"] == "CreateContainerConfigError"
        assert "mountPath" in waiting["message"]
