"""A pod whose start hits an API error (a 500 on its binding) is started on the kubelet's next try,
not left Pending forever."""

from __future__ import annotations

from pathlib import Path

import kmock

from .one_node import PODS_RESOURCE, eventually, one_node, python, terminated


async def test_a_failed_binding_is_tried_again_and_the_pod_runs(tmp_path: Path) -> None:
    async with one_node(tmp_path, controller=False) as node:
        refused: list[str] = []

        def refuse_the_first_binding(request: kmock.Request) -> None:
            data = request.data if isinstance(request.data, dict) else {}
            binding = request.resource == PODS_RESOURCE and request.subresource is None and request.method == "PATCH"
            if binding and "nodeName" in (data.get("spec") or {}) and not refused:
                refused.append(str(request.name))
                raise RuntimeError("the API server failed this once")

        node.emulator.after_write.append(refuse_the_first_binding)
        await node.create_pod("unlucky", python("print('ran')"))
        await eventually(lambda: (node.pod("unlucky") or {}).get("status", {}).get("phase") == "Succeeded")

        assert refused == ["unlucky"]
        assert terminated(node.pod("unlucky"))["exitCode"] == 0
        assert node.log_text("unlucky") == "ran\n"
