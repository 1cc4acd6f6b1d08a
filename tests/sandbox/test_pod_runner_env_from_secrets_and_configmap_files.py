"""A pod's Secret env and ConfigMap files reach its process; a missing Secret keeps it waiting until it exists."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

from kubetune_operator.kube.resources import CONFIGMAPS
from kubetune_sandbox.client import SECRETS

from .one_node import NS, Node, eventually, one_node, python, terminated

# Reads where to write from the mounted config (a container path the sandbox rewrote), writes the token there.
USE_CONFIG = (
    "import json, os, pathlib\n"
    "config = json.loads(pathlib.Path(os.environ['CONFIG']).read_text())\n"
    "output = pathlib.Path(config['output'])\n"
    "output.parent.mkdir(parents=True)\n"
    "output.write_text(os.environ['TOKEN'])\n"
    "print(config['output'])\n"
)
CONTAINER = {
    "env": [
        {"name": "CONFIG", "value": "/etc/app/config.json"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
    ],
    "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}, {"name": "work", "mountPath": "/work"}],
}
VOLUMES = [{"name": "config", "configMap": {"name": "app"}}, {"name": "work", "emptyDir": {}}]
CONFIG = {"output": "/work/out/token.txt", "retries": 3}


async def _config_map(node: Node) -> None:
    body = {"metadata": {"name": "app"}, "data": {"config.json": json.dumps(CONFIG)}}
    await node.client.create(CONFIGMAPS, body, namespace=NS)


async def test_the_secret_and_the_rewritten_config_reach_the_process(tmp_path: Path) -> None:
    async with one_node(tmp_path, controller=False) as node:
        await _config_map(node)
        secret = {"metadata": {"name": "api"}, "data": {"token": base64.b64encode(b"s3cr3t").decode()}}
        await node.client.create(SECRETS, secret, namespace=NS)
        await node.create_pod("reader", python(USE_CONFIG), container=CONTAINER, volumes=VOLUMES)
        await eventually(lambda: (node.pod("reader") or {}).get("status", {}).get("phase") == "Succeeded")

        work = tmp_path / "pods" / NS / "reader" / "volumes" / "work"
        assert (work / "out" / "token.txt").read_text() == "s3cr3t"
        config = json.loads((tmp_path / "pods" / NS / "reader" / "volumes" / "config" / "config.json").read_text())
        assert config == {"output": str(work / "out" / "token.txt"), "retries": 3}
        assert node.log_text("reader") == f"{work / 'out' / 'token.txt'}\n"


async def test_a_missing_secret_keeps_the_container_waiting_until_it_is_created(tmp_path: Path) -> None:
    async with one_node(tmp_path, controller=False) as node:
        await _config_map(node)
        await node.create_pod("patient", python("print('started')"), container=CONTAINER, volumes=VOLUMES)
        await eventually(lambda: node.pod_statuses.get("patient"), what="the waiting status")
        pod = node.pod("patient")
        assert pod is not None
        assert pod["status"]["phase"] == "Pending"
        (container,) = pod["status"]["containerStatuses"]
        assert container["state"]["waiting"] == {
            "reason": "CreateContainerConfigError",
            "message": 'secret "api" not found',
        }
        assert node.runner.live_processes() == []
        await asyncio.sleep(0.5)  # the kubelet retries (every 0.2 s here) without repeating the same status
        assert len(node.pod_statuses["patient"]) == 1

        secret = {"metadata": {"name": "api"}, "stringData": {"token": "late"}}
        await node.client.create(SECRETS, secret, namespace=NS)
        await eventually(lambda: (node.pod("patient") or {}).get("status", {}).get("phase") == "Succeeded")
        assert terminated(node.pod("patient"))["exitCode"] == 0
        assert node.log_text("patient") == "started\n"
