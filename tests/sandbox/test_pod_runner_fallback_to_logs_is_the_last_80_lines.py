"""FallbackToLogsOnError: a failed container with an empty termination log gets its log's tail as the
message, as the kubelet reads it: the last 80 lines, at most 2048 bytes."""

from __future__ import annotations

from pathlib import Path

from .one_node import eventually, one_node, python, terminated

FALLBACK = {"terminationMessagePolicy": "FallbackToLogsOnError"}


async def test_the_message_is_the_logs_last_80_lines(tmp_path: Path) -> None:
    async with one_node(tmp_path, controller=False) as node:
        await node.create_pod(
            "lines", python("import sys; [print(i) for i in range(200)]; sys.exit(1)"), container=FALLBACK
        )
        await eventually(lambda: (node.pod("lines") or {}).get("status", {}).get("phase") == "Failed")
        state = terminated(node.pod("lines"))
        assert state["message"].splitlines() == [str(i) for i in range(120, 200)]


async def test_the_message_is_at_most_2048_bytes_of_the_log(tmp_path: Path) -> None:
    async with one_node(tmp_path, controller=False) as node:
        await node.create_pod("long", python("import sys; print('x' * 5000, end=''); sys.exit(2)"), container=FALLBACK)
        await eventually(lambda: (node.pod("long") or {}).get("status", {}).get("phase") == "Failed")
        assert terminated(node.pod("long"))["message"] == "x" * 2048
