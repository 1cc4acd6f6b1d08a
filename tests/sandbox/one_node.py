"""A one-node cluster for the kubelet and Job controller tests: the emulator over HTTP, the runner, the controller.

Plain http on loopback (the sandbox adds TLS); graceful pod deletion on, the eviction endpoint
wired to the runner, as the sandbox wires them. `Node.stop()` kills every pod process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import kmock

from kubetune_operator.kube.connection import Connection
from kubetune_operator.kube.resources import JOBS, PODS
from kubetune_sandbox.client import JsonObject, SandboxClient
from kubetune_sandbox.emulator import ApiEmulator
from kubetune_sandbox.job_controller import JobController
from kubetune_sandbox.layout import SandboxLayout
from kubetune_sandbox.pod_inputs import ApiEndpoint
from kubetune_sandbox.pod_runner import PodRunner

NS = "default"
PODS_RESOURCE = kmock.resource("v1/pods")


class Node:
    def __init__(self, emulator: ApiEmulator, client: SandboxClient, runner: PodRunner, layout: SandboxLayout) -> None:
        self.emulator = emulator
        self.client = client
        self.runner = runner
        self.layout = layout
        self.pod_statuses: dict[str, list[JsonObject]] = {}
        """Every status a kubelet wrote, by pod name: what a watcher saw, also after the pod is gone."""
        emulator.after_write.append(self._record)

    def _record(self, request: kmock.Request) -> None:
        if request.resource == PODS_RESOURCE and request.subresource == "status" and isinstance(request.data, dict):
            self.pod_statuses.setdefault(str(request.name), []).append(request.data["status"])

    def last_status(self, name: str, phase: str) -> JsonObject:
        """The last status with `phase` written for pod `name`, as a pod (metadata and status)."""
        status = next(s for s in reversed(self.pod_statuses.get(name, [])) if s.get("phase") == phase)
        return {"metadata": {"name": name, "namespace": NS}, "status": status}

    def log_text(self, name: str) -> str:
        path = self.runner.log_path(NS, name)
        return path.read_text() if path is not None and path.exists() else ""

    def pod(self, name: str) -> JsonObject | None:
        return self.emulator.live(PODS_RESOURCE, NS, name)

    def pods_of(self, job: str) -> list[JsonObject]:
        pods = self.emulator.live_objects(PODS_RESOURCE, NS)
        return sorted(
            (p for p in pods if p["metadata"].get("labels", {}).get("job-name") == job),
            key=lambda p: p["metadata"]["name"],
        )

    def job(self, name: str) -> JsonObject:
        job = self.emulator.live(kmock.resource("batch/v1/jobs"), NS, name)
        assert job is not None, f"Job {name} is gone"
        return job

    async def create_job(self, name: str, *commands: list[str], **spec: Any) -> JsonObject:
        """A Job whose pod runs `commands[0]` (Indexed: pod i runs commands[i] when given)."""
        container = {"name": "main", "image": "python:3", "command": commands[0], **spec.pop("container", {})}
        template_spec = {"restartPolicy": "Never", "containers": [container], **spec.pop("pod", {})}
        body = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {
                "backoffLimit": 0,
                "template": {"metadata": {"labels": {"app": name}}, "spec": template_spec},
                **spec,
            },
        }
        return await self.client.create(JOBS, body, namespace=NS)

    async def create_pod(self, name: str, command: list[str], **spec: Any) -> JsonObject:
        container = {"name": "main", "image": "python:3", "command": command, **spec.pop("container", {})}
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"containers": [container], **spec},
        }
        return await self.client.create(PODS, body, namespace=NS)


def condition_types(job: JsonObject) -> list[tuple[str, str, str]]:
    return [(c["type"], c["status"], c.get("reason", "")) for c in job.get("status", {}).get("conditions", [])]


def terminated(pod: JsonObject | None) -> JsonObject:
    assert pod is not None
    (container,) = pod["status"]["containerStatuses"]
    state: JsonObject = container["state"]["terminated"]
    return state


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def python(code: str) -> list[str]:
    """A container command running `code` with the sandbox's interpreter (`python` in a pod is mapped to it)."""
    return ["python", "-c", code]


async def eventually(check: Callable[[], Any], *, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (found := check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
    return found


@contextlib.asynccontextmanager
async def one_node(root: Path, *, controller: bool = True) -> AsyncIterator[Node]:
    emulator = ApiEmulator(graceful_pod_deletion=True, namespaces={NS})
    async with emulator, kmock.Server(emulator):
        emulator.resources.load_bundled()
        async with SandboxClient(Connection(server=str(emulator.url))) as client:
            layout = SandboxLayout(root)
            runner = PodRunner(
                client,
                layout=layout,
                endpoint=ApiEndpoint(host="127.0.0.1", port=int(emulator.url.port or 80), token="t"),
                interpreter=Path(sys.executable),
                retry_seconds=0.2,
            )
            emulator.on_eviction = runner.evict
            tasks = [asyncio.create_task(runner.run())]
            if controller:
                tasks.append(asyncio.create_task(JobController(client).run()))
            try:
                yield Node(emulator, client, runner, layout)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await runner.stop()
