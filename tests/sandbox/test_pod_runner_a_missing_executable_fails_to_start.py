"""A container whose command does not exist fails as a container runtime reports it: StartError, exit 128."""

from __future__ import annotations

from pathlib import Path

from .one_node import eventually, one_node, terminated


async def test_the_pod_fails_naming_the_command(tmp_path: Path) -> None:
    async with one_node(tmp_path, controller=False) as node:
        await node.create_pod("typo", ["no-such-trainer", "--config", "/etc/x"])
        await eventually(lambda: (node.pod("typo") or {}).get("status", {}).get("phase") == "Failed")
        state = terminated(node.pod("typo"))
        assert (state["exitCode"], state["reason"]) == (128, "StartError")
        assert "no-such-trainer" in state["message"]
        assert node.runner.live_processes() == []
